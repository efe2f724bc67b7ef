#!/usr/bin/env bash
# Read what scripts/rl_breadth.sh packed, on this machine: each seed's latest model against the
# bundled SFT model on the development and the confirmation split (300 prompts each, greedy,
# paired, intervals over training seeds and prompts), and the curves of the rollout reward and
# of held-out output alignment against RL steps.
#   bash scripts/read_rl_breadth.sh OUT [WORK (default runs/rl-breadth)]
# Writes WORK/seedN (the unpacked models), WORK/{development,confirmation}/{sft,seedN} (bench
# runs), WORK/reward.png and WORK/held_out.png, and prints one table per split. Resumable: a
# finished bench run is skipped, an interrupted one resumes. SMOKE=1: 6 prompts a split.
set -euo pipefail
refuse() { echo "read_rl_breadth.sh: $1" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || refuse "usage: bash scripts/read_rl_breadth.sh OUT [WORK]"
out=$1 work=${2:-runs/rl-breadth}
command -v paradiff > /dev/null || refuse "paradiff is not on PATH (activate the project's environment)"
shopt -s nullglob
packs=("$out"/seed*.tar.gz)
[ ${#packs[@]} -gt 0 ] || refuse "$out holds no seedN.tar.gz (what scripts/rl_breadth.sh writes)"
limit=300 groups=(overall edit generation)
[ "${SMOKE:-0}" = 1 ] && limit=6 groups=(overall)  # (the first 6 prompts are edits)
splits=(development confirmation)

bench() {  # bench SPLIT NAME [--model MODEL]: one greedy run, skipped when finished
    local run="$work/$1/$2"
    [ -f "$run/summary.json" ] && return
    paradiff bench shapebench --split "$1" --limit "$limit" --batch-size 50 --json \
        --out "$run" "${@:3}" > /dev/null
}

seeds=() logs=() models=()
for pack in "${packs[@]}"; do  # every pack checked before anything is written
    seed=$(basename "$pack" .tar.gz)  # seedN
    [[ $seed =~ ^seed[0-9]+$ ]] || refuse "$pack is not named seedN.tar.gz"
    [ -f "$out/$seed.log.jsonl" ] || refuse "$out/$seed.log.jsonl is missing beside $pack"
    model=$(tar tzf "$pack" 2> /dev/null | grep -o '^checkpoint-[0-9]*' | sort -u | tail -1) ||
        refuse "$pack cannot be unpacked, or holds no checkpoint-NNNNNN folder"
    seeds+=("$seed") logs+=("$out/$seed.log.jsonl") models+=("$work/$seed/$model")
done
for i in "${!seeds[@]}"; do
    mkdir -p "$work/${seeds[i]}"
    tar xzf "${packs[i]}" -C "$work/${seeds[i]}"
    for split in "${splits[@]}"; do
        bench "$split" "${seeds[i]}" --model "${models[i]}"
    done
done
for split in "${splits[@]}"; do
    bench "$split" sft
    echo "## $split split: RL over many prompts against the SFT model"
    python scripts/seed_table.py "$work/$split/sft" --arm breadth "${seeds[@]/#/$work/$split/}" \
        --groups "${groups[@]}"
done
python scripts/plot_log.py "${logs[@]}" --labels "${seeds[@]}" --keys final_raw \
    --title "rollout reward (raw, final answer)" --out "$work/reward.png"
python scripts/plot_log.py "${logs[@]}" --labels "${seeds[@]}" \
    --keys eval.overall.output_alignment eval.overall.text_alignment \
    eval.overall.image_alignment --title "held-out: 120 development prompts, greedy" \
    --out "$work/held_out.png"
