"""Shared helpers of the task generators: drafts, random scenes and objects, phrase picking."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from paradiff.shapes.constraints import Constraint
from paradiff.shapes.language import (
    CORNERS,
    RELATION_STEPS,
    a_obj,
    a_shape,
    group_of,
    items_text,
    positions_text,
    say,
    variants,
)
from paradiff.shapes.scene import COLOUR_NAMES, SHAPES, Obj, Pos, Scene

# Objects in a random input scene, per difficulty level (inclusive ranges). Level 0, sparse
# scenes, is a warm-up for locating: with one or two objects the named one is easy to find, so a
# model learns to read positions before it must tell many objects apart (generation reads it as 1).
SCENE_OBJECTS: dict[int, tuple[int, int]] = {0: (1, 2), 1: (3, 5), 2: (5, 8), 3: (7, 11)}
LEVELS: tuple[int, ...] = tuple(SCENE_OBJECTS)
DIFFICULTIES: tuple[int, ...] = (1, 2, 3)  # what "mixed" draws from


class Unfit(Exception):
    """The random scene does not allow this task; the generator draws again."""


@dataclass
class Draft:
    """What a generator produces before it becomes a `ShapeSample`."""

    instruction: str
    sentences: list[str]
    scene_out: Scene
    scene_in: Scene | None = None
    constraints: list[Constraint] | None = None

    @property
    def reasoning(self) -> str:
        return " ".join(self.sentences)


def phrase(rng: random.Random, family: str, **slots: str) -> str:
    """A reasoning sentence from a random template of `family`."""
    return say(family, rng.randrange(variants(family)), **slots)


def random_obj(
    rng: random.Random,
    shape: str | None = None,
    colour: str | None = None,
    avoid_shapes: Sequence[str] = (),
    avoid_colours: Sequence[str] = (),
) -> Obj:
    shapes = [s for s in SHAPES if s not in avoid_shapes]
    colours = [c for c in COLOUR_NAMES if c not in avoid_colours]
    if (shape is None and not shapes) or (colour is None and not colours):
        raise Unfit("every shape or colour is excluded")
    return Obj(shape or rng.choice(shapes), colour or rng.choice(colours))


def random_scene(rng: random.Random, rows: int, cols: int, difficulty: int) -> Scene:
    """A scene with a difficulty-dependent number of random objects at random cells."""
    low, high = SCENE_OBJECTS[difficulty]
    cells = all_cells(rows, cols)
    count = min(rng.randint(low, high), len(cells) - 1)
    return Scene(rows, cols, {pos: random_obj(rng) for pos in rng.sample(cells, count)})


REGIONS = ("top row", "bottom row", "left column", "right column")


def region_cells(rows: int, cols: int, name: str) -> tuple[dict[str, int], list[Pos], str]:
    """Region name -> (its constraint region, its cells, 'row 4' / 'column 1')."""
    if name == "top row":
        return {"row": 0}, [(0, c) for c in range(cols)], "row 1"
    if name == "bottom row":
        return {"row": rows - 1}, [(rows - 1, c) for c in range(cols)], f"row {rows}"
    if name == "left column":
        return {"col": 0}, [(r, 0) for r in range(rows)], "column 1"
    return {"col": cols - 1}, [(r, cols - 1) for r in range(rows)], f"column {cols}"


def corner_pos(rows: int, cols: int, name: str) -> Pos:
    vertical, horizontal = CORNERS[name]
    return (0 if vertical == "top" else rows - 1, 0 if horizontal == "left" else cols - 1)


def neighbour(rows: int, cols: int, pos: Pos, relation: str) -> Pos | None:
    d_row, d_col = RELATION_STEPS[relation]
    row, col = pos[0] + d_row, pos[1] + d_col
    return (row, col) if 0 <= row < rows and 0 <= col < cols else None


def all_cells(rows: int, cols: int) -> list[Pos]:
    return [(r, c) for r in range(rows) for c in range(cols)]


def pick(rng: random.Random, options: Sequence, what: str = "option"):
    """rng.choice that raises Unfit on an empty sequence."""
    if not options:
        raise Unfit(f"no {what}")
    return rng.choice(list(options))


def placement_sentences(rng: random.Random, placed: Sequence[tuple[Pos, Obj]]) -> list[str]:
    """Sentences that draw `placed` objects: one list of singles, or one sentence per group."""
    groups: dict[Obj, list[Pos]] = {}
    for pos, obj in placed:
        groups.setdefault(obj, []).append(pos)
    if all(len(positions) == 1 for positions in groups.values()):
        return [phrase(rng, "add_items", items=items_text(list(placed), definite=False))]
    out = []
    for obj, positions in groups.items():
        if len(positions) == 1:
            text = items_text([(positions[0], obj)], definite=False)
            out.append(phrase(rng, "add_items", items=text))
        else:
            family = rng.choice(("add_group", "add_groups_bare"))
            out.append(
                phrase(
                    rng, family, group=group_of(obj), positions=positions_text(sorted(positions))
                )
            )
    return out


def describe_obj(obj: Obj, with_colour: bool) -> str:
    """'a red circle' or 'a circle'."""
    return a_obj(obj) if with_colour else a_shape(obj.shape)
