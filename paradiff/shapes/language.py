"""The shapes world's language: words, knowledge, and the reasoning sentence templates.

Reasoning texts are built only from `TEMPLATES` (and `REFERENCE_TEMPLATES`, the opt-in kinds'),
and the parser recognises exactly those templates, so every sentence the world writes parses back to the claim it makes. A template is
a lowercase sentence (no final period) with slots in braces; a slot's name, without a trailing
digit, selects its pattern in `SLOT_PATTERNS`. Each template family has an *effect* that tells the
parser what the sentence claims (see `paradiff.shapes.parser`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from paradiff.shapes.scene import COLOUR_NAMES, SHAPES, Obj, Pos

NUMBER_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)
PLURALS: dict[str, str] = {
    shape: shape + ("es" if shape.endswith("s") else "s") for shape in SHAPES
}
SINGULARS: dict[str, str] = {plural: shape for shape, plural in PLURALS.items()}

# Shape knowledge: the phrase an instruction uses ("a shape with three corners") and the bare
# feature a reasoning names ("three corners means a triangle").
SHAPE_FEATURES: dict[str, tuple[str, str]] = {
    "triangle": ("a shape with three corners", "three corners"),
    "circle": ("a shape with no corners", "no corners"),
    "star": ("a shape with five points", "five points"),
    "cross": ("a shape like a plus sign", "a plus sign"),
    "diamond": ("a shape like a tilted square", "a tilted square"),
    "square": ("a shape like a box", "a box"),
}
# Colour knowledge: things whose colour everybody knows.
COLOUR_THINGS: dict[str, tuple[str, ...]] = {
    "red": ("a strawberry", "a tomato"),
    "orange": ("a carrot", "a pumpkin"),
    "yellow": ("a banana", "the sun"),
    "green": ("grass", "a leaf"),
    "blue": ("the sky", "the sea"),
    "purple": ("lavender", "a plum"),
    "pink": ("a flamingo", "bubblegum"),
    "black": ("coal", "the night"),
}
CORNERS: dict[str, tuple[str, str]] = {
    # name -> (vertical side, horizontal side)
    "top left corner": ("top", "left"),
    "top right corner": ("top", "right"),
    "bottom left corner": ("bottom", "left"),
    "bottom right corner": ("bottom", "right"),
}
DIRECTIONS: dict[str, tuple[int, int]] = {
    "up": (-1, 0),
    "down": (1, 0),
    "left": (0, -1),
    "right": (0, 1),
}
# Relations between cells, as the (row, col) step from the reference cell. "Below X" means any
# cell further down X's column, "directly below X" only the neighbouring one (same for the rest).
RELATION_STEPS: dict[str, tuple[int, int]] = {
    "above": (-1, 0),
    "below": (1, 0),
    "left of": (0, -1),
    "right of": (0, 1),
}


def _alternatives(words: Sequence[str]) -> str:
    """Regex alternation of literal words, longest first."""
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


COLOUR_RE = _alternatives(COLOUR_NAMES)
SHAPE_RE = _alternatives(SHAPES)
SHAPE_PLURAL_RE = _alternatives(tuple(PLURALS.values()))
POS_RE = r"row [1-9], column [1-9]"
OBJ_RE = rf"(?:(?:the|a|an) )?{COLOUR_RE} {SHAPE_RE}"
ITEM_RE = rf"{OBJ_RE} at {POS_RE}"
NOUN_RE = rf"(?:{COLOUR_RE} )?(?:{SHAPE_PLURAL_RE}|{SHAPE_RE}|shapes|shape)"
COUNT_RE = _alternatives(NUMBER_WORDS) + "|[0-9]+"
RELATION_RE = _alternatives(tuple(RELATION_STEPS))


def _list_of(item: str) -> str:
    """Regex of `item`, `item and item`, `item, item and item` …"""
    return rf"{item}(?:(?:, and |, | and | or ){item})*"


SLOT_PATTERNS: dict[str, str] = {
    "obj": OBJ_RE,
    "new": rf"(?:the|a|an) (?:{COLOUR_RE} )?{SHAPE_RE}",
    "shape": rf"(?:a|an) {SHAPE_RE}",
    "pos": POS_RE,
    "colour": COLOUR_RE,
    "items": _list_of(ITEM_RE),
    "positions": _list_of(POS_RE),
    "group": rf"{COLOUR_RE} {SHAPE_PLURAL_RE}",
    "noun": NOUN_RE,
    "count": f"(?:{COUNT_RE})",
    "scope": rf"(?:{RELATION_RE} it|the (?:other )?{NOUN_RE}(?: {RELATION_RE} it)?)",
    "place": rf"(?:the {_alternatives(tuple(CORNERS))}|the cell {RELATION_RE} it)",
    "relation": RELATION_RE,
    "steps": r"(?:one|two|three) cells? (?:up|down|left|right)",
    "feature": _alternatives(tuple(bare for _, bare in SHAPE_FEATURES.values())),
    "thing": _alternatives(tuple(t for things in COLOUR_THINGS.values() for t in things)),
    "region": r"(?:the (?:top|bottom) row|the (?:left|right) column)",
    "line": r"(?:row|column) [1-9]",
    "excluded": _list_of(
        rf"(?:{COLOUR_RE}(?: shapes)?|{SHAPE_PLURAL_RE}|the (?:top|bottom) row"
        r"|the (?:left|right) column)"
    ),
}

# Effects (what the parser does with a sentence):
#   locate      an object of the input at a position; it becomes the focus
#   locate_pair two such objects; both become the focus
#   locate_group a list of objects at positions; they become the focus
#   spot        a position (a corner, the cell below the focus); it becomes the focus
#   holds       the focused position holds this object of the input
#   recolour / reshape / remove   change every focused object
#   move        the focused object leaves its cell for another
#   swap        the two focused objects exchange cells
#   add_at / add_there / add_group / add_items   new objects at positions (or at the focus)
#   note        knowledge, arithmetic or a condition: well-formed, claims nothing to judge
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "locate": (
        "locate",
        (
            "{obj} is at {pos}",
            "{obj} sits at {pos}",
            "i find {obj} at {pos}",
            "{obj} is found at {pos}",
        ),
    ),
    "locate_pair": (
        "locate_pair",
        ("{obj} is at {pos} and {obj2} is at {pos2}", "i find {obj} at {pos} and {obj2} at {pos2}"),
    ),
    # variants after the first read well only after a relation scope ("left of it")
    "scope_one": ("locate_group", ("{scope} is {items}", "{scope} there is only {items}")),
    "scope_many": ("locate_group", ("{scope} are {items}", "{scope} there are {items}")),
    "spot": ("spot", ("{place} is {pos}", "{place} is at {pos}")),
    "holds": ("holds", ("it holds {obj}", "there sits {obj}", "{obj} is there")),
    "recolour_one": (
        "recolour",
        (
            "it turns {colour}",
            "it becomes {colour}",
            "it is painted {colour}",
            "its colour changes to {colour}",
        ),
    ),
    "recolour_two": (
        "recolour",
        ("both turn {colour}", "both become {colour}", "the two are painted {colour}"),
    ),
    "recolour_many": (
        "recolour",
        ("they all turn {colour}", "all of them become {colour}", "each one is painted {colour}"),
    ),
    "reshape_one": (
        "reshape",
        (
            "it becomes {new}",
            "it is replaced by {new}",
            "{new} takes its place",
            "it turns into {new}",
        ),
    ),
    "reshape_many": (
        "reshape",
        ("each becomes {new}", "each one turns into {new}", "each is replaced by {new}"),
    ),
    "remove_one": (
        "remove",
        ("it is removed", "it disappears", "its cell becomes empty", "it is erased"),
    ),
    "remove_two": ("remove", ("both are removed", "both disappear", "the two are erased")),
    "remove_many": (
        "remove",
        ("they are all removed", "all of them disappear", "each one is erased"),
    ),
    "move": (
        "move",
        ("it moves to {pos}", "it goes to {pos}", "it slides to {pos}"),
    ),
    "move_steps": ("move", ("it moves {steps} to {pos}", "it slides {steps} to {pos}")),
    "swap": ("swap", ("they swap places", "they trade places", "the two swap places")),
    "add_at": (
        "add_at",
        (
            "{obj} appears at {pos}",
            "add {obj} at {pos}",
            "put {obj} at {pos}",
            "{obj} goes at {pos}",
        ),
    ),
    "add_there": (
        "add_there",
        ("{obj} appears there", "put {obj} there", "{obj} goes there", "add {obj} there"),
    ),
    "add_group": (
        "add_group",
        (
            "{group} appear at {positions}",
            "{group} go at {positions}",
            "put {group} at {positions}",
        ),
    ),
    "add_group_near": (
        "add_group",
        (
            "{group} appear {relation} them at {positions}",
            "{group} go {relation} them at {positions}",
        ),
    ),
    "add_items": ("add_items", ("draw {items}", "place {items}", "put {items}", "{items}")),
    "add_groups_bare": ("add_group", ("{group} at {positions}", "draw {group} at {positions}")),
    "count_is": (
        "note",
        ("there is {count} {noun}", "there are {count} {noun}", "the count is {count} {noun}"),
    ),
    "count_at": (
        "note",
        (
            "the {noun} is at {pos}",
            "the {noun} are at {positions}",
            "there are {count} {noun}, at {positions}",
        ),
    ),
    "count_empty": ("note", ("{line} has {count} empty cells", "{line} has one empty cell")),
    "arithmetic": (
        "note",
        (
            "twice {count} is {count2}",
            "{count} and {count2} more make {count3}",
            "{count} minus {count2} leaves {count3}",
            "half of {count} is {count2}",
            "so {count} {noun}",
            "so {count} {noun} too",
        ),
    ),
    "shape_knowledge": (
        "note",
        ("{feature} means {shape}", "{feature} makes it {shape}", "{feature}, so {shape}"),
    ),
    "colour_knowledge": (
        "note",
        ("{thing} is {colour}", "the colour of {thing} is {colour}", "{thing} means {colour}"),
    ),
    "region_is": ("note", ("{region} is {line}", "{region} means {line}")),
    "exclude": ("note", ("no {excluded}", "{excluded} are left out", "avoid {excluded}")),
    "condition": (
        "note",
        (
            "it is {colour}",
            "it is not {colour}",
            "it is {shape}",
            "it is not {shape}",
            "it is empty",
        ),
    ),
}


@dataclass(frozen=True)
class CompiledTemplate:
    """One template with its family name, effect and full-sentence regex."""

    family: str
    effect: str
    text: str
    regex: re.Pattern[str]


_SLOT = re.compile(r"\{([a-z]+)(\d?)\}")


def compile_template(text: str) -> re.Pattern[str]:
    """`"{obj} is at {pos}"` -> a regex with named groups `obj`, `pos` matching the sentence."""
    parts: list[str] = []
    last = 0
    for match in _SLOT.finditer(text):
        parts.append(re.escape(text[last : match.start()]))
        name, index = match.group(1), match.group(2)
        if name not in SLOT_PATTERNS:
            raise KeyError(f"template {text!r} uses unknown slot {name!r}")
        parts.append(f"(?P<{name}{index}>{SLOT_PATTERNS[name]})")
        last = match.end()
    parts.append(re.escape(text[last:]))
    return re.compile("".join(parts))


# Templates of the opt-in kinds (`paradiff.shapes.reference_edits`): what an instruction names
# that is not there, which of several equal objects it takes, the shapes of a line. The parser
# tries them after `TEMPLATES`, so a sentence an older template reads keeps its reading; they stay
# out of the tokenizer's word sheet (`paradiff.shapes.tokenizer`), which fixes the shipped model's
# ids, and use only words it already knows (tests/test_shapes_reference_edits.py).
#   absent      the input holds no such object (a noun) or nothing at a cell (a position)
REFERENCE_TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "absent": ("absent", ("there is no {noun}", "no {noun} is in the image")),
    "absent_cell": ("absent", ("{pos} is empty", "no shape is at {pos}")),
    "unchanged": ("note", ("so nothing changes", "i change nothing", "there is nothing to change")),
    # the first in reading order (row by row, left to right) of the candidates a count listed
    "choose_first": ("locate", ("i take the first, {obj} at {pos}",)),
    "choose_first_two": ("locate_group", ("i take the first two, {items}",)),
    "scope_line": ("locate_group", ("{line} holds {items}", "{line} has {items}")),
}

FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {**TEMPLATES, **REFERENCE_TEMPLATES}
COMPILED: tuple[CompiledTemplate, ...] = tuple(
    CompiledTemplate(family, effect, text, compile_template(text))
    for family, (effect, texts) in FAMILIES.items()
    for text in texts
)


# -- writing --------------------------------------------------------------------------------------
def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def a_obj(obj: Obj) -> str:
    """'a red circle', 'an orange star'."""
    return f"{article(obj.colour)} {obj.colour} {obj.shape}"


def the_obj(obj: Obj) -> str:
    return f"the {obj.colour} {obj.shape}"


def a_shape(shape: str) -> str:
    return f"{article(shape)} {shape}"


def group_of(obj: Obj) -> str:
    """'red circles'."""
    return f"{obj.colour} {PLURALS[obj.shape]}"


def noun(shape: str, count: int) -> str:
    """'star' or 'stars' by count."""
    return shape if count == 1 else PLURALS[shape]


def number(count: int) -> str:
    return NUMBER_WORDS[count] if 0 <= count < len(NUMBER_WORDS) else str(count)


def pos_text(pos: Pos) -> str:
    """0-based (row, col) -> 'row r+1, column c+1'."""
    return f"row {pos[0] + 1}, column {pos[1] + 1}"


def join(parts: Sequence[str], last: str = "and") -> str:
    """['a', 'b', 'c'] -> 'a, b and c'."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + f" {last} " + parts[-1]


def items_text(items: Sequence[tuple[Pos, Obj]], definite: bool = True) -> str:
    """'the red circle at row 1, column 2 and the blue star at row 3, column 1'."""
    describe = the_obj if definite else a_obj
    return join([f"{describe(obj)} at {pos_text(pos)}" for pos, obj in items])


def positions_text(positions: Sequence[Pos]) -> str:
    return join([pos_text(pos) for pos in positions])


def sentence(text: str) -> str:
    """Capitalise the first letter and end with a period."""
    text = text.strip()
    return text[:1].upper() + text[1:] + "."


def say(family: str, variant: int, **slots: str) -> str:
    """Render template `variant` of `family` (index modulo its count) as a sentence."""
    texts = FAMILIES[family][1]
    return sentence(texts[variant % len(texts)].format(**slots))


def variants(family: str) -> int:
    return len(FAMILIES[family][1])


_TOKEN = re.compile(r"\w+|[^\w\s]+")


def count_tokens(text: str) -> int:
    """Tokens of `text` under the world's text tokenizer (one per word or punctuation run)."""
    return len(_TOKEN.findall(text))
