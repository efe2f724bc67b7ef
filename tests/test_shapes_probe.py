"""The location probe and the quick evaluation on hand-made models whose answers are known."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from paradiff.shapes import probe
from paradiff.shapes.dataset import shapebench_samples
from paradiff.shapes.family import new_shapes_pipeline
from paradiff.shapes.render import render_scene


@pytest.fixture(scope="module")
def pipe():
    return new_shapes_pipeline(seed=0, d_model=32, n_heads=2, n_layers=1, mlp_hidden_size=64)


class TableModel(torch.nn.Module):
    """Answers from a fixed table of full sequences: hidden state = one-hot of the table's id,
    logits = the slice of that one-hot (so argmax = the table's id)."""

    def __init__(self, tables: list[torch.Tensor], vocab: int, forwards_per_chunk: int = 2):
        super().__init__()
        self.tables, self.vocab = list(tables), vocab
        self.forwards_per_chunk = forwards_per_chunk  # the location probe runs two per chunk
        self.calls = 0

    @property
    def device(self):
        return torch.device("cpu")

    def hidden_states(self, ids, attention_mask=None):
        table = self.tables[self.calls // self.forwards_per_chunk]
        self.calls += 1
        assert table.shape == ids.shape
        return torch.nn.functional.one_hot(table, self.vocab).float()

    def logits(self, hidden, positions=None, vocab_range=None):
        return hidden[..., vocab_range[0] : vocab_range[1]]


class Spy(TableModel):
    """A table model that also records every input it is given in `seen`."""

    def __init__(self, seen: list, *args) -> None:
        super().__init__(*args)
        self.seen = seen

    def hidden_states(self, ids, attention_mask=None):
        self.seen.append(ids.clone())
        return super().hidden_states(ids, attention_mask)


def tables(pipe, limit, batch_size, copy_input=False):
    samples = probe._edit_samples(limit)
    out = []
    for start in range(0, len(samples), batch_size):
        batch, sequences = probe._teacher_batch(pipe, samples[start : start + batch_size])
        ids = batch.ids.clone()
        if copy_input:  # the output image repeats the input; the text says nothing
            for row, seq in enumerate(sequences):
                shift = ids.shape[1] - len(seq.ids)
                ids[row, batch.output_image] = batch.ids[row, seq.input_image + shift]
            ids[:, batch.text] = pipe.space.text_fill_id
        out.append(ids)
    return out


def test_a_model_that_knows_the_answer_scores_one(pipe):
    truth = SimpleNamespace(**{**vars(pipe)})
    truth.model = TableModel(tables(pipe, 30, 10), pipe.space.vocab_size)
    result = probe.location_probe(truth, limit=30, batch_size=10)
    assert result == {"location": 1.0, "changed_cells": 1.0}


def test_copying_the_input_and_saying_nothing_scores_zero(pipe):
    copier = SimpleNamespace(**{**vars(pipe)})
    copier.model = TableModel(tables(pipe, 30, 10, copy_input=True), pipe.space.vocab_size)
    assert probe.location_probe(copier, limit=30, batch_size=10) == {
        "location": 0.0,
        "changed_cells": 0.0,
    }


def test_the_probe_masks_only_position_digits_and_the_output_image(pipe):
    seen = []
    spy_pipe = SimpleNamespace(**{**vars(pipe)})
    spy_pipe.model = Spy(seen, tables(pipe, 5, 5), pipe.space.vocab_size)
    probe.location_probe(spy_pipe, limit=5, batch_size=5)
    batch, _ = probe._teacher_batch(pipe, probe._edit_samples(5))
    located, clean_text = seen
    text = pipe.text_tokenizer
    masked = (located != batch.ids) & batch.attention_mask.bool()
    masked[:, batch.output_image] = False
    hidden = batch.ids[masked]
    digits = {text.encode(str(d))[0] for d in range(1, 10)}
    assert hidden.numel() >= 10 and set(hidden.tolist()) <= digits  # "row R, column C" each
    assert (located[:, batch.output_image] == pipe.space.mask_id).all()
    assert torch.equal(clean_text[:, batch.text], batch.ids[:, batch.text])


def generation_tables(pipe, limit, batch_size, blank=False):
    """Clean generation sequences in the probe's chunks; with `blank`, the output image is the
    empty canvas everywhere (the model draws nothing)."""
    samples = probe._generation_samples(limit)
    out = []
    for start in range(0, len(samples), batch_size):
        batch, _ = probe._teacher_batch(pipe, samples[start : start + batch_size])
        ids = batch.ids.clone()
        if blank:
            ids[:, batch.output_image] = ids[:, batch.output_image].mode(dim=1).values[:, None]
        out.append(ids)
    return out


def test_drawing_probe_scores_one_for_the_answer_and_zero_for_an_empty_canvas(pipe):
    vocab = pipe.space.vocab_size
    truth = SimpleNamespace(**{**vars(pipe)})
    truth.model = TableModel(generation_tables(pipe, 12, 5), vocab, forwards_per_chunk=1)
    assert probe.drawing_probe(truth, limit=12, batch_size=5) == {"drawn_cells": 1.0}
    blank = SimpleNamespace(**{**vars(pipe)})
    blank.model = TableModel(generation_tables(pipe, 12, 5, True), vocab, forwards_per_chunk=1)
    assert probe.drawing_probe(blank, limit=12, batch_size=5) == {"drawn_cells": 0.0}


def test_drawing_probe_reads_generations_with_the_output_image_masked(pipe):
    seen = []
    spy_pipe = SimpleNamespace(**{**vars(pipe)})
    spy_pipe.model = Spy(seen, generation_tables(pipe, 5, 5), pipe.space.vocab_size, 1)
    probe.drawing_probe(spy_pipe, limit=5, batch_size=5)
    batch, _ = probe._teacher_batch(pipe, probe._generation_samples(5))
    (masked,) = seen
    assert (masked[:, batch.output_image] == pipe.space.mask_id).all()
    rest = torch.ones(masked.shape[1], dtype=torch.bool)
    rest[batch.output_image] = False
    assert torch.equal(masked[:, rest], batch.ids[:, rest])  # prompt and reasoning given
    assert not (batch.ids[:, : batch.answer_start] >= pipe.space.image_offset).any()  # no input


class AnswerPipe:
    """A pipeline stand-in answering each request with a fixed (text, image); it records the
    sampler overrides it was asked for."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.model = torch.nn.Linear(1, 1)
        self.overrides = []

    def run(self, task, requests, **overrides):
        self.overrides.append(overrides)
        out = [self.answers.pop(0) for _ in requests]
        return [SimpleNamespace(text=t, image=i) for t, i in out]


def evaluation_order(limit):
    samples = list(shapebench_samples())[:limit]
    return [s for s in samples if s.task == "edit"] + [s for s in samples if s.task == "generation"]


def test_quick_evaluation_of_the_ground_truth_is_100():
    ordered = evaluation_order(12)
    fake = AnswerPipe((s.reasoning, render_scene(s.scene_out)) for s in ordered)
    report = probe.quick_evaluation(fake, limit=12, batch_size=5)
    assert set(report) == {"overall", "edit", "generation"}
    assert all(value == 100.0 for value in report["overall"].values())
    greedy = {"text_temperature": 0.0, "image_temperature": 0.0, "best_of": 1}
    assert fake.overrides and all(o == greedy for o in fake.overrides)  # whatever the model ships


def test_quick_evaluation_of_doing_nothing_scores_no_alignment():
    ordered = evaluation_order(12)
    nothing = [("", render_scene(s.base_scene)) for s in ordered]
    report = probe.quick_evaluation(AnswerPipe(nothing), limit=12, batch_size=5)
    for task in ("edit", "generation"):
        assert report[task]["output_alignment"] == 0.0
        assert report[task]["image_alignment"] == 0.0
    assert report["edit"]["image_consistency"] == 100.0


def test_handwritten_edits_keep_their_scenes_and_score_the_ground_truth_100():
    samples = probe.handwritten_samples()
    assert len(samples) == 30 and all(s.task == "edit" for s in samples)
    assert len({s.instruction for s in samples}) == 30
    truth = AnswerPipe((s.reasoning, render_scene(s.scene_out)) for s in samples)
    report = probe.handwritten_evaluation(truth)
    assert report["exact"] == 100.0 and report["output_alignment"] == 100.0
    unchanged = AnswerPipe(("", render_scene(s.scene_in)) for s in samples)
    assert probe.handwritten_evaluation(unchanged)["exact"] == 0.0
