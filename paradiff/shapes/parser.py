"""Read a reasoning text back into the claims it makes; never raises on garbage.

The text is lower-cased, split into sentences at periods, and each sentence is matched in full
against the templates of `paradiff.shapes.language`. A left-to-right state keeps the *focus* (the
objects or cells the last locating sentence named), so "It turns purple." changes the object the
previous sentence located. A sentence counts as parsed when it matches a template and everything it
refers to resolves (positions inside the grid, a focus for "it"). Claims are collected as
`changes`: the content each named cell has after the edit (None = empty); for generation the base
scene is empty and the changes are the objects the text draws. `absent` collects what the text
says the input does not hold ("There is no circle.", "Row 2, column 3 is empty."), which the judge
reads when an instruction names something absent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from paradiff.shapes.language import (
    COLOUR_RE,
    COMPILED,
    DIRECTIONS,
    NUMBER_WORDS,
    OBJ_RE,
    POS_RE,
    SHAPE_PLURAL_RE,
    SHAPE_RE,
    SINGULARS,
)
from paradiff.shapes.scene import DEFAULT_GRID, Obj, Pos, Scene

_ITEM = re.compile(rf"({OBJ_RE}) at ({POS_RE})")
_POS = re.compile(r"row ([1-9]), column ([1-9])")
_OBJ = re.compile(rf"(?:(?:the|a|an) )?(?:({COLOUR_RE}) )?({SHAPE_RE})")
_GROUP = re.compile(rf"({COLOUR_RE}) ({SHAPE_PLURAL_RE})")
_NOUN = re.compile(rf"(?:({COLOUR_RE}) )?({SHAPE_PLURAL_RE}|{SHAPE_RE}|shapes|shape)")
_STEPS = re.compile(r"(\w+) cells? (up|down|left|right)")

Focus = list[tuple[Pos, Obj | None]]
# What a text says is not in the input: (cell, None, None) for an empty cell, (None, colour,
# shape) for an object description (either may be None: "no red shape", "no circle").
Absence = tuple[Pos | None, str | None, str | None]


class _Unresolved(Exception):
    """A template matched but what it refers to does not exist (internal to the parser)."""


@dataclass
class Reading:
    """What a reasoning text says.

    `sentences`: the normalised sentences; `parsed`: how many matched a template and resolved;
    `changes`: cell -> content after the change (None = empty), later claims overriding earlier
    ones; `located`: objects the text says the input holds, in order; `absent`: what it says the
    input does not hold, in order.
    """

    sentences: list[str] = field(default_factory=list)
    parsed: int = 0
    changes: dict[Pos, Obj | None] = field(default_factory=dict)
    located: list[tuple[Pos, Obj]] = field(default_factory=list)
    absent: list[Absence] = field(default_factory=list)

    @property
    def parse_score(self) -> float:
        """Fraction of sentences parsed, in [0, 1]; 0 for an empty text."""
        return self.parsed / len(self.sentences) if self.sentences else 0.0

    @property
    def distinct_ratio(self) -> float:
        """Distinct sentences / sentences, in [0, 1]: low for degenerate repetition."""
        return len(set(self.sentences)) / len(self.sentences) if self.sentences else 0.0

    def apply(self, base: Scene) -> Scene:
        """The scene the text describes: `base` with the claimed changes."""
        return base.with_cells(self.changes)


def normalise(text: str) -> list[str]:
    """Lower-case, single spaces, no space before ',' or '.'; split into sentences."""
    text = re.sub(r"\s+", " ", str(text).lower())
    text = re.sub(r" ([,.])", r"\1", text)
    return [part.strip() for part in text.split(".") if part.strip()]


class _State:
    def __init__(self, rows: int, cols: int, reading: Reading) -> None:
        self.rows, self.cols = rows, cols
        self.reading = reading
        self.focus: Focus = []

    # -- slot readers --------------------------------------------------------------------------
    def pos(self, text: str) -> Pos:
        match = _POS.fullmatch(text)
        if match is None:
            raise _Unresolved(text)
        row, col = int(match.group(1)) - 1, int(match.group(2)) - 1
        if not (row < self.rows and col < self.cols):
            raise _Unresolved(f"{text} is outside the grid")
        return (row, col)

    def positions(self, text: str) -> list[Pos]:
        return [self.pos(match.group(0)) for match in _POS.finditer(text)]

    def items(self, text: str) -> list[tuple[Pos, Obj]]:
        return [(self.pos(m.group(2)), obj_of(m.group(1))) for m in _ITEM.finditer(text)]

    def focused_objects(self) -> list[tuple[Pos, Obj]]:
        objects = [(pos, obj) for pos, obj in self.focus if obj is not None]
        if not objects:
            raise _Unresolved("nothing in focus")
        return objects

    def change(self, pos: Pos, content: Obj | None) -> None:
        self.reading.changes.pop(pos, None)  # keep claim order = order of the latest claims
        self.reading.changes[pos] = content

    def step(self, pos: Pos, delta: tuple[int, int]) -> Pos:
        row, col = pos[0] + delta[0], pos[1] + delta[1]
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise _Unresolved("step leaves the grid")
        return (row, col)

    # -- effects -------------------------------------------------------------------------------
    def run(self, effect: str, slots: dict[str, str]) -> None:
        EFFECTS[effect](self, slots)

    def _locate(self, slots: dict[str, str]) -> None:
        found = (self.pos(slots["pos"]), obj_of(slots["obj"]))
        self.reading.located.append(found)
        self.focus = [found]

    def _locate_pair(self, slots: dict[str, str]) -> None:
        pair = [
            (self.pos(slots["pos"]), obj_of(slots["obj"])),
            (self.pos(slots["pos2"]), obj_of(slots["obj2"])),
        ]
        self.reading.located.extend(pair)
        self.focus = list(pair)

    def _locate_group(self, slots: dict[str, str]) -> None:
        found = self.items(slots["items"])
        self.reading.located.extend(found)
        self.focus = list(found)

    def _spot(self, slots: dict[str, str]) -> None:
        self.focus = [(self.pos(slots["pos"]), None)]

    def _holds(self, slots: dict[str, str]) -> None:
        if len(self.focus) != 1:
            raise _Unresolved("no single cell in focus")
        found = (self.focus[0][0], obj_of(slots["obj"]))
        self.reading.located.append(found)
        self.focus = [found]

    def _recolour(self, slots: dict[str, str]) -> None:
        self.focus = [(pos, Obj(obj.shape, slots["colour"])) for pos, obj in self.focused_objects()]
        for pos, obj in self.focus:
            self.change(pos, obj)

    def _reshape(self, slots: dict[str, str]) -> None:
        match = _OBJ.fullmatch(slots["new"])
        colour, shape = match.group(1), match.group(2)
        self.focus = [
            (pos, Obj(shape, colour or obj.colour)) for pos, obj in self.focused_objects()
        ]
        for pos, obj in self.focus:
            self.change(pos, obj)

    def _remove(self, slots: dict[str, str]) -> None:
        for pos, _ in self.focused_objects():
            self.change(pos, None)
        self.focus = []

    def _move(self, slots: dict[str, str]) -> None:
        objects = self.focused_objects()
        if len(objects) != 1:
            raise _Unresolved("a move needs one object in focus")
        (source, obj), target = objects[0], self.pos(slots["pos"])
        if "steps" in slots:
            match = _STEPS.fullmatch(slots["steps"])
            count = NUMBER_WORDS.index(match.group(1))
            delta = DIRECTIONS[match.group(2)]
            if self.step(source, (delta[0] * count, delta[1] * count)) != target:
                raise _Unresolved("the steps do not lead to the position named")
        if target != source:
            self.change(source, None)
            self.change(target, obj)
        self.focus = [(target, obj)]

    def _swap(self, slots: dict[str, str]) -> None:
        objects = self.focused_objects()
        if len(objects) != 2:
            raise _Unresolved("a swap needs two objects in focus")
        (first, a), (second, b) = objects
        self.change(first, b)
        self.change(second, a)
        self.focus = [(first, b), (second, a)]

    def _add_at(self, slots: dict[str, str]) -> None:
        pos, obj = self.pos(slots["pos"]), obj_of(slots["obj"])
        self.change(pos, obj)
        self.focus = [(pos, obj)]

    def _add_there(self, slots: dict[str, str]) -> None:
        if not self.focus:
            raise _Unresolved("nothing in focus")
        obj = obj_of(slots["obj"])
        self.focus = [(pos, obj) for pos, _ in self.focus]
        for pos, _ in self.focus:
            self.change(pos, obj)

    def _add_group(self, slots: dict[str, str]) -> None:
        match = _GROUP.fullmatch(slots["group"])
        obj = Obj(SINGULARS[match.group(2)], match.group(1))
        self.focus = [(pos, obj) for pos in self.positions(slots["positions"])]
        for pos, _ in self.focus:
            self.change(pos, obj)

    def _add_items(self, slots: dict[str, str]) -> None:
        self.focus = list(self.items(slots["items"]))
        for pos, obj in self.focus:
            self.change(pos, obj)

    def _absent(self, slots: dict[str, str]) -> None:
        if "pos" in slots:
            self.reading.absent.append((self.pos(slots["pos"]), None, None))
        else:
            self.reading.absent.append(absence_of(slots["noun"]))
        self.focus = []

    def _note(self, slots: dict[str, str]) -> None:
        """Knowledge, arithmetic and conditions claim nothing the judge checks."""


# What each template family's effect (`paradiff.shapes.language.TEMPLATES`) does to the reading.
EFFECTS: dict[str, Callable[[_State, dict[str, str]], None]] = {
    "locate": _State._locate,
    "locate_pair": _State._locate_pair,
    "locate_group": _State._locate_group,
    "spot": _State._spot,
    "holds": _State._holds,
    "recolour": _State._recolour,
    "reshape": _State._reshape,
    "remove": _State._remove,
    "move": _State._move,
    "swap": _State._swap,
    "add_at": _State._add_at,
    "add_there": _State._add_there,
    "add_group": _State._add_group,
    "add_items": _State._add_items,
    "absent": _State._absent,
    "note": _State._note,
}


def obj_of(text: str) -> Obj:
    """'the red circle' -> Obj('circle', 'red') (the text is known to match OBJ_RE)."""
    match = _OBJ.fullmatch(text)
    return Obj(match.group(2), match.group(1))


def absence_of(noun: str) -> Absence:
    """'red shape' -> (None, 'red', None), 'circles' -> (None, None, 'circle')."""
    match = _NOUN.fullmatch(noun)
    word = match.group(2)
    shape = None if word in ("shape", "shapes") else SINGULARS.get(word, word)
    return (None, match.group(1), shape)


def parse_reasoning(text: str, rows: int = DEFAULT_GRID, cols: int = DEFAULT_GRID) -> Reading:
    """Parse a reasoning text about a rows x cols grid; garbage only lowers the parse score."""
    reading = Reading(sentences=normalise(text))
    state = _State(rows, cols, reading)
    for sentence in reading.sentences:
        for template in COMPILED:
            match = template.regex.fullmatch(sentence)
            if match is None:
                continue
            try:
                state.run(template.effect, match.groupdict())
            except _Unresolved:
                break
            reading.parsed += 1
            break
    return reading
