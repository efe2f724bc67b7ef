"""Varied instruction phrasing and sparse warm-up scenes of the shapes training data."""

from __future__ import annotations

import random
import re

import pytest

from paradiff.shapes.dataset import DatasetError, shapebench_samples, training_samples
from paradiff.shapes.phrasing import rephrase
from paradiff.shapes.scene import COLOUR_NAMES, SHAPES
from paradiff.shapes.tasks import make_sample
from paradiff.shapes.tokenizer import UNK, build_text_tokenizer

WORDS = "|".join((*COLOUR_NAMES, *SHAPES))
CONTENT = re.compile(rf"\b(?:{WORDS}|[1-9])\b", re.IGNORECASE)


def content_words(text: str) -> list[str]:
    """The colours, shapes and digits of a text in order (what an instruction asks about)."""
    return [w.lower() for w in CONTENT.findall(text)]


def test_rephrasing_keeps_every_colour_shape_and_number_in_order():
    changed = 0
    for seed in range(300):
        instruction = make_sample("recolour" if seed % 2 else "relational", seed).instruction
        variant = rephrase(instruction, random.Random(seed))
        changed += variant != instruction
        assert content_words(variant) == content_words(instruction), (instruction, variant)
    assert changed > 150  # most instructions come out in another form


def test_rephrasing_is_seeded():
    text = "Make the blue star black."
    assert rephrase(text, random.Random(5)) == rephrase(text, random.Random(5))
    assert len({rephrase(text, random.Random(s)) for s in range(100)}) > 20


def test_varied_training_instructions_are_all_in_the_vocabulary():
    tokenizer = build_text_tokenizer()
    unk = tokenizer.token_to_id(UNK)
    samples = list(training_samples(400, seed=3))
    assert not [s.instruction for s in samples if unk in tokenizer.encode(s.instruction).ids]
    forms = " ".join(s.instruction for s in samples)
    assert "?" in forms and "please" in forms.lower()
    assert any(s.instruction[0].islower() for s in samples)


def test_templates_option_and_shapebench_keep_the_template_sentences():
    varied = list(training_samples(50, seed=4))
    plain = list(training_samples(50, seed=4, varied_phrasing=False))
    assert [s.reasoning for s in varied] == [s.reasoning for s in plain]
    assert any(v.instruction != p.instruction for v, p in zip(varied, plain, strict=True))
    assert all(
        s.instruction[0].isupper() and s.instruction.endswith(".")
        for s in plain + list(shapebench_samples())[:60]
    )


def test_sparse_share_draws_one_or_two_objects_for_that_share_of_edits():
    samples = [s for s in training_samples(300, seed=5, sparse_share=0.5) if s.task == "edit"]
    sparse = [s for s in samples if s.difficulty == 0]
    assert 0.35 < len(sparse) / len(samples) < 0.65
    assert all(1 <= len(s.scene_in.cells) <= 2 for s in sparse)
    assert all(len(s.scene_in.cells) >= 3 for s in samples if s.difficulty > 0)
    with pytest.raises(DatasetError, match="sparse share"):
        training_samples(1, sparse_share=1.5)  # at the call, before any sample is drawn
