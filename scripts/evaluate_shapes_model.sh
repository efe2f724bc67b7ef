#!/usr/bin/env bash
# Every number docs/results.md reports for a shapes-world model, into one folder (run it with the
# project's .venv active):
#   bash scripts/evaluate_shapes_model.sh [MODEL (default: the bundled one)] [OUT (default runs/eval)]
# ShapeBench (300 prompts) parallel and sequential, greedy; image temperature 1 over sampling
# seeds 0, 1, 2; the location and drawing probes and the 30 hand-written edits (probe.json). Run
# folders resume, so an interrupted run picks up where it stopped.
set -euo pipefail
model=${1:-}
out=${2:-runs/eval}
flags=(--batch-size 50)
[ -n "$model" ] && flags+=(--model "$model")
mkdir -p "$out"
paradiff bench shapebench "${flags[@]}" --out "$out/parallel" --json > /dev/null
paradiff bench shapebench "${flags[@]}" --mode sequential --out "$out/sequential" --json > /dev/null
for seed in 0 1 2; do
    paradiff bench shapebench "${flags[@]}" --temperature 1 --seed "$seed" \
        --out "$out/t1-seed$seed" --json > /dev/null
done
python - "$model" "$out/probe.json" <<'PY'
import json, sys
from paradiff.pipeline import ParallelPipeline
from paradiff.shapes.probe import drawing_probe, handwritten_evaluation, location_probe
pipe = ParallelPipeline.from_pretrained(sys.argv[1] or None)
probes = {**location_probe(pipe), **drawing_probe(pipe)}
report = {"probe": probes, "handwritten": handwritten_evaluation(pipe)}
open(sys.argv[2], "w").write(json.dumps(report, indent=1) + "\n")
print(json.dumps(report))
PY
python scripts/results_table.py "$out/parallel" "$out/sequential" --labels parallel sequential \
    --groups overall edit generation --ci
python scripts/results_table.py "$out"/t1-seed0 "$out"/t1-seed1 "$out"/t1-seed2 \
    --labels "T=1 seed 0" "T=1 seed 1" "T=1 seed 2" --groups overall edit generation \
    --average "T=1, 3 seeds"
