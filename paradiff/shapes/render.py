"""Draw scenes as RGB images: one aliased sprite per cell, so rendering is exact and repeatable.

A cell of `cell_px` pixels holds its shape inside a margin of `cell_px // 8`; PIL's polygon and
ellipse fills are not anti-aliased, so every pixel is either the background or the shape colour.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from PIL import Image, ImageDraw

from paradiff.shapes.scene import BACKGROUND, COLOURS, Obj, Scene, SceneError

DEFAULT_CELL_PX = 16


MIN_CELL_PX = 10  # below this some quadrants of different shapes coincide
MAX_CELL_PX = 512  # a cell is drawn as a cell_px x cell_px array per shape and colour


def check_cell_px(cell_px: int) -> None:
    if cell_px < MIN_CELL_PX or cell_px > MAX_CELL_PX or cell_px % 2:
        raise SceneError(
            f"cell size {cell_px} px must be even, at least {MIN_CELL_PX} and at most {MAX_CELL_PX}"
        )


# Shapes symmetric about the vertical axis (all) and about the horizontal axis (these).
TOP_BOTTOM_SYMMETRIC = frozenset({"circle", "square", "diamond", "cross"})


def _star_points(cx: float, cy: float, outer: float, inner: float) -> list[tuple[float, float]]:
    """Ten alternating outer/inner vertices of a five-pointed star, first point up."""
    points = []
    for k in range(10):
        radius = outer if k % 2 == 0 else inner
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, size: int, fill: tuple[int, int, int]):
    margin = size // 8
    lo, hi = margin, size - 1 - margin  # inclusive pixel bounds of the drawing box
    centre = (size - 1) / 2
    if shape == "circle":
        draw.ellipse((lo, lo, hi, hi), fill=fill)
    elif shape == "square":
        draw.rectangle((lo + 1, lo + 1, hi - 1, hi - 1), fill=fill)
    elif shape == "triangle":
        draw.polygon([(centre, lo), (hi, hi), (lo, hi)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(centre, lo), (hi, centre), (centre, hi), (lo, centre)], fill=fill)
    elif shape == "star":
        # a star spans (1 + cos 36deg) * outer vertically; centre that span in the box
        outer = (hi - lo + 1) / (1 + math.cos(math.pi / 5))
        cy = centre + outer * (1 - math.cos(math.pi / 5)) / 2
        draw.polygon(_star_points(centre, cy, outer, outer * 0.45), fill=fill)
    elif shape == "cross":
        half_bar = size // 8
        mid_lo, mid_hi = size // 2 - half_bar, size // 2 + half_bar - 1
        draw.rectangle((lo, mid_lo, hi, mid_hi), fill=fill)
        draw.rectangle((mid_lo, lo, mid_hi, hi), fill=fill)
    else:
        raise SceneError(f"no drawing for shape {shape!r}")


@cache
def cell_sprite(obj: Obj | None, cell_px: int = DEFAULT_CELL_PX) -> np.ndarray:
    """The pixels of one cell, (cell_px, cell_px, 3) uint8; None draws an empty cell.

    Pixel rounding makes PIL's fills slightly lopsided, so the left (and for shapes symmetric
    about the horizontal axis, the top) half is mirrored onto the other.
    """
    check_cell_px(cell_px)
    image = Image.new("RGB", (cell_px, cell_px), BACKGROUND)
    if obj is not None:
        _draw_shape(ImageDraw.Draw(image), obj.shape, cell_px, COLOURS[obj.colour])
    sprite = np.asarray(image, dtype=np.uint8).copy()
    half = cell_px // 2
    sprite[:, half:] = sprite[:, :half][:, ::-1]
    if obj is not None and obj.shape in TOP_BOTTOM_SYMMETRIC:
        sprite[half:] = sprite[:half][::-1]
    sprite.setflags(write=False)
    return sprite


def render_array(scene: Scene, cell_px: int = DEFAULT_CELL_PX) -> np.ndarray:
    """Scene -> pixels (rows * cell_px, cols * cell_px, 3) uint8."""
    pixels = np.empty((scene.rows * cell_px, scene.cols * cell_px, 3), dtype=np.uint8)
    for row, col in scene.positions():
        top, left = row * cell_px, col * cell_px
        pixels[top : top + cell_px, left : left + cell_px] = cell_sprite(
            scene.get((row, col)), cell_px
        )
    return pixels


def render_scene(scene: Scene, cell_px: int = DEFAULT_CELL_PX) -> Image.Image:
    """Scene -> RGB PIL image of (cols * cell_px) x (rows * cell_px) pixels."""
    return Image.fromarray(render_array(scene, cell_px))
