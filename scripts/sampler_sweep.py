"""Compare sampler settings of a shapes model on a development set disjoint from ShapeBench.

Tuning the shipped settings on ShapeBench itself would tune to the test prompts, so this scores
`paradiff.shapes.dataset.development_samples`: the same categories and difficulties, other seeds,
no ShapeBench prompt. Each setting is a comma-separated list of sampler
overrides (`image_steps=48,text_block_length=48`); the empty setting is the model's shipped one.

    python scripts/sampler_sweep.py --per-category 6 "" image_steps=48 image_order=halton
"""

from __future__ import annotations

import argparse
import json
import time

from paradiff.bench.items import METRICS
from paradiff.pipeline import ParallelPipeline
from paradiff.shapes.dataset import development_samples
from paradiff.shapes.probe import scores_by_task


def parse_setting(text: str) -> dict:
    overrides = {}
    for part in filter(None, text.split(",")):
        name, value = part.split("=")
        overrides[name] = json.loads(value) if value[:1].isdigit() or value == "null" else value
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", help='sampler overrides, "" for the shipped ones')
    parser.add_argument("--model", default=None, help="model folder (default: the bundled one)")
    parser.add_argument("--per-category", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=30)
    args = parser.parse_args()
    pipe = ParallelPipeline.from_pretrained(args.model)
    samples = development_samples(args.per_category)
    print(f"{len(samples)} development prompts")
    print("| setting | task | " + " | ".join(METRICS) + " | seconds |")
    for setting in args.settings:
        overrides = parse_setting(setting)
        started = time.perf_counter()
        rows = scores_by_task(pipe, samples, args.batch_size, **overrides)
        seconds = time.perf_counter() - started
        rows["overall"] = rows["edit"] + rows["generation"]
        for task in ("overall", "edit", "generation"):
            means = [sum(r[m] for r in rows[task]) / len(rows[task]) for m in METRICS]
            cells = " | ".join(f"{v:.1f}" for v in means)
            print(f"| {setting or 'shipped'} | {task} | {cells} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
