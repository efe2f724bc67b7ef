"""Scenes of the shapes world: a grid of cells, each empty or holding one coloured shape.

Positions are 0-based `(row, col)` tuples in code and JSON; texts say `row r+1, column c+1`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")
# Named colours and their RGB values, chosen far apart so that noisy pixels still quantize right.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (240, 205, 0),
    "green": (30, 150, 50),
    "blue": (30, 80, 220),
    "purple": (130, 40, 180),
    "pink": (255, 110, 190),
    "black": (20, 20, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
BACKGROUND: tuple[int, int, int] = (255, 255, 255)
DEFAULT_GRID = 4
MAX_GRID = 9  # texts write positions as single digits

Pos = tuple[int, int]


class SceneError(ValueError):
    """A scene, object or position that does not belong to the shapes world."""


@dataclass(frozen=True, order=True)
class Obj:
    """One object: a shape in a colour."""

    shape: str
    colour: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise SceneError(f"unknown shape {self.shape!r} (expected one of {SHAPES})")
        if self.colour not in COLOURS:
            raise SceneError(f"unknown colour {self.colour!r} (expected one of {COLOUR_NAMES})")

    def __str__(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """A `rows` x `cols` grid; `cells` maps occupied positions to their objects."""

    rows: int = DEFAULT_GRID
    cols: int = DEFAULT_GRID
    cells: dict[Pos, Obj] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (1 <= self.rows <= MAX_GRID and 1 <= self.cols <= MAX_GRID):
            raise SceneError(f"grid {self.rows}x{self.cols} outside 1..{MAX_GRID} per side")
        for pos, obj in self.cells.items():
            self.check_pos(pos)
            if not isinstance(obj, Obj):
                raise SceneError(f"cell {pos} holds {obj!r}, not an Obj")

    def check_pos(self, pos: Pos) -> None:
        row, col = pos
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise SceneError(f"position {pos} outside the {self.rows}x{self.cols} grid")

    def __hash__(self) -> int:  # the generated one would hash the (unhashable) dict
        return hash((self.rows, self.cols, tuple(sorted(self.cells.items()))))

    def get(self, pos: Pos) -> Obj | None:
        return self.cells.get(pos)

    def positions(self) -> Iterator[Pos]:
        """Every position in raster order."""
        for row in range(self.rows):
            for col in range(self.cols):
                yield (row, col)

    def objects(self) -> list[tuple[Pos, Obj]]:
        """Occupied cells in raster order."""
        return sorted(self.cells.items())

    def find(self, shape: str | None = None, colour: str | None = None) -> list[Pos]:
        """Positions (raster order) of objects matching the shape and/or colour given."""
        return [
            pos
            for pos, obj in self.objects()
            if (shape is None or obj.shape == shape) and (colour is None or obj.colour == colour)
        ]

    def with_cells(self, updates: dict[Pos, Obj | None]) -> Scene:
        """A copy with `updates` applied (None empties a cell)."""
        cells = dict(self.cells)
        for pos, obj in updates.items():
            self.check_pos(pos)
            if obj is None:
                cells.pop(pos, None)
            else:
                cells[pos] = obj
        return Scene(self.rows, self.cols, cells)

    def diff(self, other: Scene) -> dict[Pos, Obj | None]:
        """Cells whose content differs in `other`, mapped to their content there."""
        if (self.rows, self.cols) != (other.rows, other.cols):
            raise SceneError(
                f"cannot compare a {self.rows}x{self.cols} scene with a "
                f"{other.rows}x{other.cols} one"
            )
        return {pos: other.get(pos) for pos in self.positions() if self.get(pos) != other.get(pos)}

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form: 0-based positions in raster order."""
        return {
            "rows": self.rows,
            "cols": self.cols,
            "cells": [
                {"row": row, "col": col, "shape": obj.shape, "colour": obj.colour}
                for (row, col), obj in self.objects()
            ],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Scene:
        try:
            cells = {
                (int(cell["row"]), int(cell["col"])): Obj(cell["shape"], cell["colour"])
                for cell in raw["cells"]
            }
            return cls(int(raw["rows"]), int(raw["cols"]), cells)
        except (KeyError, TypeError) as err:
            raise SceneError(f"malformed scene JSON: missing or bad field {err}") from None

    @classmethod
    def empty(cls, rows: int = DEFAULT_GRID, cols: int = DEFAULT_GRID) -> Scene:
        return cls(rows, cols, {})
