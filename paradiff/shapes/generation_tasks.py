"""Generation task generators: a prompt with constraints -> reasoning + one scene satisfying them.

Each generator takes (rng, rows, cols, difficulty) and returns a `Draft` with the constraint set
a correct scene must satisfy and the scene its reasoning draws; difficulty 1..3 bounds how many
objects a prompt asks for. The reasoning resolves what the
prompt leaves implicit (counts, knowledge, positions) and states every object with its cell.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from paradiff.shapes import constraints as C
from paradiff.shapes.drafting import (
    REGIONS,
    Draft,
    all_cells,
    corner_pos,
    describe_obj,
    neighbour,
    phrase,
    pick,
    placement_sentences,
    random_obj,
    region_cells,
)
from paradiff.shapes.language import (
    COLOUR_THINGS,
    CORNERS,
    PLURALS,
    RELATION_STEPS,
    SHAPE_FEATURES,
    a_obj,
    a_shape,
    items_text,
    noun,
    number,
    pos_text,
    say,
)
from paradiff.shapes.scene import COLOUR_NAMES, SHAPES, Obj, Pos, Scene

GenerationGenerator = Callable[[random.Random, int, int, int], Draft]


def spec(obj: Obj, with_colour: bool) -> dict[str, str | None]:
    """The object description a relation constraint matches."""
    return {"shape": obj.shape, "colour": obj.colour if with_colour else None}


def coloured(count: int, obj: Obj, with_colour: bool) -> str:
    """'two red stars', 'one star'."""
    colour = f"{obj.colour} " if with_colour else ""
    return f"{number(count)} {colour}{noun(obj.shape, count)}"


def finish(
    rows: int,
    cols: int,
    prompt: str,
    sentences: list[str],
    placed: list[tuple[Pos, Obj]],
    constraints: list[C.Constraint],
) -> Draft:
    return Draft(
        instruction=prompt,
        sentences=sentences,
        scene_out=Scene(rows, cols, dict(placed)),
        constraints=constraints,
    )


def gen_counting(rng: random.Random, rows: int, cols: int, difficulty: int) -> Draft:
    form = rng.choice(("twice", "more", "rest", "half", "same"))
    first, second = rng.sample(SHAPES, 2)
    a, b = Obj(first, rng.choice(COLOUR_NAMES)), Obj(second, rng.choice(COLOUR_NAMES))
    named = rng.random() < 0.5
    b_plural = f"{b.colour} {PLURALS[b.shape]}" if named else PLURALS[b.shape]
    small = (1,) if difficulty == 1 else (1, 2)
    if form == "twice":
        n_a = rng.choice(small)
        n_b = 2 * n_a
        forms = ("Draw {a} and twice as many {b}.", "Draw twice as many {b} as {a_pl}, with {a}.")
        note = say("arithmetic", 0, count=number(n_a), count2=number(n_b))
    elif form == "more":
        n_a, extra = rng.choice(small), rng.choice(small)
        n_b = n_a + extra
        colour = f"{b.colour} " if named else ""
        b_plural = f"{number(extra)} more {colour}{noun(b.shape, extra)}"
        forms = ("Draw {a} and {b} than {a_pl}.",)
        note = say("arithmetic", 1, count=number(n_a), count2=number(extra), count3=number(n_b))
    elif form == "rest":
        total = rng.randint(3, 2 + difficulty)
        n_a = rng.randint(1, total - 1)
        n_b = total - n_a
        forms = (f"Draw {number(total)} shapes, {{a}} and the rest {{b}}.",)
        note = say("arithmetic", 2, count=number(total), count2=number(n_a), count3=number(n_b))
    elif form == "half":
        n_a = 2 * rng.choice(small)
        n_b = n_a // 2
        forms = ("Draw {a} and half as many {b}.",)
        note = say("arithmetic", 3, count=number(n_a), count2=number(n_b))
    else:
        n_a = rng.randint(1, 1 + len(small))
        n_b = n_a
        forms = ("Draw {a} and as many {b}.", "Draw {a} and the same number of {b}.")
        note = say("arithmetic", 5, count=number(n_b), noun=noun(b.shape, n_b))
    prompt = rng.choice(forms).format(a=coloured(n_a, a, named), b=b_plural, a_pl=PLURALS[a.shape])
    cells = rng.sample(all_cells(rows, cols), n_a + n_b)
    placed = [(p, a) for p in sorted(cells[:n_a])] + [(p, b) for p in sorted(cells[n_a:])]
    constraints = [
        C.count(n_a, a.shape, a.colour if named else None),
        C.count(n_b, b.shape, b.colour if named else None),
        C.total(n_a + n_b),
    ]
    return finish(
        rows, cols, prompt, [note, *placement_sentences(rng, placed)], placed, constraints
    )


def gen_spatial(rng: random.Random, rows: int, cols: int, difficulty: int) -> Draft:
    form = rng.choice(("pair", "corner", "line"))
    first, second = rng.sample(SHAPES, 2)
    a, b = random_obj(rng, shape=first), random_obj(rng, shape=second)
    a_named, b_named = rng.random() < 0.6, rng.random() < 0.6
    if form == "line":
        name = rng.choice(REGIONS)
        region, cells, line = region_cells(rows, cols, name)
        count = rng.randint(2, min(1 + difficulty, len(cells)))
        forms = ("Draw {things} in the {region}.", "Put {things} in the {region}.")
        prompt = rng.choice(forms).format(things=coloured(count, a, a_named), region=name)
        placed = [(p, a) for p in sorted(rng.sample(cells, count))]
        sentences = [phrase(rng, "region_is", region=f"the {name}", line=line)]
        constraints = [
            C.count(count, a.shape, a.colour if a_named else None, region),
            C.total(count),
        ]
        return finish(
            rows, cols, prompt, sentences + placement_sentences(rng, placed), placed, constraints
        )
    relation = rng.choice(tuple(RELATION_STEPS))
    if form == "pair":
        options = [p for p in all_cells(rows, cols) if neighbour(rows, cols, p, relation)]
        b_pos = rng.choice(options)
        a_pos = neighbour(rows, cols, b_pos, relation)
        forms = (
            "Draw {a} directly {rel} {b}.",
            "Put {a} just {rel} {b}.",
            "Draw {b} with {a} directly {rel} it.",
        )
        prompt = rng.choice(forms).format(
            a=describe_obj(a, a_named), b=describe_obj(b, b_named), rel=relation
        )
        sentences = [
            phrase(rng, "add_items", items=items_text([(b_pos, b)], definite=False)),
            phrase(rng, "spot", place=f"the cell {relation} it", pos=pos_text(a_pos)),
            phrase(rng, "add_there", obj=a_obj(a)),
        ]
        constraints = [
            C.count(1, a.shape, a.colour if a_named else None),
            C.count(1, b.shape, b.colour if b_named else None),
            C.relation(spec(a, a_named), f"directly {relation}", spec(b, b_named)),
            C.total(2),
        ]
        return finish(rows, cols, prompt, sentences, [(b_pos, b), (a_pos, a)], constraints)
    name = rng.choice(tuple(CORNERS))
    a_pos = corner_pos(rows, cols, name)
    relation = pick(
        rng, [r for r in RELATION_STEPS if neighbour(rows, cols, a_pos, r)], "inward relation"
    )
    b_pos = neighbour(rows, cols, a_pos, relation)
    forms = (
        "Draw {a} in the {corner} and {b} directly {rel} it.",
        "Put {a} in the {corner} with {b} just {rel} it.",
    )
    prompt = rng.choice(forms).format(
        a=describe_obj(a, a_named), b=describe_obj(b, b_named), corner=name, rel=relation
    )
    sentences = [
        phrase(rng, "spot", place=f"the {name}", pos=pos_text(a_pos)),
        phrase(rng, "add_there", obj=a_obj(a)),
        phrase(rng, "spot", place=f"the cell {relation} it", pos=pos_text(b_pos)),
        phrase(rng, "add_there", obj=a_obj(b)),
    ]
    constraints = [
        C.at(a_pos, a.shape, a.colour if a_named else None),
        C.relation(spec(b, b_named), f"directly {relation}", spec(a, a_named)),
        C.total(2),
    ]
    return finish(rows, cols, prompt, sentences, [(a_pos, a), (b_pos, b)], constraints)


def knowledge_of(rng: random.Random, obj: Obj) -> tuple[str, str, list[str]]:
    """(the prompt's shape phrase, its colour thing, the reasoning notes resolving both)."""
    feature_phrase, bare = SHAPE_FEATURES[obj.shape]
    thing = rng.choice(COLOUR_THINGS[obj.colour])
    notes = [
        phrase(rng, "shape_knowledge", feature=bare, shape=a_shape(obj.shape)),
        phrase(rng, "colour_knowledge", thing=thing, colour=obj.colour),
    ]
    return feature_phrase, thing, notes


def like(thing: str, rng: random.Random) -> str:
    return rng.choice((f"in the colour of {thing}", f"coloured like {thing}"))


def gen_knowledge(rng: random.Random, rows: int, cols: int, difficulty: int) -> Draft:
    form = rng.choice(("one", "corner", "two", "many"))
    obj = random_obj(rng)
    feature, thing, notes = knowledge_of(rng, obj)
    cells = all_cells(rows, cols)
    if form == "one":
        placed = [(rng.choice(cells), obj)]
        prompt = f"Draw {feature} {like(thing, rng)}."
        sentences = notes + placement_sentences(rng, placed)
        constraints = [C.count(1, obj.shape, obj.colour), C.total(1)]
    elif form == "corner":
        name = rng.choice(tuple(CORNERS))
        pos = corner_pos(rows, cols, name)
        placed = [(pos, obj)]
        prompt = f"Draw {feature} {like(thing, rng)} in the {name}."
        sentences = notes + [
            phrase(rng, "spot", place=f"the {name}", pos=pos_text(pos)),
            phrase(rng, "add_there", obj=a_obj(obj)),
        ]
        constraints = [C.at(pos, obj.shape, obj.colour), C.total(1)]
    elif form == "two":
        other = random_obj(rng, avoid_shapes=(obj.shape,))
        feature2, thing2, notes2 = knowledge_of(rng, other)
        first, second = rng.sample(cells, 2)
        placed = [(first, obj), (second, other)]
        prompt = f"Draw {feature} {like(thing, rng)} and {feature2} {like(thing2, rng)}."
        sentences = notes + notes2 + placement_sentences(rng, placed)
        constraints = [
            C.count(1, obj.shape, obj.colour),
            C.count(1, other.shape, other.colour),
            C.total(2),
        ]
    else:
        count = rng.randint(2, min(3, 1 + difficulty))
        placed = [(p, obj) for p in sorted(rng.sample(cells, count))]
        shapes = feature.replace("a shape", f"{number(count)} shapes", 1)
        prompt = f"Draw {shapes}, {like(thing, rng)}."
        sentences = notes + placement_sentences(rng, placed)
        constraints = [C.count(count, obj.shape, obj.colour), C.total(count)]
    return finish(rows, cols, prompt, sentences, placed, constraints)


def gen_negation(rng: random.Random, rows: int, cols: int, difficulty: int) -> Draft:
    form = rng.choice(("colour", "shape", "shape_not_colour", "region", "both"))
    count = rng.randint(2, 1 + difficulty)
    colour, shape = rng.choice(COLOUR_NAMES), rng.choice(SHAPES)
    cells = all_cells(rows, cols)
    avoid_shapes: tuple[str, ...] = ()
    avoid_colours: tuple[str, ...] = ()
    fixed_shape = None
    if form == "colour":
        forms = ("Draw {n} shapes, none of them {c}.", "Draw {n} shapes and make none of them {c}.")
        constraints = [C.count(0, colour=colour)]
        notes = [phrase(rng, "exclude", excluded=f"{colour} shapes")]
        avoid_colours = (colour,)
    elif form == "shape":
        forms = ("Draw {n} shapes, none of them {s}.", "Draw {n} shapes but no {s}.")
        constraints = [C.count(0, shape=shape)]
        notes = [phrase(rng, "exclude", excluded=PLURALS[shape])]
        avoid_shapes = (shape,)
    elif form == "shape_not_colour":
        forms = ("Draw {n} {s} that are not {c}.", "Draw {n} {s}, none of them {c}.")
        constraints = [C.count(count, shape=shape), C.count(0, colour=colour)]
        notes = [phrase(rng, "exclude", excluded=f"{colour} shapes")]
        avoid_colours, fixed_shape = (colour,), shape
    elif form == "region":
        name = rng.choice(REGIONS)
        region, region_list, line = region_cells(rows, cols, name)
        forms = (
            f"Draw {{n}} shapes, but leave the {name} empty.",
            f"Draw {{n}} shapes, none in the {name}.",
        )
        constraints = [C.count(0, region=region)]
        notes = [
            phrase(rng, "region_is", region=f"the {name}", line=line),
            say("exclude", 2, excluded=f"the {name}"),
        ]
        cells = [p for p in cells if p not in region_list]
    else:
        forms = ("Draw {n} shapes with no {s} and nothing {c}.",)
        constraints = [C.count(0, shape=shape), C.count(0, colour=colour)]
        notes = [phrase(rng, "exclude", excluded=f"{PLURALS[shape]} and {colour} shapes")]
        avoid_shapes, avoid_colours = (shape,), (colour,)
    prompt = rng.choice(forms).format(n=number(count), c=colour, s=PLURALS[shape])
    placed = [
        (p, random_obj(rng, fixed_shape, None, avoid_shapes, avoid_colours))
        for p in sorted(rng.sample(cells, count))
    ]
    constraints = [C.total(count), *constraints]
    return finish(rows, cols, prompt, notes + placement_sentences(rng, placed), placed, constraints)


def gen_composition(rng: random.Random, rows: int, cols: int, difficulty: int) -> Draft:
    form = rng.choice(("region_corner", "knowledge_relation", "count_negation", "corner_pair"))
    return {
        "region_corner": _region_corner,
        "knowledge_relation": _knowledge_relation,
        "count_negation": _count_negation,
        "corner_pair": _corner_pair,
    }[form](rng, rows, cols, difficulty)


def _region_corner(rng: random.Random, rows: int, cols: int, difficulty: int) -> Draft:
    name, corner = rng.choice(REGIONS), rng.choice(tuple(CORNERS))
    region, cells, line = region_cells(rows, cols, name)
    corner_cell = corner_pos(rows, cols, corner)
    obj = random_obj(rng)
    other = random_obj(rng, avoid_shapes=(obj.shape,))
    free = [p for p in cells if p != corner_cell]
    count = rng.randint(2, min(1 + difficulty, 3, len(free)))
    placed = [(p, obj) for p in sorted(rng.sample(free, count))]
    prompt = f"Draw {coloured(count, obj, True)} in the {name} and {a_obj(other)} in the {corner}."
    sentences = [
        phrase(rng, "region_is", region=f"the {name}", line=line),
        phrase(rng, "spot", place=f"the {corner}", pos=pos_text(corner_cell)),
        phrase(rng, "add_there", obj=a_obj(other)),
        *placement_sentences(rng, placed),
    ]
    constraints = [
        C.count(count, obj.shape, obj.colour, region),
        C.at(corner_cell, other.shape, other.colour),
        C.total(count + 1),
    ]
    return finish(rows, cols, prompt, sentences, [(corner_cell, other), *placed], constraints)


def _knowledge_relation(rng: random.Random, rows: int, cols: int, difficulty: int) -> Draft:
    obj = random_obj(rng)
    other = random_obj(rng, avoid_shapes=(obj.shape,))
    feature, thing, notes = knowledge_of(rng, obj)
    relation = rng.choice(tuple(RELATION_STEPS))
    other_pos = rng.choice([p for p in all_cells(rows, cols) if neighbour(rows, cols, p, relation)])
    pos = neighbour(rows, cols, other_pos, relation)
    prompt = f"Draw {feature} {like(thing, rng)} directly {relation} {a_obj(other)}."
    sentences = notes + [
        phrase(rng, "add_items", items=items_text([(other_pos, other)], definite=False)),
        phrase(rng, "spot", place=f"the cell {relation} it", pos=pos_text(pos)),
        phrase(rng, "add_there", obj=a_obj(obj)),
    ]
    constraints = [
        C.count(1, obj.shape, obj.colour),
        C.count(1, other.shape, other.colour),
        C.relation(spec(obj, True), f"directly {relation}", spec(other, True)),
        C.total(2),
    ]
    return finish(rows, cols, prompt, sentences, [(other_pos, other), (pos, obj)], constraints)


def _count_negation(rng: random.Random, rows: int, cols: int, difficulty: int) -> Draft:
    colour = rng.choice(COLOUR_NAMES)
    first, second = rng.sample(SHAPES, 2)
    a = random_obj(rng, shape=first, avoid_colours=(colour,))
    b = random_obj(rng, shape=second, avoid_colours=(colour,))
    n_a = 1 if difficulty == 1 else rng.choice((1, 2))
    n_b = 2 * n_a
    prompt = (
        f"Draw twice as many {PLURALS[b.shape]} as {PLURALS[a.shape]}, "
        f"with {coloured(n_a, a, False)} and nothing {colour}."
    )
    cells = rng.sample(all_cells(rows, cols), n_a + n_b)
    placed = [(p, a) for p in sorted(cells[:n_a])] + [(p, b) for p in sorted(cells[n_a:])]
    sentences = [
        say("arithmetic", 0, count=number(n_a), count2=number(n_b)),
        phrase(rng, "exclude", excluded=f"{colour} shapes"),
        *placement_sentences(rng, placed),
    ]
    constraints = [
        C.count(n_a, a.shape),
        C.count(n_b, b.shape),
        C.count(0, colour=colour),
        C.total(n_a + n_b),
    ]
    return finish(rows, cols, prompt, sentences, placed, constraints)


def _corner_pair(rng: random.Random, rows: int, cols: int, difficulty: int) -> Draft:
    side = rng.choice(("top", "bottom"))
    shape = rng.choice(SHAPES)
    left_colour, right_colour = rng.sample(COLOUR_NAMES, 2)
    left, right = Obj(shape, left_colour), Obj(shape, right_colour)
    left_pos = corner_pos(rows, cols, f"{side} left corner")
    right_pos = corner_pos(rows, cols, f"{side} right corner")
    forms = (
        "Draw {s} in each {side} corner, {l} on the left and {r} on the right.",
        "Put {s} in both {side} corners, the left one {l} and the right one {r}.",
    )
    prompt = rng.choice(forms).format(s=a_shape(shape), side=side, l=left_colour, r=right_colour)
    sentences = [
        phrase(rng, "spot", place=f"the {side} left corner", pos=pos_text(left_pos)),
        phrase(rng, "add_there", obj=a_obj(left)),
        phrase(rng, "spot", place=f"the {side} right corner", pos=pos_text(right_pos)),
        phrase(rng, "add_there", obj=a_obj(right)),
    ]
    constraints = [
        C.at(left_pos, shape, left_colour),
        C.at(right_pos, shape, right_colour),
        C.total(2),
    ]
    return finish(
        rows, cols, prompt, sentences, [(left_pos, left), (right_pos, right)], constraints
    )


GENERATION_GENERATORS: dict[str, GenerationGenerator] = {
    "counting": gen_counting,
    "spatial": gen_spatial,
    "knowledge": gen_knowledge,
    "negation": gen_negation,
    "composition": gen_composition,
}
