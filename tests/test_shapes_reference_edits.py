"""Shapes world: the opt-in editing kinds (several, neighbour, cell, absent, ambiguous), their
reasoning read back by the parser and the judge's rule for instructions naming something absent."""

from __future__ import annotations

import dataclasses
import random
import re

import pytest

from paradiff.bench.items import METRICS
from paradiff.shapes.dataset import parse_weights
from paradiff.shapes.judge import exact_match, score_sample
from paradiff.shapes.language import REFERENCE_TEMPLATES, RELATION_STEPS, count_tokens
from paradiff.shapes.parser import parse_reasoning
from paradiff.shapes.reference_edits import neighbour_refs
from paradiff.shapes.sample import ShapeSample
from paradiff.shapes.scene import Obj, Scene
from paradiff.shapes.tasks import (
    CATEGORIES,
    MAX_INSTRUCTION_TOKENS,
    MAX_REASONING_TOKENS,
    OPT_IN_CATEGORIES,
    make_sample,
    task_of,
)
from paradiff.shapes.tokenizer import UNK, build_text_tokenizer

KINDS = OPT_IN_CATEGORIES["edit"]
PERFECT = dict.fromkeys(METRICS, 100.0)


@pytest.fixture(scope="module")
def samples():
    return {
        kind: [make_sample(kind, seed, difficulty=seed % 4) for seed in range(60)] for kind in KINDS
    }


def test_the_kinds_are_opt_in():
    assert set(KINDS) == {"several", "neighbour", "cell", "absent", "ambiguous"}
    assert not set(KINDS) & {c for names in CATEGORIES.values() for c in names}
    assert all(task_of(kind) == "edit" for kind in KINDS)
    assert not set(KINDS) & set(parse_weights())
    assert parse_weights("absent:2,several") == {"absent": 2.0, "several": 1.0}


def test_oracle_scores_100_and_texts_keep_the_budgets(samples):
    for kind, sample_list in samples.items():
        for sample in sample_list:
            assert score_sample(sample, sample.reasoning, sample.scene_out) == PERFECT, sample
            assert exact_match(sample, sample.scene_out)
            assert count_tokens(sample.instruction) <= MAX_INSTRUCTION_TOKENS
            assert count_tokens(sample.reasoning) <= MAX_REASONING_TOKENS
            assert (sample.scene_in == sample.scene_out) == (kind == "absent")


def test_every_word_is_one_the_shipped_tokenizer_knows(samples):
    tokenizer = build_text_tokenizer()
    unknown = tokenizer.token_to_id(UNK)
    for sample_list in samples.values():
        for sample in sample_list:
            for text in (sample.instruction, sample.reasoning):
                assert unknown not in tokenizer.encode(text).ids, text


def test_every_new_template_family_is_written(samples):
    from paradiff.shapes.language import COMPILED

    used = set()
    for sample_list in samples.values():
        for sample in sample_list:
            for sentence in parse_reasoning(sample.reasoning).sentences:
                used.update(t.family for t in COMPILED if t.regex.fullmatch(sentence))
    assert set(REFERENCE_TEMPLATES) <= used


def test_absent_reasoning_names_what_is_truly_missing(samples):
    for sample in samples["absent"]:
        reading = parse_reasoning(sample.reasoning)
        assert reading.absent and not reading.changes
        for cell, colour, shape in reading.absent:
            if cell is not None:
                assert sample.scene_in.get(cell) is None
            else:
                assert not sample.scene_in.find(shape, colour)


def absent_sample() -> ShapeSample:
    scene = Scene(4, 4, {(0, 0): Obj("star", "red"), (2, 3): Obj("square", "blue")})
    return dataclasses.replace(
        make_sample("absent", 0),
        instruction="Make the circle black.",
        reasoning="There is no circle. So nothing changes.",
        scene_in=scene,
        scene_out=scene,
    )


def test_the_judge_rule_for_an_absent_reference():
    sample = absent_sample()
    scene = sample.scene_in
    assert score_sample(sample, sample.reasoning, scene) == PERFECT
    # saying nothing and copying the input: the image is right, the text is not
    silent = score_sample(sample, "", scene)
    assert silent["image_alignment"] == silent["image_consistency"] == 100
    assert silent["text_alignment"] == silent["output_alignment"] == silent["text_quality"] == 0
    # another absence (true, but not what the instruction names) is not the answer
    other = score_sample(sample, "There is no cross. So nothing changes.", scene)
    assert other["text_alignment"] == 0 and other["output_alignment"] == 100
    # doing the edit anyway on some object: text and image both wrong
    changed = scene.with_cells({(0, 0): Obj("star", "black")})
    text = "The red star is at row 1, column 1. It turns black."
    acted = score_sample(sample, text, changed)
    assert acted["text_alignment"] == acted["image_alignment"] == 0
    assert acted["output_alignment"] == 100 and acted["image_consistency"] == 93.75
    # stating the absence but changing the image anyway
    drifted = score_sample(sample, sample.reasoning, changed)
    assert drifted["text_alignment"] == 100
    assert drifted["image_alignment"] == drifted["output_alignment"] == 0
    assert not exact_match(sample, changed) and exact_match(sample, scene)


def candidates(sample: ShapeSample) -> list[tuple[int, int]]:
    """The cells the count sentence of an ambiguous sample lists."""
    listed = re.findall(r"row (\d), column (\d)", sample.reasoning.split(". I take")[0])
    return [(int(r) - 1, int(c) - 1) for r, c in listed]


def test_ambiguous_names_take_the_first_in_reading_order(samples):
    for sample in samples["ambiguous"]:
        count = re.match(r"There are (two|three) ", sample.reasoning)
        cells = candidates(sample)
        assert len(cells) == {"two": 2, "three": 3}[count.group(1)] and cells == sorted(cells)
        assert all(sample.scene_in.get(cell) for cell in cells)
        reading = parse_reasoning(sample.reasoning)
        assert list(sample.required_changes()) == [cells[0]] == list(reading.changes)
    # the second candidate removed, said and done: no alignment, the rule is the first
    sample = samples["ambiguous"][0]
    second = candidates(sample)[1]
    text = f"The {sample.scene_in.get(second)} is at row {second[0] + 1}, column {second[1] + 1}."
    scores = score_sample(
        sample, text + " It is removed.", sample.scene_in.with_cells({second: None})
    )
    assert scores["text_alignment"] == scores["image_alignment"] == 0
    assert scores["output_alignment"] == 100


def test_neighbour_references_name_the_adjacent_cell():
    scene = Scene(
        4,
        4,
        {
            (1, 1): Obj("star", "red"),
            (0, 1): Obj("circle", "blue"),
            (1, 0): Obj("cross", "green"),
            (1, 3): Obj("square", "pink"),
            (2, 1): Obj("circle", "yellow"),
        },
    )
    names = {ref.text for ref in neighbour_refs(random.Random(0), scene, (0, 1))}
    assert names <= {
        f"the shape {word} above {anchor}"
        for word in ("directly", "just")
        for anchor in ("the red star", "the star", "the red shape")
    }
    assert names
    # the square is right of the star, but not next to it: no "directly right of" name
    assert not neighbour_refs(random.Random(0), scene, (1, 3))
    for seed in range(40):
        sample = make_sample("neighbour", seed)
        if " directly " not in sample.instruction and " just " not in sample.instruction:
            continue
        reading = parse_reasoning(sample.reasoning)
        anchor = reading.located[0][0]
        (changed,) = sample.required_changes()
        relation = re.search(
            r"(?:directly|just) (above|below|left of|right of)", sample.instruction
        )
        step = RELATION_STEPS[relation.group(1)]
        assert changed == (anchor[0] + step[0], anchor[1] + step[1])


def test_several_and_cell_edits_touch_what_they_name(samples):
    for sample in samples["several"]:
        changes = sample.required_changes()
        if "both" in sample.instruction.split() or "two of the" in sample.instruction:
            assert len(changes) == 2
        line = re.search(r"in (row|column) (\d)", sample.instruction)
        if line:
            axis, index = (0 if line.group(1) == "row" else 1), int(line.group(2)) - 1
            assert {cell[axis] for cell in changes} == {index} and len(changes) >= 2
    for sample in samples["cell"]:
        first = re.search(r"row (\d), column (\d)", sample.instruction)
        cell = (int(first.group(1)) - 1, int(first.group(2)) - 1)
        assert cell in sample.required_changes()
