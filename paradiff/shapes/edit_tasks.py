"""Editing task generators: instruction + input scene -> reasoning about the change + output.

Each generator takes (rng, input scene, difficulty) and returns a `Draft` whose output is the
unique scene the instruction asks for, or raises `Unfit` when the scene does not allow the task.
The reasoning first locates what the instruction refers to, then states each change with its
position. Relations: "left of X" is any cell further left in X's row ("above": further up its
column …); "directly left of X" is the neighbouring cell only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from paradiff.shapes.constraints import related
from paradiff.shapes.drafting import (
    REGIONS,
    Draft,
    corner_pos,
    neighbour,
    phrase,
    pick,
    random_obj,
    region_cells,
)
from paradiff.shapes.language import (
    CORNERS,
    DIRECTIONS,
    PLURALS,
    RELATION_STEPS,
    a_obj,
    a_shape,
    group_of,
    items_text,
    noun,
    number,
    pos_text,
    positions_text,
    say,
    sentence,
    the_obj,
)
from paradiff.shapes.scene import COLOUR_NAMES, SHAPES, Obj, Pos, Scene

EditGenerator = Callable[[random.Random, Scene, int], Draft]
REF_KINDS = ("attribute", "corner", "relation")


@dataclass(frozen=True)
class Ref:
    """How an instruction names one object, and the reasoning sentences that locate it."""

    text: str
    locate: tuple[str, ...]


@dataclass
class Piece:
    """One edit: instruction clause (lowercase, no period), reasoning sentences, cell updates."""

    clause: str
    sentences: list[str]
    updates: dict[Pos, Obj | None]


# -- naming objects ----------------------------------------------------------------------------
def attribute_names(scene: Scene, pos: Pos) -> list[str]:
    """Names that single out the object at `pos` by its own attributes."""
    obj = scene.get(pos)
    names = []
    if len(scene.find(obj.shape, obj.colour)) == 1:
        names.append(the_obj(obj))
    if len(scene.find(obj.shape)) == 1:
        names.append(f"the {obj.shape}")
    if len(scene.find(colour=obj.colour)) == 1:
        names.append(f"the {obj.colour} shape")
    return names


def corner_cells(scene: Scene) -> dict[str, Pos]:
    return {name: corner_pos(scene.rows, scene.cols, name) for name in CORNERS}


def related_objects(scene: Scene, anchor: Pos, relation: str) -> list[Pos]:
    """Occupied cells that are `relation` of `anchor` (raster order)."""
    return [pos for pos, _ in scene.objects() if related(pos, relation, anchor)]


def locate_sentence(rng: random.Random, scene: Scene, pos: Pos) -> str:
    return phrase(rng, "locate", obj=the_obj(scene.get(pos)), pos=pos_text(pos))


def references(rng: random.Random, scene: Scene, pos: Pos, kinds=REF_KINDS) -> dict[str, list[Ref]]:
    """Every way (by kind) an instruction can name the object at `pos` unambiguously."""
    obj = scene.get(pos)
    found: dict[str, list[Ref]] = {kind: [] for kind in kinds}
    if "attribute" in kinds:
        locate = (locate_sentence(rng, scene, pos),)
        found["attribute"] = [Ref(name, locate) for name in attribute_names(scene, pos)]
    if "corner" in kinds:
        for name, cell in corner_cells(scene).items():
            if cell == pos:
                locate = (
                    phrase(rng, "spot", place=f"the {name}", pos=pos_text(pos)),
                    phrase(rng, "holds", obj=the_obj(obj)),
                )
                found["corner"].append(Ref(f"the shape in the {name}", locate))
    if "relation" in kinds:
        for relation in RELATION_STEPS:
            for anchor, _ in scene.objects():
                if anchor == pos or related_objects(scene, anchor, relation) != [pos]:
                    continue
                for anchor_name in attribute_names(scene, anchor):
                    scope = say(
                        "scope_one",
                        rng.randrange(2),
                        scope=f"{relation} it",
                        items=items_text([(pos, obj)]),
                    )
                    locate = (locate_sentence(rng, scene, anchor), scope)
                    found["relation"].append(Ref(f"the shape {relation} {anchor_name}", locate))
    return found


def pick_ref(
    rng: random.Random, scene: Scene, pos: Pos, kinds=REF_KINDS, names: set[str] | None = None
) -> Ref:
    """A random unambiguous name for the object at `pos` (kind first, then name).

    `names`, when given, limits the choice to those names.
    """
    found = references(rng, scene, pos, kinds)
    if names is not None:
        found = {kind: [r for r in refs if r.text in names] for kind, refs in found.items()}
    kind = pick(rng, [kind for kind in kinds if found[kind]], "name for the object")
    return rng.choice(found[kind])


def pick_object(rng: random.Random, scene: Scene, exclude=()) -> Pos:
    return pick(rng, [pos for pos, _ in scene.objects() if pos not in exclude], "object")


def action_sentence(rng: random.Random, action: str, count: int, **slots: str) -> str:
    """The change sentence for `count` focused objects: recolour, reshape or remove."""
    if count == 1:
        return phrase(rng, f"{action}_one", **slots)
    if action == "reshape":
        return phrase(rng, "reshape_many", **slots)
    size = rng.choice(("two", "many")) if count == 2 else "many"
    return phrase(rng, f"{action}_{size}", **slots)


def draft_from(scene: Scene, *pieces: Piece, joiner: str = "{}") -> Draft:
    updates: dict[Pos, Obj | None] = {}
    for piece in pieces:
        updates.update(piece.updates)
    return Draft(
        instruction=sentence(joiner.format(*(piece.clause for piece in pieces))),
        sentences=[s for piece in pieces for s in piece.sentences],
        scene_out=scene.with_cells(updates),
        scene_in=scene,
    )


# -- single-object pieces ----------------------------------------------------------------------
# Instruction clauses of one object's edit; `ref` is how the instruction names it.
PIECE_FORMS: dict[str, tuple[str, ...]] = {
    "recolour": (
        "make {ref} {colour}",
        "paint {ref} {colour}",
        "recolour {ref} to {colour}",
        "change the colour of {ref} to {colour}",
        "turn {ref} {colour}",
    ),
    "replace": (
        "replace {ref} with {new}",
        "turn {ref} into {new}",
        "put {new} in place of {ref}",
        "swap {ref} for {new}",
    ),
    "remove": (
        "remove {ref}",
        "delete {ref}",
        "take away {ref}",
        "erase {ref}",
        "get rid of {ref}",
    ),
}


def recolour_piece(
    rng: random.Random,
    scene: Scene,
    pos: Pos,
    kinds=REF_KINDS,
    names: set[str] | None = None,
    ref: Ref | None = None,
) -> Piece:
    """Recolour the object at `pos`, named by `ref` or (None) a random unambiguous name."""
    obj, ref = scene.get(pos), ref or pick_ref(rng, scene, pos, kinds, names)
    colour = rng.choice([c for c in COLOUR_NAMES if c != obj.colour])
    clause = rng.choice(PIECE_FORMS["recolour"]).format(ref=ref.text, colour=colour)
    sentences = [*ref.locate, phrase(rng, "recolour_one", colour=colour)]
    return Piece(clause, sentences, {pos: Obj(obj.shape, colour)})


def replace_piece(
    rng: random.Random,
    scene: Scene,
    pos: Pos,
    kinds=REF_KINDS,
    names: set[str] | None = None,
    ref: Ref | None = None,
) -> Piece:
    obj, ref = scene.get(pos), ref or pick_ref(rng, scene, pos, kinds, names)
    keep_colour = rng.random() < 0.4
    new = random_obj(rng, colour=obj.colour if keep_colour else None, avoid_shapes=(obj.shape,))
    new_text = a_shape(new.shape) if keep_colour else a_obj(new)
    clause = rng.choice(PIECE_FORMS["replace"]).format(ref=ref.text, new=new_text)
    sentences = [*ref.locate, phrase(rng, "reshape_one", new=a_obj(new))]
    return Piece(clause, sentences, {pos: new})


def remove_piece(
    rng: random.Random,
    scene: Scene,
    pos: Pos,
    kinds=REF_KINDS,
    names: set[str] | None = None,
    ref: Ref | None = None,
) -> Piece:
    ref = ref or pick_ref(rng, scene, pos, kinds, names)
    clause = rng.choice(PIECE_FORMS["remove"]).format(ref=ref.text)
    return Piece(clause, [*ref.locate, phrase(rng, "remove_one")], {pos: None})


# -- generators --------------------------------------------------------------------------------
def gen_recolour(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    return draft_from(scene, recolour_piece(rng, scene, pick_object(rng, scene)))


def gen_replace(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    return draft_from(scene, replace_piece(rng, scene, pick_object(rng, scene)))


def gen_remove(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    return draft_from(scene, remove_piece(rng, scene, pick_object(rng, scene)))


def gen_add(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    new = random_obj(rng)
    if rng.random() < 0.35:
        corners = {n: p for n, p in corner_cells(scene).items() if scene.get(p) is None}
        name = pick(rng, sorted(corners), "empty corner")
        forms = (
            "add {new} in the {corner}",
            "put {new} in the {corner}",
            "draw {new} in the {corner}",
        )
        clause = rng.choice(forms).format(new=a_obj(new), corner=name)
        sentences = [phrase(rng, "spot", place=f"the {name}", pos=pos_text(corners[name]))]
        target = corners[name]
    else:
        options = [
            (anchor, relation, cell)
            for anchor, _ in scene.objects()
            for relation in RELATION_STEPS
            if (cell := neighbour(scene.rows, scene.cols, anchor, relation)) is not None
            and scene.get(cell) is None
        ]
        anchor, relation, target = pick(rng, options, "free neighbouring cell")
        ref = pick_ref(rng, scene, anchor, ("attribute",))
        forms = (
            "add {new} directly {rel} {ref}",
            "put {new} just {rel} {ref}",
            "draw {new} directly {rel} {ref}",
        )
        clause = rng.choice(forms).format(new=a_obj(new), rel=relation, ref=ref.text)
        spot = phrase(rng, "spot", place=f"the cell {relation} it", pos=pos_text(target))
        sentences = [*ref.locate, spot]
    sentences.append(phrase(rng, "add_there", obj=a_obj(new)))
    return draft_from(scene, Piece(clause, sentences, {target: new}))


def gen_move(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    pos = pick_object(rng, scene)
    obj, ref = scene.get(pos), pick_ref(rng, scene, pos)
    moves = [
        (f"{number(k)} {'cell' if k == 1 else 'cells'} {direction}", target)
        for direction, (d_row, d_col) in DIRECTIONS.items()
        for k in (1, 2)
        if 0 <= (row := pos[0] + k * d_row) < scene.rows
        and 0 <= (col := pos[1] + k * d_col) < scene.cols
        and scene.get(target := (row, col)) is None
    ]
    corners = [(n, p) for n, p in corner_cells(scene).items() if scene.get(p) is None]
    if corners and (not moves or rng.random() < 0.35):
        name, target = rng.choice(corners)
        forms = (
            "move {ref} to the {corner}",
            "slide {ref} into the {corner}",
            "put {ref} in the {corner}",
        )
        clause = rng.choice(forms).format(ref=ref.text, corner=name)
        last = phrase(rng, "move", pos=pos_text(target))
    else:
        steps, target = pick(rng, moves, "free cell to move to")
        forms = ("move {ref} {steps}", "shift {ref} {steps}", "slide {ref} {steps}")
        clause = rng.choice(forms).format(ref=ref.text, steps=steps)
        if rng.random() < 0.5:
            last = phrase(rng, "move_steps", steps=steps, pos=pos_text(target))
        else:
            last = phrase(rng, "move", pos=pos_text(target))
    return draft_from(scene, Piece(clause, [*ref.locate, last], {pos: None, target: obj}))


def gen_swap(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    first = pick_object(rng, scene)
    a = scene.get(first)
    second = pick_object(rng, scene, [p for p, o in scene.objects() if o == a])
    b = scene.get(second)
    ref_a = pick_ref(rng, scene, first, ("attribute",))
    ref_b = pick_ref(rng, scene, second, ("attribute",))
    forms = (
        "swap {a} and {b}",
        "exchange {a} and {b}",
        "let {a} and {b} trade places",
        "switch {a} and {b}",
    )
    clause = rng.choice(forms).format(a=ref_a.text, b=ref_b.text)
    pair = phrase(
        rng,
        "locate_pair",
        obj=the_obj(a),
        pos=pos_text(first),
        obj2=the_obj(b),
        pos2=pos_text(second),
    )
    return draft_from(scene, Piece(clause, [pair, phrase(rng, "swap")], {first: b, second: a}))


def group_action(
    rng: random.Random, targets: list[tuple[Pos, Obj]]
) -> tuple[str, dict[str, str], dict[Pos, Obj | None], str]:
    """A change for every target: (action, its slots, cell updates, instruction ending)."""
    action = rng.choice(("recolour", "remove", "reshape"))
    if action == "recolour":
        colour = pick(rng, [c for c in COLOUR_NAMES if all(o.colour != c for _, o in targets)])
        return action, {"colour": colour}, {p: Obj(o.shape, colour) for p, o in targets}, colour
    if action == "reshape":
        shape = pick(rng, [s for s in SHAPES if all(o.shape != s for _, o in targets)])
        updates = {p: Obj(shape, o.colour) for p, o in targets}
        return action, {"new": a_shape(shape)}, updates, a_shape(shape)
    return action, {}, {p: None for p, _ in targets}, ""


GROUP_FORMS: dict[str, tuple[str, ...]] = {
    "recolour": ("turn {scope} {end}", "make {scope} {end}", "paint {scope} {end}"),
    "remove": ("remove {scope}", "delete {scope}", "clear away {scope}"),
    "reshape": ("turn {scope} into {end}", "replace {scope} with {end}"),
}


def gen_relational(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    most = min(2, difficulty + 1)
    options = [
        (anchor, relation, found)
        for anchor, _ in scene.objects()
        for relation in RELATION_STEPS
        if 1 <= len(found := related_objects(scene, anchor, relation)) <= most
    ]
    anchor, relation, found = pick(rng, options, "anchor with shapes beside it")
    ref = pick_ref(rng, scene, anchor, ("attribute",))
    targets = [(p, scene.get(p)) for p in found]
    action, slots, updates, end = group_action(rng, targets)
    every = rng.choice(("every shape", "all shapes", "each shape"))
    clause = rng.choice(GROUP_FORMS[action]).format(scope=f"{every} {relation} {ref.text}", end=end)
    scope = say(
        "scope_one" if len(targets) == 1 else "scope_many",
        rng.randrange(2),
        scope=f"{relation} it",
        items=items_text(targets),
    )
    sentences = [*ref.locate, scope, action_sentence(rng, action, len(targets), **slots)]
    return draft_from(scene, Piece(clause, sentences, updates))


def gen_conditional(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    form = rng.choice(("every", "every", "if", "if_corner"))
    if form == "every":
        return _every_attribute(rng, scene, difficulty)
    if form == "if":
        return _if_object(rng, scene)
    return _if_corner(rng, scene)


def _every_attribute(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    most = min(3, difficulty + 1)
    options = [("colour", c) for c in COLOUR_NAMES] + [("shape", s) for s in SHAPES]
    options = [
        (kind, value, found)
        for kind, value in options
        if 1 <= len(found := scene.find(**{kind: value})) <= most
    ]
    kind, value, found = pick(rng, options, "attribute shared by a few shapes")
    targets = [(p, scene.get(p)) for p in found]
    action, slots, updates, end = group_action(rng, targets)
    if kind == "colour":
        scope_text = rng.choice((f"every {value} shape", f"all {value} shapes"))
        reasoning_scope = f"the {value} {'shape' if len(targets) == 1 else 'shapes'}"
    else:
        scope_text = rng.choice((f"every {value}", f"all {PLURALS[value]}"))
        reasoning_scope = f"the {noun(value, len(targets))}"
    clause = rng.choice(GROUP_FORMS[action]).format(scope=scope_text, end=end)
    scope = say(
        "scope_one" if len(targets) == 1 else "scope_many",
        0,
        scope=reasoning_scope,
        items=items_text(targets),
    )
    sentences = [scope, action_sentence(rng, action, len(targets), **slots)]
    return draft_from(scene, Piece(clause, sentences, updates))


BRANCH_FORMS: dict[str, tuple[str, ...]] = {
    "remove": ("remove it", "delete it"),
    "recolour": ("make it {colour}", "paint it {colour}"),
    "reshape": ("turn it into {new}",),
}


def _branch(rng: random.Random, obj: Obj, action: str) -> tuple[str, str, Obj | None]:
    """An if/else branch acting on `obj`: (instruction words, reasoning sentence, new content)."""
    if action == "remove":
        return rng.choice(BRANCH_FORMS[action]), phrase(rng, "remove_one"), None
    if action == "recolour":
        colour = rng.choice([c for c in COLOUR_NAMES if c != obj.colour])
        words = rng.choice(BRANCH_FORMS[action]).format(colour=colour)
        return words, phrase(rng, "recolour_one", colour=colour), Obj(obj.shape, colour)
    shape = rng.choice([s for s in SHAPES if s != obj.shape])
    words = rng.choice(BRANCH_FORMS[action]).format(new=a_shape(shape))
    return words, phrase(rng, "reshape_one", new=a_shape(shape)), Obj(shape, obj.colour)


def _if_object(rng: random.Random, scene: Scene) -> Draft:
    pos = pick_object(rng, scene)
    obj = scene.get(pos)
    # a name giving colour and shape away would make the test trivial
    names = {f"the {obj.shape}", f"the {obj.colour} shape"} | {
        f"the shape in the {name}" for name in CORNERS
    }
    ref = pick_ref(rng, scene, pos, ("attribute", "corner"), names)
    holds = rng.random() < 0.5
    if ref.text == f"the {obj.shape}" or (ref.text.endswith("corner") and rng.random() < 0.5):
        colour = obj.colour if holds else rng.choice([c for c in COLOUR_NAMES if c != obj.colour])
        test, note = colour, say("condition", 0 if holds else 1, colour=colour)
    else:
        shape = obj.shape if holds else rng.choice([s for s in SHAPES if s != obj.shape])
        test, note = a_shape(shape), say("condition", 2 if holds else 3, shape=a_shape(shape))
    then_action, else_action = rng.sample(("remove", "recolour", "reshape"), 2)
    then_words, then_sentence, then_new = _branch(rng, obj, then_action)
    else_words, else_sentence, else_new = _branch(rng, obj, else_action)
    clause = f"if {ref.text} is {test}, {then_words}, otherwise {else_words}"
    taken_sentence, taken_new = (then_sentence, then_new) if holds else (else_sentence, else_new)
    sentences = [*ref.locate, note, taken_sentence]
    return draft_from(scene, Piece(clause, sentences, {pos: taken_new}))


def _if_corner(rng: random.Random, scene: Scene) -> Draft:
    name, pos = rng.choice(sorted(corner_cells(scene).items()))
    new = random_obj(rng)
    obj = scene.get(pos)
    else_action = rng.choice(("remove", "recolour"))
    if else_action == "remove":
        else_words = rng.choice(("remove the shape there", "delete the shape there"))
    else:
        colour = rng.choice([c for c in COLOUR_NAMES if obj is None or c != obj.colour])
        else_words = f"make the shape there {colour}"
    clause = f"if the {name} is empty, add {a_obj(new)} there, otherwise {else_words}"
    sentences = [phrase(rng, "spot", place=f"the {name}", pos=pos_text(pos))]
    if obj is None:
        sentences += [say("condition", 4), phrase(rng, "add_there", obj=a_obj(new))]
        update: Obj | None = new
    else:
        sentences.append(phrase(rng, "holds", obj=the_obj(obj)))
        if else_action == "remove":
            sentences.append(phrase(rng, "remove_one"))
            update = None
        else:
            sentences.append(phrase(rng, "recolour_one", colour=colour))
            update = Obj(obj.shape, colour)
    return draft_from(scene, Piece(clause, sentences, {pos: update}))


def gen_count(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    form = rng.choice(("beside_every", "as_many", "keep_only", "fill_line"))
    return {
        "beside_every": _beside_every,
        "as_many": _as_many,
        "keep_only": _keep_only,
        "fill_line": _fill_line,
    }[form](rng, scene, min(3, difficulty + 1))


def _add_sentence(rng: random.Random, new: Obj, cells: list[Pos], near: str | None = None) -> str:
    """'A red circle appears at …' for one cell, '(Red circles appear below them at) …' for more."""
    if len(cells) == 1:
        return phrase(rng, "add_at", obj=a_obj(new), pos=pos_text(cells[0]))
    if near is not None and rng.random() < 0.5:
        return phrase(
            rng,
            "add_group_near",
            group=group_of(new),
            relation=near,
            positions=positions_text(cells),
        )
    return phrase(rng, "add_group", group=group_of(new), positions=positions_text(cells))


def _beside_every(rng: random.Random, scene: Scene, most: int) -> Draft:
    options = []
    for shape in SHAPES:
        found = scene.find(shape)
        for relation in RELATION_STEPS:
            cells = [neighbour(scene.rows, scene.cols, p, relation) for p in found]
            if 1 <= len(found) <= most and all(
                c is not None and scene.get(c) is None for c in cells
            ):
                if len(set(cells)) == len(cells):
                    options.append((shape, relation, found, cells))
    shape, relation, found, cells = pick(rng, options, "shapes with free neighbours")
    new = random_obj(rng)
    forms = (
        "put {new} directly {rel} every {shape}",
        "add {new} directly {rel} each {shape}",
        "draw {new} just {rel} every {shape}",
    )
    clause = rng.choice(forms).format(new=a_obj(new), rel=relation, shape=shape)
    if len(found) == 1:
        where = say("count_at", 0, noun=shape, pos=pos_text(found[0]))
    else:
        where = say(
            "count_at",
            rng.choice((1, 2)),
            noun=PLURALS[shape],
            count=number(len(found)),
            positions=positions_text(found),
        )
    sentences = [where, _add_sentence(rng, new, cells, near=relation)]
    return draft_from(scene, Piece(clause, sentences, {c: new for c in cells}))


def _as_many(rng: random.Random, scene: Scene, most: int) -> Draft:
    options = []
    for shape in SHAPES:
        counted = len(scene.find(shape))
        for name in REGIONS:
            _, cells, line = region_cells(scene.rows, scene.cols, name)
            free = [c for c in cells if scene.get(c) is None]
            direction = "from the left" if name.endswith("row") else "from the top"
            if 1 <= counted <= most and len(free) >= counted:
                options.append((shape, counted, name, direction, line, free[:counted]))
    shape, counted, name, direction, line, cells = pick(rng, options, "count and free line")
    new = random_obj(rng, avoid_shapes=(shape,))
    clause = (
        f"add as many {group_of(new)} as there are {PLURALS[shape]}, filling the {name} {direction}"
    )
    count_note = say(
        "count_is",
        0 if counted == 1 else rng.choice((1, 2)),
        count=number(counted),
        noun=noun(shape, counted),
    )
    region = say("region_is", rng.randrange(2), region=f"the {name}", line=line)
    sentences = [count_note, region, _add_sentence(rng, new, cells)]
    return draft_from(scene, Piece(clause, sentences, {c: new for c in cells}))


def _keep_only(rng: random.Random, scene: Scene, most: int) -> Draft:
    options = [
        (shape, keep)
        for shape in SHAPES
        if 2 <= len(found := scene.find(shape)) <= most + 1
        for keep in found
        if len(scene.find(shape, scene.get(keep).colour)) == 1
    ]
    shape, keep = pick(rng, options, "shape to keep")
    colour = scene.get(keep).colour
    others = [(p, scene.get(p)) for p in scene.find(shape) if p != keep]
    forms = (
        "keep only the {colour} {shape} and remove the other {shapes}",
        "remove every {shape} except the {colour} one",
        "delete all {shapes} but the {colour} one",
    )
    clause = rng.choice(forms).format(colour=colour, shape=shape, shapes=PLURALS[shape])
    scope = say(
        "scope_one" if len(others) == 1 else "scope_many",
        0,
        scope=f"the other {noun(shape, len(others))}",
        items=items_text(others),
    )
    sentences = [scope, action_sentence(rng, "remove", len(others))]
    return draft_from(scene, Piece(clause, sentences, {p: None for p, _ in others}))


def _fill_line(rng: random.Random, scene: Scene, most: int) -> Draft:
    options = []
    for row in range(scene.rows):
        free = [(row, c) for c in range(scene.cols) if scene.get((row, c)) is None]
        names = [f"row {row + 1}"] + (["the top row"] if row == 0 else [])
        names += ["the bottom row"] if row == scene.rows - 1 else []
        options += [(name, f"row {row + 1}", free) for name in names]
    for col in range(scene.cols):
        free = [(r, col) for r in range(scene.rows) if scene.get((r, col)) is None]
        names = [f"column {col + 1}"] + (["the left column"] if col == 0 else [])
        names += ["the right column"] if col == scene.cols - 1 else []
        options += [(name, f"column {col + 1}", free) for name in names]
    options = [o for o in options if 1 <= len(o[2]) <= most]
    name, line, free = pick(rng, options, "line with a few free cells")
    new = random_obj(rng)
    forms = (
        "fill the empty cells of {line} with {group}",
        "fill every empty cell of {line} with {group}",
    )
    clause = rng.choice(forms).format(line=name, group=group_of(new))
    note = say("count_empty", 1 if len(free) == 1 else 0, line=line, count=number(len(free)))
    return draft_from(
        scene, Piece(clause, [note, _add_sentence(rng, new, free)], {c: new for c in free})
    )


def gen_multi(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    makers = (recolour_piece, remove_piece, replace_piece)
    first_pos = pick_object(rng, scene)
    first = rng.choice(makers)(rng, scene, first_pos, ("attribute",))
    between = scene.with_cells(first.updates)
    # the second object must be named the same way before and after the first edit
    second_pos = pick_object(rng, scene, exclude=(first_pos,))
    names = set(attribute_names(scene, second_pos)) & set(attribute_names(between, second_pos))
    second = rng.choice(makers)(rng, between, second_pos, ("attribute",), names)
    joiner = rng.choice(("{} and {}", "{}, then {}", "first {}, then {}"))
    return draft_from(scene, first, second, joiner=joiner)


EDIT_GENERATORS: dict[str, EditGenerator] = {
    "add": gen_add,
    "remove": gen_remove,
    "replace": gen_replace,
    "recolour": gen_recolour,
    "move": gen_move,
    "swap": gen_swap,
    "relational": gen_relational,
    "conditional": gen_conditional,
    "count": gen_count,
    "multi": gen_multi,
}
