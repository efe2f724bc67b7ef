"""ShapeBench: ParaBench's six metrics judged exactly on the shapes world (no judge model).

300 fixed samples (200 editing, 100 generation; `paradiff.shapes.dataset.shapebench_samples`).
`run_shapebench(predict)` asks a predictor for each sample's answer — a callable mapping a
`ShapeSample` to (reasoning text, output image) where the image is anything
`paradiff.shapes.judge.read_output` reads (a Scene, a code grid, a PIL image) — and scores it.
`oracle` answers with the ground truth, which must score 100 on every metric.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from paradiff.shapes.dataset import shapebench_samples
from paradiff.shapes.judge import METRICS, aggregate, score_sample
from paradiff.shapes.sample import ShapeSample

Predictor = Callable[[ShapeSample], tuple[str, Any]]
SCORES_FILE = "scores.jsonl"
REPORT_FILE = "report.json"


class ShapeBenchError(ValueError):
    """Bad ShapeBench options."""


def oracle(sample: ShapeSample) -> tuple[str, Any]:
    """The ground truth answer: the sample's own reasoning and target scene."""
    return sample.reasoning, sample.scene_out


def run_shapebench(
    predict: Predictor,
    limit: int | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    mode: str = "model",
) -> dict[str, Any]:
    """Score `predict` on ShapeBench (the first `limit` samples, categories interleaved).

    Returns the report: {"benchmark", "mode", "count", "overall", "per_task", "per_category",
    "samples"} with metrics on a 0-100 scale; `out` also receives `scores.jsonl` (per sample,
    with the answer text) and `report.json`.
    """
    samples = shapebench_samples()
    if limit is not None:
        if limit < 1:
            raise ShapeBenchError(f"--limit must be at least 1, got {limit}")
        samples = samples[:limit]
    results = []
    for sample in tqdm(samples, desc="shapebench", disable=not progress):
        text, image = predict(sample)
        scores = score_sample(sample, text, image)
        results.append(
            {
                "id": sample.id,
                "task": sample.task,
                "category": sample.category,
                **scores,
                "text": text,
            }
        )
    report = {"benchmark": "shapebench", "mode": mode, **aggregate(results)}
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / SCORES_FILE, "w", encoding="utf-8") as scores_file:
            for result in results:
                scores_file.write(json.dumps(result) + "\n")
        (folder / REPORT_FILE).write_text(json.dumps(rounded(report), indent=1) + "\n")
    return report


def rounded(report: dict[str, Any], digits: int = 2) -> dict[str, Any]:
    """The report with every metric rounded (for printing)."""

    def walk(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, digits)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(report)


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table: one row per category, task and overall; one column per metric."""
    short = ["txt_q", "txt_al", "img_q", "img_al", "img_cons", "out_al"]
    lines = [f"{'':<14}{'n':>5}" + "".join(f"{name:>10}" for name in short)]

    def row(name: str, metrics: dict[str, float], count: str = "") -> str:
        return f"{name:<14}{count:>5}" + "".join(f"{metrics[m]:>10.1f}" for m in METRICS)

    for category, metrics in report["per_category"].items():
        lines.append(row(category, metrics, str(report["category_counts"][category])))
    for task, metrics in report["per_task"].items():
        lines.append(row(task, metrics))
    lines.append(row("overall", report["overall"], str(report["count"])))
    return "\n".join(lines)


def _main(args: argparse.Namespace) -> int:
    if not args.oracle:
        print(
            "paradiff bench shapebench: pass --oracle (a model is scored through "
            "paradiff.bench.shapebench.run_shapebench with a predictor)",
            file=sys.stderr,
        )
        return 2
    try:
        report = run_shapebench(
            oracle, limit=args.limit, out=args.out, progress=not args.json, mode="oracle"
        )
    except ShapeBenchError as err:
        print(f"paradiff bench shapebench: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rounded(report), indent=1))
    else:
        print(format_table(report))
    return 0


def register_shapebench(bench_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `shapebench` to the `paradiff bench` subparsers."""
    parser = bench_subparsers.add_parser(
        "shapebench", help="ParaBench's six metrics, judged exactly on the shapes world"
    )
    parser.add_argument("--oracle", action="store_true", help="score the ground truth itself")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N samples")
    parser.add_argument("--out", default=None, help="folder for scores.jsonl and report.json")
    parser.set_defaults(func=_main)
    return parser
