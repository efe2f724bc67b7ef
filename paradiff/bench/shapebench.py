"""ShapeBench: ParaBench's six metrics judged exactly on the shapes world (no judge model).

300 fixed samples (200 editing, 100 generation; `paradiff.shapes.dataset.shapebench_samples`).
`run_shapebench(predict)` asks a predictor for each sample's answer — a callable mapping a
`ShapeSample` to (reasoning text, output image) where the image is anything
`paradiff.shapes.judge.read_output` reads (a Scene, a code grid, a PIL image) — and scores it.
`oracle` answers with the ground truth, which must score 100 on every metric; `model_answers`
answers with a pipeline (batched, fixed seeds, outputs at the model's image size).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from paradiff.bench.data import BenchItem
from paradiff.bench.generate import generate_answers, sampler_settings
from paradiff.cli import (
    CommandError,
    add_device_arguments,
    add_model_argument,
    check_writable,
    load_pipeline,
    one_line,
)
from paradiff.pipeline import ParallelPipeline
from paradiff.shapes.dataset import shapebench_samples
from paradiff.shapes.judge import METRICS, aggregate, score_sample
from paradiff.shapes.render import render_scene
from paradiff.shapes.sample import ShapeSample

Predictor = Callable[[ShapeSample], tuple[str, Any]]
Answers = Iterable[tuple[ShapeSample, tuple[str, Any]]]
SCORES_FILE = "scores.jsonl"
REPORT_FILE = "report.json"


class ShapeBenchError(ValueError):
    """Bad ShapeBench options."""


def oracle(sample: ShapeSample) -> tuple[str, Any]:
    """The ground truth answer: the sample's own reasoning and target scene."""
    return sample.reasoning, sample.scene_out


def select_samples(limit: int | None = None) -> list[ShapeSample]:
    """The first `limit` ShapeBench samples (all 300 for None), categories interleaved."""
    samples = list(shapebench_samples())
    if limit is not None:
        if limit < 1:
            raise ShapeBenchError(f"--limit must be at least 1, got {limit}")
        samples = samples[:limit]
    return samples


def bench_item(sample: ShapeSample) -> BenchItem:
    """The sample as a benchmark prompt: its instruction and (editing) its rendered input."""
    image = None if sample.scene_in is None else render_scene(sample.scene_in)
    return BenchItem(sample.id, sample.task, sample.category, sample.instruction, image)


def model_answers(
    pipe: ParallelPipeline,
    samples: Sequence[ShapeSample],
    batch_size: int = 8,
    overrides: dict[str, Any] | None = None,
) -> Answers:
    """Each sample with the model's (reasoning, image), batched, at the model's image size."""
    by_id = {sample.id: sample for sample in samples}
    items = [bench_item(sample) for sample in samples]
    for item, result in generate_answers(pipe, items, batch_size, overrides, pipe.image_size):
        yield by_id[item.id], (result.text, result.image)


def run_shapebench(
    predict: Predictor | None = None,
    limit: int | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    mode: str = "model",
    answers: Answers | None = None,
    samples: Sequence[ShapeSample] | None = None,
) -> dict[str, Any]:
    """Score `predict` (one sample at a time) or ready `answers` on ShapeBench.

    `samples` default to the first `limit` ones. Returns the report: {"benchmark", "mode",
    "count", "category_counts", "overall", "per_task", "per_category"} with metrics on a 0-100
    scale; `out` also receives `scores.jsonl` (per sample, with the answer text) and
    `report.json`.
    """
    samples = list(samples) if samples is not None else select_samples(limit)
    if answers is None:
        answers = ((sample, predict(sample)) for sample in samples)
    order = {sample.id: index for index, sample in enumerate(samples)}
    results = []
    for sample, (text, image) in tqdm(
        answers, total=len(samples), desc="shapebench", disable=not progress
    ):
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
    results.sort(key=lambda result: order[result["id"]])
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


def _score(args: argparse.Namespace) -> dict[str, Any]:
    """The report of the options: the oracle's, or the model's (bundled by default)."""
    if args.batch_size < 1:
        raise ShapeBenchError(f"--batch-size must be at least 1, got {args.batch_size}")
    samples = select_samples(args.limit)
    progress = not args.json
    if args.oracle:
        return run_shapebench(
            oracle, out=args.out, progress=progress, mode="oracle", samples=samples
        )
    if args.out is not None:
        check_writable(Path(args.out))
    try:
        pipe = load_pipeline(args)
    except CommandError as err:
        hint = " (pass --model DIR, or --oracle)" if args.model is None else ""
        raise CommandError(f"{err}{hint}") from None
    overrides = {} if args.mode is None else {"mode": args.mode}
    settings = sampler_settings(pipe, overrides)
    answers = model_answers(pipe, samples, args.batch_size, overrides)
    report = run_shapebench(
        answers=answers, samples=samples, out=args.out, progress=progress, mode=settings["mode"]
    )
    return {**report, "model": args.model or "bundled", "sampler": settings}


def _main(args: argparse.Namespace) -> int:
    try:
        report = _score(args)
    except (CommandError, OSError, ValueError) as err:
        print(f"paradiff bench shapebench: {one_line(err)}", file=sys.stderr)
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
    add_model_argument(parser)
    add_device_arguments(parser)
    parser.add_argument(
        "--mode",
        choices=("parallel", "sequential"),
        default=None,
        help="sampling mode (default: the checkpoint's)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="samples per sampler run")
    parser.add_argument("--oracle", action="store_true", help="score the ground truth itself")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N samples")
    parser.add_argument("--out", default=None, help="folder for scores.jsonl and report.json")
    parser.set_defaults(func=_main)
    return parser
