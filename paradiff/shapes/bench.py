"""ShapeBench: ParaBench's six metrics judged exactly on the shapes world (no judge model).

`paradiff bench shapebench` (`SHAPEBENCH`, a `paradiff.bench.benchmark.Benchmark`, registered with
the bench commands through pyproject.toml's `paradiff.benchmarks` entry point).

300 fixed samples (200 editing, 100 generation; `paradiff.shapes.dataset.shapebench_samples`);
`--split development` scores the 300 development prompts instead, `--split confirmation` 300
more disjoint from both (`paradiff.shapes.dataset.confirmation_samples`), `--split wild` the 250 of
ShapeBench-wild (`paradiff.shapes.dataset.wild_samples`: the opt-in kinds and every category in
held-out phrasings). Every report also gives the exact rate: the share of edits whose output
scene is exactly the target (`paradiff.shapes.judge.exact_match`; a generation has many right
scenes, so it has none).
`run_shapebench(predict)` asks a predictor for each sample's answer — a callable mapping a
`ShapeSample` to (reasoning text, output image) where the image is anything
`paradiff.shapes.judge.read_output` reads (a Scene, a code grid, a PIL image) — and scores it.
`oracle` answers with the ground truth, which must score 100 on every metric; the command scores
a pipeline (batched, fixed seeds, outputs at the model's image size) through the resumable run
folder of `paradiff.bench.runner`, the same as ParaBench's.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from paradiff.bench.benchmark import Benchmark, checked_out
from paradiff.bench.generate import pipeline_answerer, sampler_settings
from paradiff.bench.items import METRICS, BenchItem
from paradiff.bench.report import SHORT_NAMES, groups_of, summarise, write_report
from paradiff.bench.runner import Answerer, BenchFolder, Scorer, run_benchmark
from paradiff.command_support import (
    CommandError,
    add_pipeline_arguments,
    load_configured_pipeline,
    weight_settings,
)
from paradiff.image_tokenizers.base import to_pil
from paradiff.shapes.dataset import (
    CONFIRMATION_PER_CATEGORY,
    DEVELOPMENT_PER_CATEGORY,
    confirmation_samples,
    development_samples,
    shapebench_samples,
    wild_samples,
)
from paradiff.shapes.image_tokenizer import shapes_tokenizer
from paradiff.shapes.judge import exact_match, score_sample
from paradiff.shapes.render import render_scene
from paradiff.shapes.sample import ShapeSample
from paradiff.shapes.scene import Scene

Predictor = Callable[[ShapeSample], tuple[str, Any]]


class ShapeBenchError(ValueError):
    """Bad ShapeBench options."""


def oracle(sample: ShapeSample) -> tuple[str, Any]:
    """The ground truth answer: the sample's own reasoning and target scene."""
    return sample.reasoning, sample.scene_out


SPLITS = ("shapebench", "development", "confirmation", "wild")


def select_samples(limit: int | None = None, split: str = "shapebench") -> list[ShapeSample]:
    """The first `limit` samples of a split (all for None), categories interleaved: ShapeBench,
    the development split (disjoint from it, for tuning and training curves), the confirmation
    split (disjoint from both, for checking a choice) or ShapeBench-wild (the opt-in kinds
    first, then every category; held-out phrasings)."""
    if split not in SPLITS:
        raise ShapeBenchError(f"--split must be one of {SPLITS}, got {split!r}")
    if split == "shapebench":
        samples = list(shapebench_samples())
    elif split == "wild":
        samples = list(wild_samples())
    elif split == "confirmation":
        samples = confirmation_samples(CONFIRMATION_PER_CATEGORY)
    else:
        samples = development_samples(DEVELOPMENT_PER_CATEGORY)
    if limit is not None:
        if limit < 1:
            raise ShapeBenchError(f"--limit must be at least 1, got {limit}")
        samples = samples[:limit]
    return samples


def bench_item(sample: ShapeSample) -> BenchItem:
    """The sample as a benchmark prompt: its instruction and (editing) its rendered input."""
    image = None if sample.scene_in is None else render_scene(sample.scene_in)
    return BenchItem(sample.id, sample.task, sample.category, sample.instruction, image)


def as_image(output: Any) -> Image.Image:
    """An answer's output image as a picture: a PIL image, a Scene (rendered), a float image
    (3, H, W) in [0, 1] or a code grid (decoded by the shapes codebook, broken cells kept)."""
    if isinstance(output, Image.Image):
        return output
    if isinstance(output, Scene):
        return render_scene(output)
    if isinstance(output, torch.Tensor) and output.is_floating_point():
        return to_pil(output[None].cpu())[0]
    codes = torch.as_tensor(np.asarray(output), dtype=torch.long)
    return to_pil(shapes_tokenizer().decode(codes[None]))[0]


def predictor_answerer(predict: Predictor, samples: Sequence[ShapeSample]) -> Answerer:
    """A run answerer asking `predict` one sample at a time."""
    by_id = {sample.id: sample for sample in samples}

    def answer(items: list[BenchItem]):
        for item in items:
            text, output = predict(by_id[item.id])
            yield item, text, as_image(output), {}

    return answer


def exact_scorer(samples: Sequence[ShapeSample]) -> Scorer:
    """A run scorer: the exact judge on the saved reasoning and output image, and for an edit
    "exact" (100 when the output scene is exactly the target, else 0)."""
    by_id = {sample.id: sample for sample in samples}

    def score(item: BenchItem, record: dict[str, Any], image_path: Path) -> dict[str, Any]:
        sample = by_id[item.id]
        with Image.open(image_path) as image:
            output = image.convert("RGB")
        metrics = score_sample(sample, record["text"], output)
        if sample.task != "edit":
            return metrics
        return {**metrics, "exact": 100.0 * exact_match(sample, output)}

    return score


def exact_rates(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """% of edits whose output scene is exactly the target: overall, per task and per category
    (over the records that carry "exact": edits; a run folder scored before it existed has
    none)."""
    rows = [r for r in records if r.get("exact") is not None]

    def rate(group: list[dict[str, Any]]) -> float:
        return sum(r["exact"] for r in group) / len(group)

    by: dict[str, dict[str, list]] = {"per_task": {}, "per_category": {}}
    for row in rows:
        by["per_task"].setdefault(row["task"], []).append(row)
        by["per_category"].setdefault(row["category"], []).append(row)
    return {
        "n": len(rows),
        "overall": rate(rows) if rows else None,
        **{name: {k: rate(v) for k, v in groups.items()} for name, groups in by.items()},
    }


def run_shapebench(
    predict: Predictor | None = None,
    limit: int | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    mode: str = "model",
    answer: Answerer | None = None,
    settings: dict[str, Any] | None = None,
    samples: Sequence[ShapeSample] | None = None,
) -> dict[str, Any]:
    """Score `predict` (one sample at a time) or a run `answer`er on ShapeBench.

    `samples` default to the first `limit` ones. The answers go through a run folder
    (`paradiff.bench.runner`): `out`, resumable, recorded with `settings`, or a temporary one.
    Returns the summary of `paradiff.bench.report.summarise` (metrics on a 0-100 scale with 95%
    intervals, overall, per task and per category) with "benchmark", "mode" and "model"; `out`
    also receives its report files.
    """
    samples = list(samples) if samples is not None else select_samples(limit)
    answer = answer or predictor_answerer(predict, samples)
    settings = settings or {"benchmark": "shapebench", "model": mode}
    items = [bench_item(sample) for sample in samples]
    return score_items(items, answer, exact_scorer(samples), settings, out, progress, mode)


def score_items(
    items: list[BenchItem],
    answer: Answerer,
    score: Scorer,
    settings: dict[str, Any],
    out: str | os.PathLike | None = None,
    progress: bool = False,
    mode: str = "model",
) -> dict[str, Any]:
    """ShapeBench's summary (`run_shapebench`) of `items` answered and scored in the run folder
    `out` (a temporary one for None)."""
    with tempfile.TemporaryDirectory() if out is None else nullcontext(out) as root:
        folder = BenchFolder(root)
        folder.start(settings)
        with folder.discarded_on_error():
            records = run_benchmark(folder, items, answer, score, progress=progress)
    summary = summarise(records, benchmark="shapebench", mode=mode, model=settings["model"])
    summary["exact"] = exact_rates(records)
    if out is not None:
        write_report(out, summary, f"ShapeBench: {settings['model']} ({mode})")
    return summary


def rounded(report: dict[str, Any], digits: int = 2) -> dict[str, Any]:
    """The report with every metric rounded (for printing)."""

    def walk(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, digits)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    return walk(report)


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table of a summary's means: one row per category, task and overall; one
    column per metric (blank where no sample has it)."""
    exact = summary.get("exact") or {}
    rates = {
        **exact.get("per_category", {}),
        **exact.get("per_task", {}),
        "overall": exact.get("overall"),
    }
    head = "".join(f"{SHORT_NAMES[m]:>10}" for m in METRICS)
    lines = [f"{'':<14}{'n':>5}" + head + f"{'exact':>10}"]
    for name, group in groups_of(summary).items():
        means = {m: group["metrics"][m]["mean"] for m in group["metrics"]}
        cells = "".join(f"{means[m]:>10.1f}" if m in means else f"{'':>10}" for m in METRICS)
        rate = rates.get(name)
        cells += f"{rate:>10.1f}" if rate is not None else f"{'':>10}"
        lines.append(f"{name:<14}{group['count']:>5}" + cells)
    return "\n".join(lines)


class ShapeBench(Benchmark):
    """ShapeBench (or its development or wild split) answered by a model or the oracle, scored
    by the exact judge; the report printed as a table or JSON."""

    name = "shapebench"
    help = "ParaBench's six metrics, judged exactly on the shapes world"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--batch-size", type=int, default=8, help="samples per sampler run")
        parser.add_argument("--oracle", action="store_true", help="score the ground truth itself")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument(
            "--limit", type=int, default=None, help="score only the first N samples"
        )
        parser.add_argument(
            "--split",
            choices=SPLITS,
            default="shapebench",
            help="the 300 ShapeBench prompts (default), the 300 of the development split"
            " (disjoint from ShapeBench; for tuning and RL curves), the 300 of the confirmation"
            " split (disjoint from both; nothing is chosen on it) or the 250 of ShapeBench-wild"
            " (absent, ambiguous, neighbour, cell and several-object edits and every category, in"
            " phrasings no training sample uses)",
        )
        parser.add_argument(
            "--out",
            default=None,
            help="run folder: outputs, scores, report (a re-run resumes where it stopped)",
        )
        add_pipeline_arguments(parser, sizes=False)

    def samples(self, args: argparse.Namespace) -> list[ShapeSample]:
        if args.batch_size < 1:
            raise ShapeBenchError(f"--batch-size must be at least 1, got {args.batch_size}")
        return select_samples(args.limit, args.split)

    def items(self, args: argparse.Namespace) -> list[BenchItem]:
        return [bench_item(sample) for sample in self.samples(args)]

    def answerer(self, args: argparse.Namespace) -> tuple[Answerer, dict[str, Any]]:
        """The oracle's answers, or the model's (bundled by default) at its image size."""
        if args.oracle:
            answer = predictor_answerer(oracle, self.samples(args))
            return answer, {"benchmark": self.name, "model": "oracle"}
        try:
            pipe, overrides = load_configured_pipeline(args)
        except CommandError as err:
            hint = " (pass --model DIR, or --oracle)" if args.model is None else ""
            raise CommandError(f"{err}{hint}") from None
        sampler = sampler_settings(pipe, overrides)
        settings = {"benchmark": self.name, "model": args.model or "bundled", "sampler": sampler}
        settings.update(weight_settings(args))
        if args.split != "shapebench":  # (ShapeBench's folders keep their settings as they were)
            settings["split"] = args.split
        return pipeline_answerer(pipe, args.batch_size, overrides, pipe.image_size), settings

    def scorer(self, args: argparse.Namespace) -> Scorer:
        return exact_scorer(self.samples(args))

    def report(self, args: argparse.Namespace) -> dict[str, Any]:
        """The report of the options: the oracle's, or the model's with its sampler settings."""
        items = self.items(args)
        if args.out is not None:
            checked_out(args.out)
        answer, settings = self.answerer(args)
        sampler = settings.get("sampler")
        mode = "oracle" if sampler is None else sampler["mode"]
        report = score_items(
            items, answer, self.scorer(args), settings, args.out, not args.json, mode
        )
        if sampler is None:
            return report
        return {**report, "model": settings["model"], "sampler": sampler}

    def run(self, args: argparse.Namespace) -> int:
        # errors: CommandError, RunError, ShapeBenchError (one line from `paradiff.cli`)
        report = self.report(args)
        if args.json:
            print(json.dumps(rounded(report), indent=1))
        else:
            print(format_table(report))
        return 0


# The `paradiff.benchmarks` entry point of pyproject.toml: `paradiff bench shapebench`.
SHAPEBENCH = ShapeBench()
