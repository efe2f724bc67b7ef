"""Constraints a generated scene must satisfy, as JSON-friendly dicts, and their exact check.

Kinds (shape/colour None = any; positions 0-based):
  {"kind": "count", "shape", "colour", "region", "value"}  exactly `value` matching objects,
      within `region` ({"row": r} or {"col": c}) when one is given
  {"kind": "total", "value"}                                 exactly `value` objects in all
  {"kind": "at", "row", "col", "shape", "colour"}            that cell holds a matching object
  {"kind": "relation", "a", "relation", "b"}                 some object matching `a` (a dict
      with shape/colour) is `relation` of some object matching `b`; relations are
      "directly above/below/left of/right of" (the neighbouring cell) or "above/below/left of/
      right of" (further along the same column/row)
"""

from __future__ import annotations

from typing import Any

from paradiff.shapes.language import RELATION_STEPS
from paradiff.shapes.scene import Obj, Pos, Scene

Constraint = dict[str, Any]
KINDS = ("count", "total", "at", "relation")


class ConstraintError(ValueError):
    """A constraint dict that is not one of the known kinds or lacks a field."""


def matches(obj: Obj, shape: str | None, colour: str | None) -> bool:
    return (shape is None or obj.shape == shape) and (colour is None or obj.colour == colour)


def in_region(pos: Pos, region: dict[str, int] | None) -> bool:
    if region is None:
        return True
    if "row" in region:
        return pos[0] == region["row"]
    return pos[1] == region["col"]


def related(a: Pos, relation: str, b: Pos) -> bool:
    """Whether cell `a` is `relation` of cell `b` (see the module docstring)."""
    adjacent = relation.startswith("directly ")
    base = relation.removeprefix("directly ")
    if base not in RELATION_STEPS:
        raise ConstraintError(f"unknown relation {relation!r}")
    d_row, d_col = RELATION_STEPS[base]
    off_row, off_col = a[0] - b[0], a[1] - b[1]
    if d_row:  # above / below: same column
        steps = off_row * d_row
        return off_col == 0 and (steps == 1 if adjacent else steps >= 1)
    steps = off_col * d_col
    return off_row == 0 and (steps == 1 if adjacent else steps >= 1)


def satisfied(constraint: Constraint, scene: Scene) -> bool:
    """Exact check of one constraint on a scene."""
    try:
        kind = constraint["kind"]
        if kind == "total":
            return len(scene.cells) == constraint["value"]
        if kind == "count":
            found = [
                pos
                for pos, obj in scene.objects()
                if matches(obj, constraint.get("shape"), constraint.get("colour"))
                and in_region(pos, constraint.get("region"))
            ]
            return len(found) == constraint["value"]
        if kind == "at":
            obj = scene.get((constraint["row"], constraint["col"]))
            return obj is not None and matches(
                obj, constraint.get("shape"), constraint.get("colour")
            )
        if kind == "relation":
            a, b = constraint["a"], constraint["b"]
            firsts = scene.find(a.get("shape"), a.get("colour"))
            seconds = scene.find(b.get("shape"), b.get("colour"))
            return any(related(p, constraint["relation"], q) for p in firsts for q in seconds)
    except (KeyError, TypeError, AttributeError) as err:
        raise ConstraintError(f"malformed constraint {constraint!r}: {err}") from None
    raise ConstraintError(f"unknown constraint kind {kind!r} (expected one of {KINDS})")


def constraint_score(constraints: list[Constraint], scene: Scene) -> float:
    """Fraction of constraints the scene satisfies, in [0, 1]; 0 for a scene with no objects.

    Every generation prompt asks for at least one object, so an empty scene (doing nothing)
    scores 0 even where it happens to satisfy a negative constraint such as "no red shapes".
    """
    if not constraints:
        raise ConstraintError("no constraints to score")
    if not scene.cells:
        return 0.0
    return sum(satisfied(c, scene) for c in constraints) / len(constraints)


def required_total(constraints: list[Constraint]) -> int:
    """The object count a `total` constraint fixes (every generation sample has one)."""
    for constraint in constraints:
        if constraint.get("kind") == "total":
            return int(constraint["value"])
    raise ConstraintError("the constraints fix no total object count")


# -- builders ---------------------------------------------------------------------------------
def count(value: int, shape=None, colour=None, region=None) -> Constraint:
    return {"kind": "count", "shape": shape, "colour": colour, "region": region, "value": value}


def total(value: int) -> Constraint:
    return {"kind": "total", "value": value}


def at(pos: Pos, shape=None, colour=None) -> Constraint:
    return {"kind": "at", "row": pos[0], "col": pos[1], "shape": shape, "colour": colour}


def relation(a: dict[str, Any], rel: str, b: dict[str, Any]) -> Constraint:
    return {"kind": "relation", "a": a, "relation": rel, "b": b}
