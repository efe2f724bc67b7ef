"""Small PNG charts drawn with PIL (no plotting dependency): training and reward curves, and
grouped bar charts of benchmark scores."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PALETTE = (
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (148, 103, 189),
    (255, 127, 14),
    (23, 190, 207),
)
Series = dict[str, Sequence[tuple[float, float]]]


def line_chart(
    series: Series,
    path: str | os.PathLike,
    title: str = "",
    x_label: str = "step",
    size: tuple[int, int] = (720, 420),
) -> Path:
    """Draw each named series of (x, y) points as a line on shared axes and save a PNG."""
    points = [p for values in series.values() for p in values]
    if not points:
        raise ValueError("nothing to plot")
    width, height = size
    left, right, top, bottom = 60, 20, (54 if title else 36), 44
    legend_y = top - 24  # the legend row sits under the title row
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        px = left + (x - x0) / (x1 - x0) * (width - left - right)
        py = height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)
        return px, py

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.rectangle([left, top, width - right, height - bottom], outline=(90, 90, 90))
    for i in range(5):  # axis ticks: 5 evenly spaced labels per axis
        fx, fy = x0 + (x1 - x0) * i / 4, y0 + (y1 - y0) * i / 4
        px, _ = to_pixel(fx, y0)
        _, py = to_pixel(x0, fy)
        draw.text((px - 12, height - bottom + 6), f"{fx:g}", fill="black", font=font)
        draw.text((4, py - 6), f"{fy:.3g}", fill="black", font=font)
        draw.line([left, py, width - right, py], fill=(230, 230, 230))
    for index, (name, values) in enumerate(series.items()):
        colour = PALETTE[index % len(PALETTE)]
        line = [to_pixel(x, y) for x, y in values]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        draw.text((left + 10 + 130 * index, legend_y), f"-- {name}", fill=colour, font=font)
    draw.text((width // 2 - 20, height - 18), x_label, fill="black", font=font)
    if title:
        draw.text((left, 8), title, fill="black", font=font)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out


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
    bar, gap, legend, left, right, top, bottom = 10, 16, 90, 50, 20, 44, 30
    group_px = bar * len(names) + gap
    width = left + right + max(group_px * len(groups), legend * len(names))
    height = 360
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()

    def to_y(value: float) -> float:
        return height - bottom - value / y_max * (height - top - bottom)

    for i in range(5):
        value = y_max * i / 4
        draw.line([left, to_y(value), width - right, to_y(value)], fill=(230, 230, 230))
        draw.text((4, to_y(value) - 6), f"{value:g}", fill="black", font=font)
    for g, (group, values) in enumerate(groups.items()):
        x = left + gap / 2 + g * group_px
        for n, name in enumerate(names):
            if values.get(name) is None:
                continue
            x0 = x + n * bar
            draw.rectangle(
                [x0, to_y(values[name]), x0 + bar - 2, to_y(0)], fill=PALETTE[n % len(PALETTE)]
            )
            low_high = (intervals or {}).get(group, {}).get(name)
            if low_high is not None:
                centre = x0 + bar / 2 - 1
                draw.line([centre, to_y(low_high[0]), centre, to_y(low_high[1])], fill="black")
        draw.text((x, height - bottom + 6), group[: group_px // 6], fill="black", font=font)
    draw.line([left, to_y(0), width - right, to_y(0)], fill=(90, 90, 90))
    for n, name in enumerate(names):  # legend: one row under the title
        colour = PALETTE[n % len(PALETTE)]
        draw.text((left + legend * n, 22), f"# {name}", fill=colour, font=font)
    if title:
        draw.text((left, 6), title, fill="black", font=font)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out


def read_log(path: str | os.PathLike, keys: Sequence[str], x_key: str = "step") -> Series:
    """Series of a JSONL training log: one per key, (x_key, key) for the lines that have it.

    A dotted key reads nested fields: "eval.overall.output_alignment"."""
    series: dict[str, list[tuple[float, float]]] = {key: [] for key in keys}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        for key in keys:
            value = record
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is not None and x_key in record:
                series[key].append((float(record[x_key]), float(value)))
    return series
