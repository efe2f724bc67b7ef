"""Charts (matplotlib, off-screen): sizes, one colour per series, bar heights to scale."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from paradiff.plots import bar_chart, line_chart

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
