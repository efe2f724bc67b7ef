"""The exact judge: ParaBench's six metrics computed on the shapes world, 0-100 per sample.

With the base scene B (the input for editing, an empty grid for generation), the image's cells
I (each an object, empty, or *broken*), the text's claimed changes T = {(cell, content)} and, for
editing, the required changes R = {(cell, content) : input and target differ}:

- text quality     100 * parsed sentences / sentences * distinct sentences / sentences
- text alignment   editing: F1(T, R); generation: fraction of constraints the text's scene meets
- image quality    100 * fraction of cells that are not broken
- image alignment  editing: F1 of the image's changes *within the cells R touches* against R;
                   generation: fraction of constraints the image's scene meets
- image consistency editing: fraction of the cells R does not touch left as in the input;
                   generation: fraction of the cells the prompt leaves empty (all but the
                   required object count) that the image leaves empty
- output alignment F1(T, changes visible in the image against B)

F1 of two empty sets is 0 and a scene without objects meets no constraint set, so doing nothing
scores nothing: copying the input gets 0 image alignment (and 100 consistency).

An edit whose instruction names something absent (the `absent` kind of
`paradiff.shapes.reference_edits`: R is empty, the target is the input) is scored by what the
right answer does, saying so and changing nothing. With A the absences the sample's own
reasoning states ("There is no circle." -> no circle; "Row 2, column 3 is empty." -> that cell)
and A' those the answer's text states:

- text alignment   F1(A', A) when the text claims no change, else 0
- image alignment  100 when the image shows no change against the input (no broken cell), else 0
- image consistency as above (every cell is untouched)
- output alignment 100 when the text states an absence and neither it nor the image changes
                   anything, else F1(T, image changes) (0 when only one of them changes)

So the oracle scores 100, and copying the input without saying why scores 0 on both texts'
metrics and output alignment (100 image alignment and consistency: the image is right). Only
samples with an empty R take this rule; every other category's R is never empty
(`paradiff.shapes.tasks.check_draft`), so their scores are as before (save the text quality of
an answer that writes one of the opt-in kinds' sentences, which the parser now reads, after every
older template). An ambiguous name needs
no rule of its own: its target is the first object in reading order, and R is that edit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from PIL import Image

from paradiff.bench.items import METRICS
from paradiff.shapes.constraints import constraint_score, required_total
from paradiff.shapes.image_tokenizer import ShapesImageTokenizer, shapes_tokenizer
from paradiff.shapes.parser import parse_reasoning
from paradiff.shapes.sample import ShapeSample
from paradiff.shapes.scene import Obj, Pos, Scene

BROKEN = "broken"  # the content of a cell whose quadrants do not form one object

Content = Obj | None | str


class JudgeError(ValueError):
    """An output the judge cannot read (wrong grid size, unknown type)."""


def f1(predicted: set, required: set) -> float:
    """F1 between two sets of claims, in [0, 1]; 0 when either is empty."""
    hits = len(predicted & required)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(predicted), hits / len(required)
    return 2 * precision * recall / (precision + recall)


def read_output(
    output: Any, rows: int, cols: int, tokenizer: ShapesImageTokenizer | None = None
) -> tuple[Scene, list[Pos]]:
    """An output image as (scene of its well-formed cells, broken cells).

    `output` may be a Scene, a code grid (2 rows, 2 cols) of image codes (tensor, array or
    nested lists; codes, not token ids), a PIL image, or a float image tensor (3, H, W) in [0, 1].
    """
    if isinstance(output, Scene):
        if (output.rows, output.cols) != (rows, cols):
            raise JudgeError(f"output scene is {output.rows}x{output.cols}, expected {rows}x{cols}")
        return output, []
    tokenizer = tokenizer or shapes_tokenizer()
    if isinstance(output, Image.Image):
        codes = tokenizer.image_to_codes(output, rows, cols)
    elif isinstance(output, torch.Tensor) and output.is_floating_point():
        if output.dim() != 3:
            raise JudgeError(f"expected an image (3, H, W), got shape {tuple(output.shape)}")
        codes = tokenizer.encode(output[None])[0]
    elif isinstance(output, torch.Tensor):
        codes = output.detach().cpu().long()
    else:
        try:
            codes = torch.as_tensor(np.asarray(output), dtype=torch.long)
        except (TypeError, ValueError) as err:
            raise JudgeError(f"cannot read {type(output).__name__} as a code grid: {err}") from None
    if tuple(codes.shape) != (2 * rows, 2 * cols):
        raise JudgeError(f"code grid {tuple(codes.shape)} does not fit a {rows}x{cols} scene")
    return tokenizer.codes_to_scene(codes)


def _contents(scene: Scene, broken: Iterable[Pos]) -> dict[Pos, Content]:
    broken = set(broken)
    return {pos: BROKEN if pos in broken else scene.get(pos) for pos in scene.positions()}


def score_sample(
    sample: ShapeSample,
    reasoning_text: str,
    output: Any,
    tokenizer: ShapesImageTokenizer | None = None,
) -> dict[str, float]:
    """The six metrics (0-100) of one answer: its reasoning text and its output image."""
    rows, cols = sample.scene_out.rows, sample.scene_out.cols
    image_scene, broken = read_output(output, rows, cols, tokenizer)
    image = _contents(image_scene, broken)
    base = sample.base_scene
    reading = parse_reasoning(reasoning_text, rows, cols)
    claimed = set(reading.changes.items())
    image_changes = {(pos, content) for pos, content in image.items() if content != base.get(pos)}
    scores = {
        "text_quality": reading.parse_score * reading.distinct_ratio,
        "image_quality": 1 - len(broken) / (rows * cols),
        "output_alignment": f1(claimed, image_changes),
    }
    if sample.task == "edit":
        required = set(sample.required_changes().items())
        touched = {pos for pos, _ in required}
        untouched = [pos for pos in base.positions() if pos not in touched]
        kept = sum(image[pos] == base.get(pos) for pos in untouched)
        scores["text_alignment"] = f1(claimed, required)
        scores["image_alignment"] = f1({c for c in image_changes if c[0] in touched}, required)
        scores["image_consistency"] = kept / len(untouched) if untouched else 1.0
        if not required:  # the instruction names something absent (the rule above)
            scores.update(_absent_scores(sample, reading.absent, claimed, image_changes))
    else:
        scores["text_alignment"] = constraint_score(sample.constraints, reading.apply(base))
        scores["image_alignment"] = constraint_score(sample.constraints, image_scene)
        needed = required_total(sample.constraints)
        drawn = sum(content is not None for content in image.values())
        free = rows * cols - needed
        scores["image_consistency"] = 1 - max(0, drawn - needed) / free if free else 1.0
    return {name: 100.0 * scores[name] for name in METRICS}


def _absent_scores(
    sample: ShapeSample, stated: list, claimed: set, image_changes: set
) -> dict[str, float]:
    """Text, image and output alignment of an answer to a prompt naming something absent."""
    out = sample.scene_out
    required = set(parse_reasoning(sample.reasoning, out.rows, out.cols).absent)
    agree = bool(stated) and not claimed and not image_changes
    return {
        "text_alignment": f1(set(stated), required) if not claimed else 0.0,
        "image_alignment": float(not image_changes),
        "output_alignment": 1.0 if agree else f1(claimed, image_changes),
    }


def exact_match(
    sample: ShapeSample, output: Any, tokenizer: ShapesImageTokenizer | None = None
) -> bool:
    """Whether an output image is exactly the sample's target scene (no broken cell)."""
    rows, cols = sample.scene_out.rows, sample.scene_out.cols
    scene, broken = read_output(output, rows, cols, tokenizer)
    return not broken and scene == sample.scene_out
