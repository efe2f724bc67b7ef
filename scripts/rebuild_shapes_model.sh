#!/usr/bin/env bash
# Rebuild the shipped shapes model from nothing at this commit and check it against the shipped
# one (run it with the project's .venv active):
#   bash scripts/rebuild_shapes_model.sh [WORK (default runs/rebuild)]
# The steps of docs/results.md, "The bundled model (SFT)", with their seeds: three datasets, the
# initial model, the three SFT stages (configs/shapes-sft.yaml, shapes-sft-continue.yaml,
# shapes-sft-drawing.yaml; about 3 hours on 2 CPU cores), then ShapeBench (300 prompts, greedy)
# of the rebuilt and of the shipped model: every metric of the rebuilt one must lie within the
# shipped one's 95% interval, or the script exits 1 (rebuilt minus shipped over the same prompts,
# with its interval, printed beside). The shipped model has no RL stage yet.
# Resumable: a finished step is skipped, an interrupted training run resumes from its latest
# checkpoint. SMOKE=1 makes every step tiny (minutes: the pipeline only; the check is printed,
# not judged).
set -euo pipefail
work=${1:-runs/rebuild}
mkdir -p "$work"
if [ "${SMOKE:-0}" = 1 ]; then
    n_scale=0 train=(train.steps=2 train.batch_size=4 eval.call= output.save_every=1) limit=6
else
    n_scale=1 train=() limit=300
fi

dataset() {  # dataset NAME N SEED SPARSE [CATEGORIES]
    local out="$work/$1" n=$2
    [ -f "$out/records.jsonl" ] && return
    [ "$n_scale" = 0 ] && n=30
    local extra=()
    [ -n "${5:-}" ] && extra=(--categories "$5")
    rm -rf "$out.partial"
    paradiff shapes make-dataset --n "$n" --seed "$3" --sparse-share "$4" "${extra[@]}" \
        --out "$out.partial" --quiet
    mv "$out.partial" "$out"
}

stage() {  # stage NAME CONFIG INIT DATA: pre-tokenize DATA with INIT's tokenizer, then train
    local out="$work/$1"
    [ -f "$out/final/config.json" ] && return
    paradiff pretokenize --records "$work/$4/records.jsonl" --tokenizer "$3" \
        --out "$work/$1-tok" > /dev/null  # resumes, and skips the shards already written
    local resume=()
    [ -d "$out" ] && resume=(--resume)
    paradiff train sft --config "$2" "model.init=$3" "data.pretokenized=$work/$1-tok" \
        "output.dir=$out" "${train[@]}" "${resume[@]}" --quiet
}

dataset data1 48000 0 0.3
dataset data2 48000 1 0.15
dataset data3 24000 3 0.15 'add,remove,replace,recolour,move,swap,relational,conditional,count,multi,counting:2,spatial:2,knowledge:2,negation:2,composition:2'
[ -f "$work/init/config.json" ] || paradiff shapes init-model --out "$work/init" --seed 0
stage sft1 configs/shapes-sft.yaml "$work/init" data1
stage sft2 configs/shapes-sft-continue.yaml "$work/sft1/final" data2
stage sft3 configs/shapes-sft-drawing.yaml "$work/sft2/final" data3

bench=(paradiff bench shapebench --limit "$limit" --batch-size 50 --json)
[ -f "$work/bench-rebuilt/summary.json" ] ||
    "${bench[@]}" --model "$work/sft3/final" --out "$work/bench-rebuilt" > /dev/null
[ -f "$work/bench-shipped/summary.json" ] ||
    "${bench[@]}" --out "$work/bench-shipped" > /dev/null
python - "$work/bench-shipped" "$work/bench-rebuilt" "${SMOKE:-0}" <<'PY'
import json, sys
from pathlib import Path
from paradiff.bench.report import paired_differences
from paradiff.bench.runner import BenchFolder
shipped_run, rebuilt_run = (Path(p) for p in sys.argv[1:3])
shipped, rebuilt = (json.load(open(run / "summary.json"))["overall"]["metrics"]
                    for run in (shipped_run, rebuilt_run))
# rebuilt minus shipped over the same prompts: what the prompt-level interval cannot say
paired = paired_differences(BenchFolder(rebuilt_run).scored(), BenchFolder(shipped_run).scored())
outside = []
for metric, row in shipped.items():
    low, high = row["ci95"]
    mean = rebuilt[metric]["mean"]
    inside = low <= mean <= high
    outside += [] if inside else [metric]
    d = paired.get(metric)  # absent where no prompt scored the metric in both runs
    difference = f"{d['mean']:+5.1f} [{d['ci95'][0]:+5.1f}, {d['ci95'][1]:+5.1f}]" if d else "-"
    print(f"{metric:18} shipped {row['mean']:5.1f} [{low:5.1f}, {high:5.1f}]  rebuilt {mean:5.1f}"
          f"  {'within ' if inside else 'OUTSIDE'}  paired {difference}")
if outside and sys.argv[3] != "1":
    sys.exit(f"the rebuilt model is outside the shipped one's interval on {', '.join(outside)}")
PY
