"""Training-time checks of the shapes model: the location probe and the quick evaluation.

Locating the object an instruction names is the hard skill of thinking-aware editing, and the
training loss hides it (a few digits among ~110 answer tokens). Two teacher-forced numbers on the
200 ShapeBench edits (never in training data) show it directly:

- `location`: the reasoning is given except the digits that state a position ("row _, column _"),
  the output image is fully masked; accuracy of the argmax digit (chance is about 1/4).
- `changed_cells`: the whole reasoning is given, the output image fully masked; accuracy of the
  argmax code at the code positions the edit changes (copying the input scores 0).

`drawing_probe` is the generations' twin of `changed_cells` on the 100 ShapeBench generations:
`drawn_cells`, the accuracy of the argmax code where the target draws an object (everything
but the empty canvas's codes), the reasoning given and the image masked (drawing nothing
scores 0).

`quick_evaluation` samples the first `limit` ShapeBench prompts with the model's shipped steps,
greedy and one answer per prompt, and scores them with the exact judge: the six metrics, overall
and per task.
`training_evaluation` is both, in the form `paradiff train sft` logs (`eval.call` in a recipe).
`handwritten_evaluation` scores 30 edits whose instructions a person wrote (data/
handwritten_edits.json: the scenes of seeded samples, instructions in everyday words, not the
world's templates): the share of output scenes exactly right and the six metrics.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from paradiff.bench.items import METRICS
from paradiff.model import eval_mode
from paradiff.shapes.dataset import development_samples, shapebench_samples
from paradiff.shapes.image_tokenizer import shapes_tokenizer
from paradiff.shapes.judge import read_output, score_sample
from paradiff.shapes.render import render_scene
from paradiff.shapes.sample import ShapeSample
from paradiff.shapes.scene import Scene
from paradiff.shapes.tasks import CATEGORIES, make_sample

HANDWRITTEN_FILE = Path(__file__).parent / "data" / "handwritten_edits.json"

POSITION_WORDS = ("row", "column")  # a digit right after one of these states a position


def _edit_samples(limit: int | None = None) -> list[ShapeSample]:
    edits = [s for s in shapebench_samples() if s.task == "edit"]
    return edits[:limit]


def _generation_samples(limit: int | None = None) -> list[ShapeSample]:
    generations = [s for s in shapebench_samples() if s.task == "generation"]
    return generations[:limit]


def _teacher_batch(pipe, samples: list[ShapeSample]):
    """Clean sequences of the samples (prompt, input image of an edit, output image, reasoning)
    as one batch."""
    layout, text, codes = pipe.layout, pipe.text_tokenizer, shapes_tokenizer()
    length = pipe.sampler_defaults.text_gen_length
    sequences = []
    for sample in samples:
        reasoning = text.encode(sample.reasoning)[: length - 1]
        fill = [pipe.space.text_fill_id] * (length - len(reasoning))
        edit = sample.scene_in is not None
        sequences.append(
            layout.build(
                layout.prompt_ids("edit" if edit else "generate", sample.instruction, text),
                tuple(codes.scene_to_codes(sample.scene_out).shape),
                length,
                input_codes=codes.scene_to_codes(sample.scene_in) if edit else None,
                answer_end_ids=pipe.answer_end_ids,
                output_codes=codes.scene_to_codes(sample.scene_out),
                text_ids=reasoning + fill,
            )
        )
    return layout.collate(sequences), sequences


def _argmax_hits(model, ids, batch, positions, vocab: tuple[int, int]) -> tuple[int, int]:
    """(right, counted): the model's argmax over `vocab` at `positions` (B, L) of the input `ids`,
    against the clean ids of `batch`."""
    device = model.device
    hidden = model.hidden_states(ids.to(device), batch.attention_mask.to(device))  # (B, L, d)
    logits = model.logits(hidden[positions.to(device)][None], vocab_range=vocab)[0]  # (M, V')
    predicted = logits.argmax(-1).cpu() + vocab[0]
    return int((predicted == batch.ids[positions]).sum()), int(positions.sum())


@torch.no_grad()
def location_probe(pipe, limit: int | None = None, batch_size: int = 25) -> dict[str, float]:
    """{"location", "changed_cells"} accuracies in [0, 1] on the ShapeBench edits (see above)."""
    model, space, text = pipe.model, pipe.space, pipe.text_tokenizer
    digits = torch.tensor([text.encode(str(d))[0] for d in range(10)])
    anchors = torch.tensor([text.encode(word)[0] for word in POSITION_WORDS])
    samples = _edit_samples(limit)
    hits = {"location": [0, 0], "changed_cells": [0, 0]}
    with eval_mode(model):
        for start in range(0, len(samples), batch_size):
            batch, sequences = _teacher_batch(pipe, samples[start : start + batch_size])
            ids = batch.ids.clone()  # (B, L) clean
            ids[:, batch.output_image] = space.mask_id
            reasoning = ids[:, batch.text]  # (B, N)
            stated = torch.isin(reasoning[:, 1:], digits) & torch.isin(reasoning[:, :-1], anchors)
            where = torch.zeros_like(ids, dtype=torch.bool)
            where[:, batch.text[1:]] = stated
            for probe, masked_ids in (
                ("location", torch.where(where, space.mask_id, ids)),
                ("changed_cells", ids),
            ):
                if probe == "location":
                    positions, vocab = where, space.text_vocab
                else:
                    length = batch.ids.shape[1]  # left padding shifts each row's input image
                    inputs = torch.stack(
                        [
                            batch.ids[r, s.input_image + length - len(s.ids)]
                            for r, s in enumerate(sequences)
                        ]
                    )  # (B, h w)
                    targets = batch.ids[:, batch.output_image]
                    positions = torch.zeros_like(where)
                    positions[:, batch.output_image] = inputs != targets
                    vocab = space.image_vocab
                right, counted = _argmax_hits(model, masked_ids, batch, positions, vocab)
                hits[probe][0] += right
                hits[probe][1] += counted
    return {name: hit / max(1, total) for name, (hit, total) in hits.items()}


@torch.no_grad()
def drawing_probe(pipe, limit: int | None = None, batch_size: int = 25) -> dict[str, float]:
    """{"drawn_cells"}: on the ShapeBench generations, with the whole reasoning given and the
    output image fully masked, the accuracy in [0, 1] of the argmax code at the code positions
    that draw an object (drawing nothing scores 0)."""
    model, space = pipe.model, pipe.space
    samples = _generation_samples(limit)
    first = samples[0].scene_out
    blank = torch.as_tensor(shapes_tokenizer().scene_to_codes(Scene(first.rows, first.cols)))
    blank = blank.flatten() + space.image_offset  # (h w) the empty canvas's codes
    hits = total = 0
    with eval_mode(model):
        for start in range(0, len(samples), batch_size):
            batch, _ = _teacher_batch(pipe, samples[start : start + batch_size])
            ids = batch.ids.clone()  # (B, L) clean
            ids[:, batch.output_image] = space.mask_id
            targets = batch.ids[:, batch.output_image]  # (B, h w)
            positions = torch.zeros_like(ids, dtype=torch.bool)
            positions[:, batch.output_image] = targets != blank[None]
            right, counted = _argmax_hits(model, ids, batch, positions, space.image_vocab)
            hits, total = hits + right, total + counted
    return {"drawn_cells": hits / max(1, total)}


def request_of(sample: ShapeSample):
    """The sample as a pipeline request: its instruction and (editing) its rendered input."""
    from paradiff.pipeline import Request

    return Request(
        sample.instruction, None if sample.scene_in is None else render_scene(sample.scene_in)
    )


def answers_of(
    pipe, samples: list[ShapeSample], batch_size: int, **overrides: Any
) -> list[tuple[str, Any]]:
    """(reasoning, image) of each sample (one task), sampled with the model's shipped settings
    (and any SamplerConfig `overrides`)."""
    answers = []
    with eval_mode(pipe.model):
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            task = "edit" if chunk[0].task == "edit" else "generate"
            results = pipe.run(task, [request_of(s) for s in chunk], **overrides)
            answers += [(r.text, r.image) for r in results]
    return answers


def scores_by_task(
    pipe, samples: list[ShapeSample], batch_size: int, **overrides: Any
) -> dict[str, list[dict[str, float]]]:
    """The exact judge's scores of each sample's answer, {"edit": [...], "generation": [...]}
    in the samples' order within each task (answers sampled by `answers_of`)."""
    rows: dict[str, list[dict[str, float]]] = {}
    for task in ("edit", "generation"):
        todo = [s for s in samples if s.task == task]
        answers = answers_of(pipe, todo, batch_size, **overrides)
        rows[task] = [score_sample(s, *a) for s, a in zip(todo, answers, strict=True)]
    return rows


def _mean(values: list[dict[str, float]]) -> dict[str, float]:
    return {m: round(sum(v[m] for v in values) / len(values), 2) for m in METRICS}


# The quick evaluation samples greedily, one answer per prompt, whatever the model ships, so its
# numbers follow the model alone along a training run.
GREEDY = {"text_temperature": 0.0, "image_temperature": 0.0, "best_of": 1}


def quick_evaluation(pipe, limit: int = 60, batch_size: int = 20) -> dict[str, Any]:
    """The six exact metrics (0-100) of the first `limit` ShapeBench prompts, sampled with the
    model's shipped steps, greedy (`GREEDY`): {"overall": {...}, "edit": {...}, ...}."""
    return greedy_evaluation(pipe, list(shapebench_samples())[:limit], batch_size)


def development_evaluation(pipe, limit: int = 60, batch_size: int = 20) -> dict[str, Any]:
    """`quick_evaluation` on the first `limit` prompts of the development split (disjoint from
    ShapeBench): the held-out curve of a training run that may be tuned on it."""
    per_category = -(-limit // sum(len(names) for names in CATEGORIES.values()))
    return greedy_evaluation(pipe, development_samples(per_category)[:limit], batch_size)


def greedy_evaluation(pipe, samples: list[ShapeSample], batch_size: int) -> dict[str, Any]:
    """The six metrics' means over `samples`, sampled greedily (`GREEDY`), overall and by task."""
    rows = scores_by_task(pipe, samples, batch_size, **GREEDY)
    everything = rows["edit"] + rows["generation"]
    return {"overall": _mean(everything), **{t: _mean(v) for t, v in rows.items() if v}}


def handwritten_samples() -> list[ShapeSample]:
    """The hand-written edits: each a seeded sample's scene and answer with a person's words."""
    items = json.loads(HANDWRITTEN_FILE.read_text(encoding="utf-8"))
    return [
        dataclasses.replace(
            make_sample(item["category"], item["seed"], difficulty=2),
            instruction=item["instruction"],
            id=f"handwritten-{number:02d}",
        )
        for number, item in enumerate(items)
    ]


def handwritten_evaluation(pipe, batch_size: int = 10) -> dict[str, Any]:
    """{"count", "exact": % of output scenes exactly right, and the six metrics' means}."""
    samples = handwritten_samples()
    answers = answers_of(pipe, samples, batch_size)
    scores = [score_sample(s, *a) for s, a in zip(samples, answers, strict=True)]
    exact = 0
    for sample, (_, image) in zip(samples, answers, strict=True):
        scene, broken = read_output(image, sample.scene_out.rows, sample.scene_out.cols)
        exact += not broken and scene == sample.scene_out
    return {"count": len(samples), "exact": round(100 * exact / len(samples), 2), **_mean(scores)}


def training_evaluation(pipe, limit: int = 60, probe_limit: int | None = None) -> dict[str, Any]:
    """What the SFT log records every `eval.every` steps: the probe and the quick evaluation."""
    return {
        **location_probe(pipe, probe_limit),
        **drawing_probe(pipe, probe_limit),
        **quick_evaluation(pipe, limit),
    }
