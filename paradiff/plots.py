"""PNG charts drawn with matplotlib (off-screen, the Agg backend): training and reward curves,
and grouped bar charts of benchmark scores."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402

Series = dict[str, Sequence[tuple[float, float]]]
DPI = 100


def _save(figure, path: str | os.PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI)
    plt.close(figure)
    return out


def line_chart(
    series: Series,
    path: str | os.PathLike,
    title: str = "",
    x_label: str = "step",
    size: tuple[int, int] = (720, 420),
) -> Path:
    """Draw each named series of (x, y) points as a line on shared axes and save a PNG of
    `size` pixels."""
    if not any(len(values) for values in series.values()):
        raise ValueError("nothing to plot")
    figure, axes = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), layout="constrained")
    for name, values in series.items():
        axes.plot([x for x, _ in values], [y for _, y in values], label=name, linewidth=1.5)
    axes.set_xlabel(x_label)
    axes.grid(True, color="0.9")
    axes.legend(loc="best", fontsize="small")
    if title:
        axes.set_title(title)
    return _save(figure, path)


def bar_chart(
    groups: dict[str, dict[str, float]],
    path: str | os.PathLike,
    title: str = "",
    intervals: dict[str, dict[str, tuple[float, float]]] | None = None,
    y_max: float = 100.0,
) -> Path:
    """Draw one group of bars per key of `groups` (one bar per series name, coloured as in the
    legend, on a 0..y_max axis), with optional (low, high) whiskers, and save a PNG."""
    names = list(dict.fromkeys(name for values in groups.values() for name in values))
    if not names:
        raise ValueError("nothing to plot")
    width = 1.0 / (len(names) + 1)  # bar width in group units, a bar's width of gap
    figure, axes = plt.subplots(
        figsize=(max(6.0, 0.25 * len(names) * len(groups) + 2), 4.0), layout="constrained"
    )
    for n, name in enumerate(names):
        xs, heights, low, high = [], [], [], []
        for g, (group, values) in enumerate(groups.items()):
            if values.get(name) is None:
                continue
            xs.append(g + (n - (len(names) - 1) / 2) * width)
            heights.append(values[name])
            spread = (intervals or {}).get(group, {}).get(name)
            low.append(values[name] - spread[0] if spread else 0.0)
            high.append(spread[1] - values[name] if spread else 0.0)
        whiskers = [low, high] if intervals else None
        axes.bar(xs, heights, width, label=name, yerr=whiskers, capsize=2, ecolor="black")
    axes.set_xticks(range(len(groups)), list(groups), rotation=30, ha="right", fontsize="small")
    axes.set_ylim(0, y_max)
    axes.grid(True, axis="y", color="0.9")
    axes.set_axisbelow(True)
    axes.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=min(6, len(names)), fontsize="small"
    )
    if title:
        axes.set_title(title)
    return _save(figure, path)


def read_log(path: str | os.PathLike, keys: Sequence[str], x_key: str = "step") -> Series:
    """Series of a JSONL training log: one per key, (x_key, key) for the lines that have it.

    A dotted key reads nested fields: "eval.overall.output_alignment". A resumed run logs the
    steps after its checkpoint again: the later line of a step wins."""
    points: dict[str, dict[float, float]] = {key: {} for key in keys}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        for key in keys:
            value = record
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None and x_key in record:
                points[key][float(record[x_key])] = float(value)
    return {key: sorted(values.items()) for key, values in points.items()}
