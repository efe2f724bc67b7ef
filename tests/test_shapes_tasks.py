"""Shapes world: task generators, their reasoning, the parser and the sample format."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paradiff.shapes.constraints import ConstraintError, constraint_score, related, satisfied
from paradiff.shapes.drafting import DIFFICULTIES
from paradiff.shapes.language import COMPILED, FAMILIES, TEMPLATES, count_tokens
from paradiff.shapes.parser import EFFECTS, parse_reasoning
from paradiff.shapes.sample import SampleError, ShapeSample
from paradiff.shapes.scene import Obj, Scene
from paradiff.shapes.tasks import (
    EDIT_CATEGORIES,
    GENERATION_CATEGORIES,
    MAX_INSTRUCTION_TOKENS,
    MAX_REASONING_TOKENS,
    TaskError,
    derive_seed,
    make_sample,
)

ALL_CATEGORIES = EDIT_CATEGORIES + GENERATION_CATEGORIES
SEEDS_PER_CATEGORY = 60


@pytest.fixture(scope="module")
def samples() -> dict[str, list[ShapeSample]]:
    return {
        category: [
            make_sample(category, derive_seed("test", category, i), DIFFICULTIES[i % 3])
            for i in range(SEEDS_PER_CATEGORY)
        ]
        for category in ALL_CATEGORIES
    }


def test_enough_categories():
    assert len(EDIT_CATEGORIES) >= 7 and len(GENERATION_CATEGORIES) >= 5
    assert {"add", "remove", "replace", "recolour", "move", "swap", "count"} <= set(EDIT_CATEGORIES)


@pytest.mark.parametrize("category", ALL_CATEGORIES)
def test_reasoning_parses_back_to_the_target(category, samples):
    for sample in samples[category]:
        reading = parse_reasoning(sample.reasoning)
        assert reading.parse_score == 1.0, sample.reasoning
        assert reading.apply(sample.base_scene) == sample.scene_out, sample.reasoning
        if sample.task == "edit":
            assert sample.scene_in != sample.scene_out
            assert reading.changes == sample.required_changes()
            assert all(sample.scene_in.get(pos) == obj for pos, obj in reading.located)
        else:
            assert all(satisfied(c, sample.scene_out) for c in sample.constraints)


@pytest.mark.parametrize("category", ALL_CATEGORIES)
def test_budgets_and_variety(category, samples):
    instructions = {s.instruction for s in samples[category]}
    openings = {s.reasoning.split(" ")[0] for s in samples[category]}
    assert len(instructions) > SEEDS_PER_CATEGORY // 2  # several phrasings and scenes
    assert len(openings) >= 2
    for sample in samples[category]:
        assert count_tokens(sample.instruction) <= MAX_INSTRUCTION_TOKENS
        assert count_tokens(sample.reasoning) <= MAX_REASONING_TOKENS
        assert not re.search(r"[;:'\"]", sample.instruction + sample.reasoning)


def test_edit_reasoning_is_about_the_change_not_the_scene(samples):
    """The reasoning names fewer cells than a listing of the whole input would."""
    for category in EDIT_CATEGORIES:
        for sample in samples[category]:
            named = len(re.findall(r"row \d, column \d", sample.reasoning))
            assert named <= len(sample.required_changes()) + 2
            if len(sample.scene_in.cells) >= 7:
                assert named < len(sample.scene_in.cells)


def test_every_template_family_is_used(samples):
    used = set()
    for sample_list in samples.values():
        for sample in sample_list:
            for sentence in re.split(r"(?<=\.) ", sample.reasoning):
                text = sentence.lower().rstrip(".")
                used.update(t.family for t in COMPILED if t.regex.fullmatch(text))
    assert used == set(TEMPLATES)


@pytest.mark.parametrize("grid", [3, 6])
def test_other_grid_sizes(grid):
    for category in ALL_CATEGORIES:
        for index in range(8):
            sample = make_sample(category, derive_seed("grid", category, index), 2, grid=grid)
            assert (sample.scene_out.rows, sample.scene_out.cols) == (grid, grid)
            reading = parse_reasoning(sample.reasoning, grid, grid)
            assert reading.parse_score == 1.0
            assert reading.apply(sample.base_scene) == sample.scene_out


def test_difficulty_is_a_curriculum_handle():
    def mean_objects(task_categories, difficulty, scene):
        counts = [
            len(scene(make_sample(c, derive_seed("level", c, i), difficulty)).cells)
            for c in task_categories
            for i in range(20)
        ]
        return sum(counts) / len(counts)

    for categories, scene in (
        (EDIT_CATEGORIES, lambda s: s.scene_in),
        (GENERATION_CATEGORIES, lambda s: s.scene_out),
    ):
        assert mean_objects(categories, 1, scene) + 0.2 < mean_objects(categories, 3, scene)


def test_samples_are_deterministic():
    first = make_sample("relational", 1234, 2)
    again = make_sample("relational", 1234, 2)
    other = make_sample("relational", 1235, 2)
    assert first.to_json() == again.to_json()
    assert first.to_json() != other.to_json()


def test_sample_json_and_record_round_trip(samples):
    for category in ("move", "negation"):
        sample = samples[category][0]
        assert ShapeSample.from_json(json.loads(json.dumps(sample.to_json()))) == sample
        record = sample.to_record("images/a_in.png" if sample.scene_in else None, "images/a.png")
        assert record["user_prompt"] == sample.instruction
        assert record["answer_text"] == sample.reasoning
        assert record["task"] == sample.task and record["category"] == category
        assert ShapeSample.from_json(record) == sample


def test_bad_requests_raise():
    with pytest.raises(TaskError, match="unknown category"):
        make_sample("juggle", 0)
    with pytest.raises(TaskError, match="difficulty"):
        make_sample("add", 0, difficulty=7)
    with pytest.raises(SampleError, match="no input scene"):
        ShapeSample("x", "edit", "add", "i", "r", Scene())
    with pytest.raises(SampleError, match="malformed"):
        ShapeSample.from_json({"id": "x"})


def test_every_template_effect_has_a_parser_effect():
    assert {effect for effect, _ in FAMILIES.values()} == set(EFFECTS)


def test_parser_follows_focus_and_rejects_unresolved_references():
    text = (
        "The black diamond is at row 1, column 2. It turns purple. "
        "The yellow star is at row 2, column 3. Left of it are the red circle at row 2, column 1 "
        "and the green square at row 2, column 2. Both are removed. "
        "It turns blue. "  # nothing in focus after a removal
        "The pink cross is at row 9, column 9. "  # outside the grid
        "Three corners means a triangle."
    )
    reading = parse_reasoning(text)
    assert reading.changes == {(0, 1): Obj("diamond", "purple"), (1, 0): None, (1, 1): None}
    assert reading.parsed == 6 and len(reading.sentences) == 8


def test_parser_reads_partial_text(samples):
    sample = samples["relational"][0]
    cut = sample.reasoning[: len(sample.reasoning) * 2 // 3]
    reading = parse_reasoning(cut)
    assert 0 < reading.parse_score < 1
    assert set(reading.changes.items()) < set(sample.required_changes().items()) or not (
        reading.changes
    )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parser_never_raises_on_garbage(text):
    reading = parse_reasoning(text)
    assert 0.0 <= reading.parse_score <= 1.0 and 0.0 <= reading.distinct_ratio <= 1.0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "it turns red.",
                "both disappear.",
                "they swap places.",
                "the cell below it is row 4, column 1.",
                "a red star appears there.",
                "it moves two cells up to row 1, column 1.",
                "row 2, column",
                "the blue star is at row 3, column 1.",
                "left of it is the red circle at row 3, column 0.",
                ". , .",
            ]
        ),
        max_size=12,
    )
)
def test_parser_never_raises_on_shuffled_sentences(parts):
    parse_reasoning(" ".join(parts))


def test_constraints():
    scene = Scene(4, 4, {(0, 0): Obj("star", "red"), (1, 0): Obj("circle", "blue")})
    assert related((1, 0), "directly below", (0, 0)) and related((3, 0), "below", (0, 0))
    assert not related((3, 0), "directly below", (0, 0)) and not related((1, 1), "below", (0, 0))
    rules = [
        {"kind": "relation", "a": {"shape": "circle"}, "relation": "directly below", "b": {}},
        {"kind": "count", "shape": None, "colour": "red", "region": {"row": 0}, "value": 1},
        {"kind": "at", "row": 0, "col": 0, "shape": "star", "colour": "blue"},
        {"kind": "total", "value": 2},
    ]
    assert [satisfied(rule, scene) for rule in rules] == [True, True, False, True]
    assert constraint_score(rules, scene) == 0.75
    assert constraint_score(rules, Scene()) == 0.0
    with pytest.raises(ConstraintError, match="unknown constraint kind"):
        satisfied({"kind": "nearby"}, scene)
