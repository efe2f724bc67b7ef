#!/usr/bin/env bash
# Every measurement of docs/speed.md, re-runnable in one command (CPU: a few minutes to an hour):
#   bash benchmarks/run_speed.sh            # sampler speed (two sizes), FLOPs projections, ShapeBench
# LIMIT (ShapeBench samples, default 24) and SIZES=skip / QUALITY=skip / PROJECT=skip shorten it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=benchmarks/results
mkdir -p "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
COMMON="--edit --image-size 128 --text-gen-length 128 --text-steps 16 --timesteps 8 --repeats 1"
SPEEDS="--speeds exact,fast,fastest"
if [ "${SIZES:-}" != skip ]; then
  nice -n 15 $PY benchmarks/sampler_speed.py --d-model 1024 --layers 8 $COMMON $SPEEDS \
    --json $OUT/speed_d1024.json | tee $OUT/speed_d1024.txt
  nice -n 15 $PY benchmarks/sampler_speed.py --d-model 256 --layers 4 $COMMON $SPEEDS \
    --json $OUT/speed_d256.json | tee $OUT/speed_d256.txt
fi
if [ "${PROJECT:-}" != skip ]; then
  for size in 256 512; do  # FLOPs of a 256x256 and a 512x512 edit on each model shape
    nice -n 15 $PY benchmarks/sampler_speed.py --project-only --edit --image-size $size \
      --text-steps 32 --timesteps 16 $SPEEDS --json $OUT/projection_$size.json \
      | tee $OUT/projection_$size.txt
  done
fi
if [ "${QUALITY:-}" != skip ]; then
  nice -n 15 $PY benchmarks/speed_quality.py --limit "${LIMIT:-24}" --json $OUT/quality.json
fi
nice -n 15 $PY benchmarks/speed_figure.py --results $OUT --out docs/speed_quality.png
