"""Small PNG charts drawn with PIL (no plotting dependency): training and reward curves."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))
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
    left, right, top, bottom = 60, 20, 36, 44
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
        draw.text((left + 10 + 130 * index, 12), f"-- {name}", fill=colour, font=font)
    draw.text((width // 2 - 20, height - 18), x_label, fill="black", font=font)
    if title:
        draw.text((width - right - 8 * len(title), 12), title, fill="black", font=font)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out


def read_log(path: str | os.PathLike, keys: Sequence[str], x_key: str = "step") -> Series:
    """Series of a JSONL training log: one per key, (x_key, key) for the lines that have it."""
    series: dict[str, list[tuple[float, float]]] = {key: [] for key in keys}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        for key in keys:
            if key in record and x_key in record:
                series[key].append((float(record[x_key]), float(record[key])))
    return series
