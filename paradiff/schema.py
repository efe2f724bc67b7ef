"""One strict reading of the JSON records paradiff takes from files and servers: batch requests,
ParaBench records, run-folder records (generations, scores, run.json) and judge answers.

`take(row, name, kind, where)` returns a field of a JSON object if it has the kind asked for,
else raises SchemaError naming the record and the field: a bool is no number (JSON `true` is not
1), a string no number and no bool, a float no whole number; numbers must be finite.
"""

from __future__ import annotations

import math
from typing import Any

KINDS = ("str", "text", "id", "int", "number", "bool", "object", "list")
MISSING = object()


class SchemaError(ValueError):
    """A record whose field is missing or of the wrong kind."""


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_kind(value: Any, kind: str) -> bool:
    """Whether `value` is of `kind`: str (any string), text (a non-empty string), id (a non-empty string, or a
    whole number), int, number (finite), bool, object, list."""
    if kind == "str":
        return isinstance(value, str)
    if kind == "text":
        return isinstance(value, str) and bool(value.strip())
    if kind == "id":
        return (isinstance(value, str) and bool(value.strip())) or is_int(value)
    if kind == "int":
        return is_int(value)
    if kind == "number":
        return is_number(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    raise ValueError(f"unknown kind {kind!r}")


NAMES = {
    "str": "a string",
    "text": "a non-empty string",
    "id": "a non-empty string or a whole number",
    "int": "a whole number",
    "number": "a finite number",
    "bool": "true or false",
    "object": "a JSON object",
    "list": "a JSON list",
}


def record(value: Any, where: str) -> dict[str, Any]:
    """`value` if it is a JSON object, else SchemaError."""
    if not isinstance(value, dict):
        raise SchemaError(f"{where} is not a JSON object")
    return value


def take(
    row: dict[str, Any],
    name: str,
    kind: str,
    where: str,
    default: Any = MISSING,
    nullable: bool = False,
) -> Any:
    """The field `name` of `row`, which must be of `kind` (None too when `nullable`); absent, it
    is `default`, or an error when there is none."""
    if name not in row:
        if default is MISSING:
            raise SchemaError(f"{where} has no {name}")
        return default
    value = row[name]
    if value is None and nullable:
        return None
    if not check_kind(value, kind):
        raise SchemaError(f"{where}: {name!r} must be {NAMES[kind]}, got {value!r:.80}")
    return value
