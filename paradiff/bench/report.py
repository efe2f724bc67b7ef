"""Benchmark reports: means with bootstrap intervals, a Markdown table, a bar chart, comparison.

For a group of n per-sample scores x_1..x_n of one metric the report gives the mean and a 95%
percentile bootstrap interval: B resamples of n scores drawn with replacement (numpy generator
seeded with `seed`, the same for every group and metric), the 2.5th and 97.5th percentiles of
their means. Samples without a metric (image consistency of a generation) do not count for it.

A run folder's report is `summary.json`, `summary.md` and `chart.png` (one group of bars per
category, plus the tasks and overall).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paradiff.bench.items import METRICS
from paradiff.bench.runner import BenchFolder, write_atomic
from paradiff.files import FileInputError, read_json_object
from paradiff.plots import bar_chart
from paradiff.resumable import RunError
from paradiff.schema import SchemaError, is_number, take
from paradiff.schema import record as json_object

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
CHART = "chart.png"
RESAMPLES = 1000
SHORT_NAMES = dict(
    zip(METRICS, ("txt_q", "txt_al", "img_q", "img_al", "img_cons", "out_al"), strict=True)
)


def bootstrap_interval(
    values: list[float], seed: int = 0, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the mean of `values`."""
    x = np.asarray(values, dtype=np.float64)
    picks = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    low, high = np.percentile(x[picks].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def seed_level_interval(
    differences: np.ndarray, seed: int = 0, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """The 95% interval of the mean of `differences` (S, P) — S training seeds of an arm, each
    paired with a baseline on P prompts — by a two-level bootstrap: every resample draws S seeds
    and P prompts with replacement and takes the mean over both, so the interval holds the
    spread between training runs as well as between prompts."""
    x = np.asarray(differences, dtype=np.float64)
    if x.ndim != 2 or not x.size:
        raise ValueError(f"expected differences (seeds, prompts), got shape {x.shape}")
    return arm_difference_interval(x, np.zeros((1, x.shape[1])), seed, resamples)


def run_matrix(
    runs: Sequence[Mapping[str, Mapping[str, float]]], metric: str, ids: Sequence[str]
) -> np.ndarray:
    """(runs, prompts): each run's score of `metric` on the prompts `ids` (a run: its score
    records by prompt id), the input of `arm_difference_interval`."""
    return np.array([[run[item][metric] for item in ids] for run in runs], dtype=np.float64)


def arm_difference_interval(
    better: np.ndarray, worse: np.ndarray, seed: int = 0, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """The 95% interval of mean(better) - mean(worse) for two arms' scores (runs, P) on the
    same P prompts, runs unpaired (training or sampling seeds of each arm): every resample draws
    each arm's runs with replacement and one set of P prompts for both (the prompts stay
    paired), so the interval holds the spread between runs of either arm and between prompts."""
    a, b = np.asarray(better, dtype=np.float64), np.asarray(worse, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or not a.size or not b.size or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected (runs, prompts) on the same prompts, got {a.shape}, {b.shape}")
    rng = np.random.default_rng(seed)
    runs_a = rng.integers(0, a.shape[0], size=(resamples, a.shape[0]))
    prompts = rng.integers(0, a.shape[1], size=(resamples, a.shape[1]))
    runs_b = rng.integers(0, b.shape[0], size=(resamples, b.shape[0]))  # drawn last (see above)
    means_a = a[runs_a[:, :, None], prompts[:, None, :]].mean(axis=(1, 2))  # (resamples,)
    means_b = b[runs_b[:, :, None], prompts[:, None, :]].mean(axis=(1, 2))
    low, high = np.percentile(means_a - means_b, [2.5, 97.5])
    return float(low), float(high)


def paired_differences(
    scored: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """{metric: {"mean", "ci95"}} of scored - base, per sample id both runs scored the
    metric for (a run folder's `scored()` each); metrics without such a sample are left out."""
    differences = {}
    for metric in METRICS:
        delta = [
            record[metric] - base[i][metric]
            for i, record in scored.items()
            if record.get(metric) is not None and base.get(i, {}).get(metric) is not None
        ]
        if delta:
            low, high = bootstrap_interval(delta)
            differences[metric] = {"mean": float(np.mean(delta)), "ci95": [low, high]}
    return differences


def summarise_group(
    records: list[dict[str, Any]], seed: int = 0, resamples: int = RESAMPLES
) -> dict[str, Any]:
    """{"count", "metrics": {metric: {"mean", "ci95": [low, high], "n"}}} of one group."""
    metrics = {}
    for metric in METRICS:
        values = [r[metric] for r in records if r.get(metric) is not None]
        if values:
            metrics[metric] = {
                "mean": sum(values) / len(values),
                "ci95": list(bootstrap_interval(values, seed, resamples)),
                "n": len(values),
            }
    return {"count": len(records), "metrics": metrics}


def summarise(
    records: list[dict[str, Any]], seed: int = 0, resamples: int = RESAMPLES, **extra: Any
) -> dict[str, Any]:
    """The summary of score records (each with "task", "category" and the metrics, None where
    not scored): overall, per task and per category (in first-seen order)."""
    if not records:
        raise RunError("no scored samples to report")
    by_task: dict[str, list] = {}
    by_category: dict[str, list] = {}
    for record in records:
        by_task.setdefault(record["task"], []).append(record)
        by_category.setdefault(record["category"], []).append(record)

    def group(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return summarise_group(rows, seed, resamples)

    return {
        **extra,
        "count": len(records),
        "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95},
        "overall": group(records),
        "per_task": {task: group(rows) for task, rows in by_task.items()},
        "per_category": {category: group(rows) for category, rows in by_category.items()},
    }


def groups_of(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every group of a summary by its row name: categories, tasks, then overall."""
    return {**summary["per_category"], **summary["per_task"], "overall": summary["overall"]}


def in_group(record: dict[str, Any], group: str) -> bool:
    """Whether a score record belongs to a group of the report: overall, its task or category."""
    return group in ("overall", record.get("task"), record.get("category"))


def markdown_table(summary: dict[str, Any]) -> str:
    """One row per group: n, then each metric as `mean [low, high]` (– where not scored)."""
    head = "| group | n | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for name, group in groups_of(summary).items():
        cells = []
        for metric in METRICS:
            value = group["metrics"].get(metric)
            if value is None:
                cells.append("–")
            else:
                low, high = value["ci95"]
                cells.append(f"{value['mean']:.1f} [{low:.1f}, {high:.1f}]")
        lines.append(f"| {name} | {group['count']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(folder: str | os.PathLike, summary: dict[str, Any], title: str = "") -> Path:
    """Write summary.json, summary.md and chart.png into `folder`."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / SUMMARY_JSON, json.dumps(summary, indent=1) + "\n")
    heading = f"# {title}\n\n" if title else ""
    write_atomic(out / SUMMARY_MD, heading + markdown_table(summary) + "\n")
    groups = groups_of(summary)
    means = {
        g: {SHORT_NAMES[m]: v["mean"] for m, v in s["metrics"].items()} for g, s in groups.items()
    }
    intervals = {
        g: {SHORT_NAMES[m]: tuple(v["ci95"]) for m, v in s["metrics"].items()}
        for g, s in groups.items()
    }
    bar_chart(means, out / CHART, title, intervals)
    return out


def report_run(root: str | os.PathLike, ids: list[str] | None = None) -> dict[str, Any]:
    """Merge every shard's scores of a run folder (only `ids`, in that order, when given),
    write its report and return the summary."""
    folder = BenchFolder(root)
    settings = folder.settings()
    scored = folder.scored()
    records = [scored[i] for i in ids if i in scored] if ids is not None else list(scored.values())
    summary = summarise(records, benchmark=settings.get("benchmark"), model=settings.get("model"))
    write_report(
        root, summary, f"{settings.get('benchmark', 'benchmark')}: {settings.get('model')}"
    )
    return summary


def load_summary(root: str | os.PathLike) -> dict[str, Any]:
    """A run folder's summary.json (RunError naming it when it is not one), made from its scores
    when it has none yet."""
    path = Path(root) / SUMMARY_JSON
    if not path.is_file():
        return report_run(root)
    try:
        summary = read_json_object(path)
        for name, group in groups_of_checked(summary, str(path)).items():
            where = f"{path}: group {name!r}"
            take(json_object(group, where), "count", "int", where)
            for metric, value in take(group, "metrics", "object", where).items():
                value = json_object(value, f"{where}, {metric}")
                take(value, "mean", "number", f"{where}, {metric}")
                interval = take(value, "ci95", "list", f"{where}, {metric}")
                if len(interval) != 2 or not all(is_number(v) for v in interval):
                    raise SchemaError(f"{where}, {metric}: ci95 must be two numbers")
    except (FileInputError, SchemaError) as err:
        raise RunError(str(err)) from None
    return summary


def groups_of_checked(summary: dict[str, Any], where: str) -> dict[str, Any]:
    """`groups_of` of a summary read from a file: its three group fields must be objects."""
    for field in ("overall", "per_task", "per_category"):
        take(summary, field, "object", where)
    return groups_of(summary)


def compare_table(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Side by side: one line per group and metric with A, B and B - A."""
    lines = [f"{'group':<16}{'metric':<20}{'A':>8}{'B':>8}{'B-A':>8}"]
    groups_a, groups_b = groups_of(a), groups_of(b)
    for name in dict.fromkeys([*groups_a, *groups_b]):
        for metric in METRICS:
            values = [g.get(name, {}).get("metrics", {}).get(metric) for g in (groups_a, groups_b)]
            if values == [None, None]:
                continue
            means = [f"{v['mean']:8.1f}" if v else f"{'–':>8}" for v in values]
            diff = f"{values[1]['mean'] - values[0]['mean']:+8.1f}" if all(values) else f"{'–':>8}"
            lines.append(f"{name:<16}{metric:<20}{means[0]}{means[1]}{diff}")
    return "\n".join(lines)
