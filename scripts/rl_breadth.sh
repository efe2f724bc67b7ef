#!/usr/bin/env bash
# RL over many distinct prompts, sized for one GPU machine held for minutes:
#   bash scripts/rl_breadth.sh OUT [MINUTES (default 7)] [SEEDS (default "0 1 2")]
# docs/results.md ("RL that learns") shows the RL recipe learning the exact judge's reward on 16
# fixed prompts and no held-out gain over the few hundred prompts a CPU run sees; this asks
# whether tens of thousands of prompts carry the gain to held-out ones. It makes the prompt
# pool (20 000 records, seed 7, development prompts excluded), fails fast on a two-step run,
# then trains the seeds of configs/shapes-rl-breadth.yaml side by side, each stopped by the clock
# after MINUTES (its latest checkpoint stands: checkpoints are written whole, every 10 steps), and
# packs into OUT, per seed, seedN.log.jsonl (reward and held-out curve) and seedN.tar.gz (the
# latest checkpoint's model, no optimizer state), and train.txt (the runs' output).
# Then, on any machine: bash scripts/read_rl_breadth.sh OUT (the held-out tables and curves).
# SMOKE=1 makes everything tiny (three steps a seed on the CPU: the pipeline only, nothing learned).
set -euo pipefail
usage="usage: bash scripts/rl_breadth.sh OUT [MINUTES] [SEEDS]"
refuse() { echo "rl_breadth.sh: $1" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 3 ] || refuse "$usage"
out=$1 minutes=${2:-7} seeds=${3:-0 1 2}
command -v paradiff > /dev/null ||
    refuse "paradiff is not on PATH (activate the project's environment, or install its wheel)"
[[ $minutes =~ ^[0-9]+([.][0-9]+)?$ ]] && [[ ! $minutes =~ ^0*([.]0*)?$ ]] ||
    refuse "MINUTES must be a positive number, not '$minutes'"
[[ $seeds =~ ^[0-9]+( [0-9]+)*$ ]] || refuse "SEEDS must be whole numbers separated by spaces, not '$seeds'"
if [ -e "$out" ] && { [ ! -d "$out" ] || [ -n "$(ls -A "$out")" ]; }; then
    refuse "$out exists and is not an empty folder (nothing of it is replaced)"
fi
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "${SMOKE:-0}" = 1 ]; then
    n=200 tiny=(train.steps=3 rollout.prompts=2 rollout.group=2 train.mask_draws=1 eval.limit=4
        eval.every=2 output.save_every=1 reward.stats_min_prompts=2)
else
    n=20000 tiny=()
fi

paradiff shapes make-dataset --n "$n" --seed 7 --exclude-development --out "$work/rl-data" --quiet
recipe=(--config configs/shapes-rl-breadth.yaml "data.records=$work/rl-data/records.jsonl")
# a defect shows here in a minute, not after the seeds' minutes
paradiff train pararl "${recipe[@]}" "${tiny[@]}" train.steps=2 rollout.prompts=2 eval.call= \
    "output.dir=$work/smoke" --quiet > "$out/train.txt" 2>&1 || { tail -20 "$out/train.txt"; exit 1; }

pids=()
for seed in $seeds; do
    # the clock stops the run (exit 124); the latest checkpoint is what it learned
    timeout "${minutes}m" paradiff train pararl "${recipe[@]}" "${tiny[@]}" "train.seed=$seed" \
        "output.dir=$work/seed$seed" --quiet >> "$out/train.txt" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do
    status=0
    wait "$pid" || status=$?
    if [ "$status" != 0 ] && [ "$status" != 124 ]; then
        tail -20 "$out/train.txt"
        exit 1
    fi
done

for seed in $seeds; do
    run=$work/seed$seed
    cp "$run/log.jsonl" "$out/seed$seed.log.jsonl"
    checkpoint=$(cat "$run/latest" 2> /dev/null) || { echo "seed $seed wrote no checkpoint" >&2; exit 1; }
    tar czf "$out/seed$seed.tar.gz" -C "$run" --exclude training_state.pt "$checkpoint" reward_stats.json
    echo "seed $seed: $checkpoint, $(grep -c '"loss"' "$run/log.jsonl") steps"
done
