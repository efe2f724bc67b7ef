"""Charts (matplotlib, off-screen): sizes, one colour per series, bar heights to scale."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from paradiff.plots import bar_chart, line_chart, read_log

BLUE, ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's first two series colours


def pixels_of(path, colour) -> int:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(rgb - np.array(colour)).sum(-1) < 30).sum())


def test_line_chart_has_its_size_and_a_colour_per_series(tmp_path):
    path = line_chart(
        {"loss": [(0, 3.0), (1, 2.0), (2, 1.5)], "reward": [(0, 0.1), (2, 0.4)]},
        tmp_path / "sub" / "curve.png",
        title="training",
        size=(640, 360),
    )
    with Image.open(path) as image:
        assert image.size == (640, 360)
    assert pixels_of(path, BLUE) > 50 and pixels_of(path, ORANGE) > 50
    with pytest.raises(ValueError, match="nothing to plot"):
        line_chart({"loss": []}, tmp_path / "empty.png")


def test_read_log_takes_nested_keys_and_the_later_line_of_a_step_logged_twice(tmp_path):
    lines = [
        {"step": 20, "loss": 0.5},
        {"step": 40, "loss": 0.4, "eval": {"overall": {"output_alignment": 30.0}}},
        {"step": 60, "loss": 0.9},  # the run stopped here and resumed from step 40
        {"step": 60, "loss": 0.3},
        {"step": 80, "loss": 0.2},
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    series = read_log(path, ["loss", "eval.overall.output_alignment", "absent"])
    assert series["loss"] == [(20.0, 0.5), (40.0, 0.4), (60.0, 0.3), (80.0, 0.2)]
    assert series["eval.overall.output_alignment"] == [(40.0, 30.0)] and series["absent"] == []


def test_bar_heights_are_to_scale_and_a_missing_value_draws_no_bar(tmp_path):
    path = bar_chart(
        {"A": {"x": 80.0, "y": 40.0}, "B": {"x": 80.0}},
        tmp_path / "bars.png",
        intervals={"A": {"x": (70.0, 90.0)}},
    )
    x_pixels, y_pixels = pixels_of(path, BLUE), pixels_of(path, ORANGE)
    # two x bars of 80 against one y bar of 40 (plus legend patches of equal size)
    assert 3.0 < x_pixels / y_pixels < 4.6
    with pytest.raises(ValueError, match="nothing to plot"):
        bar_chart({"A": {}}, tmp_path / "none.png")
