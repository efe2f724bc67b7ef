"""Editing instructions as people give them: opt-in kinds, never in ShapeBench, the development
split or the default training mix (`paradiff.shapes.tasks.OPT_IN_CATEGORIES`).

- `several`: edits of several objects at once that the core kinds lack: "both stars", "every red
  circle" (colour and shape), "every shape in row 2", "two of the circles".
- `neighbour`: an object named through its neighbour: "the shape directly above the red star"
  (the neighbouring cell only) or "the shape left of the blue square" (any cell further left in
  its row, named only when one object is there, as in `paradiff.shapes.edit_tasks`).
- `cell`: cells named by row and column: "Remove the shape at row 2, column 3", "Add a red star
  at row 1, column 4", "Move the shape at row 1, column 1 to row 3, column 2".
- `absent`: the instruction names something the scene does not hold ("Make the circle black"
  without a circle, "every red shape" without one, an empty cell): the reasoning says it is not
  there and that nothing changes ("There is no circle. So nothing changes."); the output is the
  input. The judge's rule for such prompts is in `paradiff.shapes.judge`.
- `ambiguous`: a name two or three objects share ("the red circle" with two red circles) means
  the first in reading order (row by row, left to right): the reasoning counts them and says
  where, takes the first ("I take the first, the red circle at row 1, column 2.") and edits it.
  "Two of the circles" takes the first two the same way.

Every text uses only words the shipped tokenizer knows (its ids are fixed).
"""

from __future__ import annotations

import random

from paradiff.shapes.drafting import Draft, neighbour, phrase, pick, random_obj, region_cells
from paradiff.shapes.edit_tasks import (
    GROUP_FORMS,
    PIECE_FORMS,
    Piece,
    Ref,
    action_sentence,
    attribute_names,
    draft_from,
    group_action,
    locate_sentence,
    pick_object,
    recolour_piece,
    references,
    remove_piece,
    replace_piece,
)
from paradiff.shapes.language import (
    PLURALS,
    RELATION_STEPS,
    a_obj,
    a_shape,
    items_text,
    number,
    pos_text,
    positions_text,
    say,
    sentence,
    the_obj,
)
from paradiff.shapes.scene import COLOUR_NAMES, SHAPES, Pos, Scene

SINGLE_PIECES = {"recolour": recolour_piece, "replace": replace_piece, "remove": remove_piece}
REGION_LINES = ("top row", "bottom row", "left column", "right column")


def named_groups(scene: Scene) -> list[tuple[str, str, list[Pos]]]:
    """(singular, plural, positions in reading order) of every shape ("star", "stars"), colour
    ("red shape", "red shapes") and coloured shape ("red star", "red stars"), held or not."""
    groups = [(shape, PLURALS[shape], scene.find(shape)) for shape in SHAPES]
    groups += [(f"{c} shape", f"{c} shapes", scene.find(colour=c)) for c in COLOUR_NAMES]
    groups += [
        (f"{c} {shape}", f"{c} {PLURALS[shape]}", scene.find(shape, c))
        for shape in SHAPES
        for c in COLOUR_NAMES
    ]
    return groups


def group_draft(
    rng: random.Random, scene: Scene, scope_text: str, locate: list[str], found: list[Pos]
) -> Draft:
    """Recolour, reshape or remove every object of `found`, named `scope_text` in the
    instruction and located by the `locate` sentences."""
    targets = [(p, scene.get(p)) for p in found]
    action, slots, updates, end = group_action(rng, targets)
    clause = rng.choice(GROUP_FORMS[action]).format(scope=scope_text, end=end)
    sentences = [*locate, action_sentence(rng, action, len(targets), **slots)]
    return draft_from(scene, Piece(clause, sentences, updates))


# -- several ------------------------------------------------------------------------------------
def gen_several(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    form = rng.choice(("both", "combination", "line", "two_of"))
    return {"both": _both, "combination": _combination, "line": _line, "two_of": _two_of}[form](
        rng, scene
    )


def _scope_sentence(rng: random.Random, scene: Scene, plural: str, found: list[Pos]) -> str:
    items = items_text([(p, scene.get(p)) for p in found])
    return say("scope_many", 0, scope=f"the {plural}", items=items)


def _both(rng: random.Random, scene: Scene) -> Draft:
    options = [(plural, found) for _, plural, found in named_groups(scene) if len(found) == 2]
    plural, found = pick(rng, options, "name two objects share")
    scope_text = rng.choice((f"both {plural}", f"both the {plural}"))
    return group_draft(rng, scene, scope_text, [_scope_sentence(rng, scene, plural, found)], found)


def _combination(rng: random.Random, scene: Scene) -> Draft:
    options = [
        (singular, plural, found)
        for singular, plural, found in named_groups(scene)
        if " " in singular and not singular.endswith(" shape") and 2 <= len(found) <= 3
    ]
    singular, plural, found = pick(rng, options, "colour and shape several objects share")
    scope_text = rng.choice((f"every {singular}", f"all {plural}", f"all the {plural}"))
    return group_draft(rng, scene, scope_text, [_scope_sentence(rng, scene, plural, found)], found)


def _line(rng: random.Random, scene: Scene) -> Draft:
    options = []
    for index, kind in [(r, "row") for r in range(scene.rows)] + [
        (c, "column") for c in range(scene.cols)
    ]:
        line = f"{kind} {index + 1}"
        found = [p for p, _ in scene.objects() if p[0 if kind == "row" else 1] == index]
        if 2 <= len(found) <= 3:
            options.append((line, line, found))
            for region in REGION_LINES:
                if region_cells(scene.rows, scene.cols, region)[2] == line:
                    options.append((f"the {region}", line, found))
    name, line, found = pick(rng, options, "line holding a few objects")
    scope_text = rng.choice((f"every shape in {name}", f"all shapes in {name}"))
    locate = []
    if name != line:
        locate.append(say("region_is", rng.randrange(2), region=name, line=line))
    items = items_text([(p, scene.get(p)) for p in found])
    locate.append(phrase(rng, "scope_line", line=line, items=items))
    return group_draft(rng, scene, scope_text, locate, found)


def _two_of(rng: random.Random, scene: Scene) -> Draft:
    options = [(plural, found) for _, plural, found in named_groups(scene) if len(found) == 3]
    plural, found = pick(rng, options, "name three objects share")
    chosen = found[:2]  # the first two in reading order
    count = say("count_is", 1, count=number(len(found)), noun=plural)
    choose = say("choose_first_two", 0, items=items_text([(p, scene.get(p)) for p in chosen]))
    return group_draft(rng, scene, f"two of the {plural}", [count, choose], chosen)


# -- neighbour ----------------------------------------------------------------------------------
def neighbour_refs(rng: random.Random, scene: Scene, pos: Pos) -> list[Ref]:
    """Names of the object at `pos` through the object in a neighbouring cell ("the shape
    directly above the red star": `pos` is the cell above the star)."""
    obj, refs = scene.get(pos), []
    for relation, (d_row, d_col) in RELATION_STEPS.items():
        anchor = (pos[0] - d_row, pos[1] - d_col)
        if neighbour(scene.rows, scene.cols, anchor, relation) != pos or scene.get(anchor) is None:
            continue
        for name in attribute_names(scene, anchor):
            locate = (
                locate_sentence(rng, scene, anchor),
                phrase(rng, "spot", place=f"the cell {relation} it", pos=pos_text(pos)),
                phrase(rng, "holds", obj=the_obj(obj)),
            )
            word = rng.choice(("directly", "just"))
            refs.append(Ref(f"the shape {word} {relation} {name}", locate))
    return refs


def gen_neighbour(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    options = []
    for pos, _ in scene.objects():
        adjacent = neighbour_refs(rng, scene, pos)
        along = references(rng, scene, pos, ("relation",))["relation"]
        options += [(pos, refs) for refs in (adjacent, along) if refs]
    pos, refs = pick(rng, options, "object named through a neighbour")
    action = rng.choice(sorted(SINGLE_PIECES))
    return draft_from(scene, SINGLE_PIECES[action](rng, scene, pos, ref=rng.choice(refs)))


# -- cell -----------------------------------------------------------------------------------------
def gen_cell(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    action = rng.choice(("recolour", "replace", "remove", "add", "move"))
    empty = [p for p in scene.positions() if scene.get(p) is None]
    if action == "add":
        cell, new = pick(rng, empty, "empty cell"), random_obj(rng)
        forms = ("add {new} at {pos}", "put {new} in {pos}", "draw {new} at {pos}")
        clause = rng.choice(forms).format(new=a_obj(new), pos=pos_text(cell))
        sentences = [phrase(rng, "add_at", obj=a_obj(new), pos=pos_text(cell))]
        return draft_from(scene, Piece(clause, sentences, {cell: new}))
    pos = pick_object(rng, scene)
    name = rng.choice(("the shape at {pos}", "the shape in {pos}")).format(pos=pos_text(pos))
    if action == "move":
        target = pick(rng, empty, "empty cell")
        clause = f"move {name} to {pos_text(target)}"
        sentences = [locate_sentence(rng, scene, pos), phrase(rng, "move", pos=pos_text(target))]
        return draft_from(scene, Piece(clause, sentences, {pos: None, target: scene.get(pos)}))
    ref = Ref(name, (locate_sentence(rng, scene, pos),))
    return draft_from(scene, SINGLE_PIECES[action](rng, scene, pos, ref=ref))


# -- absent ---------------------------------------------------------------------------------------
def _absent_clause(rng: random.Random, ref: str, colour: str | None, shape: str | None) -> str:
    """An edit of one object named `ref` (of that colour and shape where given)."""
    action = rng.choice(sorted(PIECE_FORMS))
    new = random_obj(rng, avoid_shapes=[shape] if shape else ())
    paint = rng.choice([c for c in COLOUR_NAMES if c != colour])
    return rng.choice(PIECE_FORMS[action]).format(ref=ref, colour=paint, new=a_obj(new))


def gen_absent(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    form = rng.choice(("object", "object", "every", "cell"))
    if form == "cell":
        cell = pick(rng, [p for p in scene.positions() if scene.get(p) is None], "empty cell")
        name = rng.choice(("the shape at {pos}", "the shape in {pos}")).format(pos=pos_text(cell))
        clause = _absent_clause(rng, name, None, None)
        absent = phrase(rng, "absent_cell", pos=pos_text(cell))
    else:
        missing = [singular for singular, _, found in named_groups(scene) if not found]
        if form == "every":
            missing = [s for s in missing if " " not in s or s.endswith(" shape")]
        singular = pick(rng, missing, "name of nothing in the scene")
        colour, _, shape = singular.rpartition(" ")
        shape = None if shape == "shape" else shape
        if form == "every":
            plural = f"{colour} shapes" if shape is None else PLURALS[shape]
            scope = rng.choice((f"every {singular}", f"all {plural}"))
            action = rng.choice(sorted(GROUP_FORMS))
            end = {
                "recolour": rng.choice([c for c in COLOUR_NAMES if c != colour]),
                "reshape": a_shape(rng.choice([s for s in SHAPES if s != shape])),
                "remove": "",
            }[action]
            clause = rng.choice(GROUP_FORMS[action]).format(scope=scope, end=end)
        else:
            clause = _absent_clause(rng, f"the {singular}", colour or None, shape)
        absent = phrase(rng, "absent", noun=singular)
    return Draft(
        instruction=sentence(clause),
        sentences=[absent, phrase(rng, "unchanged")],
        scene_out=scene,
        scene_in=scene,
    )


# -- ambiguous ------------------------------------------------------------------------------------
def gen_ambiguous(rng: random.Random, scene: Scene, difficulty: int) -> Draft:
    options = [(s, p, found) for s, p, found in named_groups(scene) if 2 <= len(found) <= 3]
    singular, plural, found = pick(rng, options, "name two or three objects share")
    first = found[0]  # reading order: row by row, left to right
    count = say(
        "count_at", 2, count=number(len(found)), noun=plural, positions=positions_text(found)
    )
    choose = say("choose_first", 0, obj=the_obj(scene.get(first)), pos=pos_text(first))
    ref = Ref(f"the {singular}", (count, choose))
    action = rng.choice(sorted(SINGLE_PIECES))
    return draft_from(scene, SINGLE_PIECES[action](rng, scene, first, ref=ref))


REFERENCE_GENERATORS = {
    "several": gen_several,
    "neighbour": gen_neighbour,
    "cell": gen_cell,
    "absent": gen_absent,
    "ambiguous": gen_ambiguous,
}
