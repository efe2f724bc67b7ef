"""The SFT objective: noise only the answer, text and image with independent mask ratios.

For a clean answer x0 with image part I and text part T, draw t_I, t_T ~ U(0, 1) per example and
mask each image token with probability p_I = (1 - eps) t_I + eps, each text token with
p_T = (1 - eps) t_T + eps (eps keeps p > 0). The model sees x_t and predicts the masked tokens:

    L = (1 / N) * sum_{i masked} w_i * CE(logits_i, x0_i)

with N the number of answer tokens in the (global) batch and
    paper:   w = 1 / p_T on text tokens (the masked-diffusion ELBO weight), w = 1 on image tokens;
    uniform: w = 1 on every masked token.
An edit's output-image tokens that differ from the input image's token at the same place (the cells
the edit changes) may weigh `changed_image_weight` times more: copying the rest is easy and would
otherwise dominate the image loss (w = changed_image_weight there, 1 on copied tokens; 1 = the
paper). A generation has no input to copy, but the same imbalance: its background (the image's most
frequent code) fills most of the picture, so the codes that draw something may weigh
`drawn_image_weight` times more (w = drawn_image_weight there, 1 on the background; 1 = the paper).
A share of the rows (`image_from_text_share`; 0 = the paper) may be drawn at t_T = 0, t_I = 1
instead: the whole reasoning given and the whole image masked, as the image is decoded once its
reasoning is written. With t_I ~ U(0, 1), most masked codes have a visible code of the same object
beside them, which predicts them without the text; these rows leave the text as the only source of
where to draw.
Text positions are scored over the text ids without the mask id, image positions over the image
codes: the candidate sets the sampler draws from (`TokenSpace.text_vocab`, `forbid_mask`,
`image_vocab`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from paradiff.layout import Batch, TokenSpace, image_code_mask
from paradiff.model import MaskPredictor

WEIGHTINGS = ("paper", "uniform")
MIN_MASK_PROB = 1e-3  # eps


@dataclass
class NoisedBatch:
    """A batch with its answer partly masked and the per-position loss weights."""

    ids: torch.Tensor  # (B, L) noised input
    attention_mask: torch.Tensor  # (B, L)
    targets: torch.Tensor  # (B, L) clean ids
    masked: torch.Tensor  # (B, L) bool: masked answer positions (the loss positions)
    weight: torch.Tensor  # (B, L) float: w_i at masked positions, 0 elsewhere
    is_text: torch.Tensor  # (B, L) bool: text answer positions
    answer_tokens: int  # answer positions of the batch (N of the loss for this batch alone)

    def to(self, device: torch.device | str) -> NoisedBatch:
        tensors = ("ids", "attention_mask", "targets", "masked", "weight", "is_text")
        return dataclasses.replace(
            self, **{name: getattr(self, name).to(device) for name in tensors}
        )


def mask_probability(t: torch.Tensor, eps: float = MIN_MASK_PROB) -> torch.Tensor:
    """p = (1 - eps) t + eps."""
    return (1 - eps) * t + eps


def changed_output_codes(batch: Batch, space: TokenSpace) -> torch.Tensor:
    """(B, h*w) bool: output-image codes that differ from the input image's code at the same
    raster index; all False for rows without an input image of the output's size."""
    prompt = batch.ids[:, : batch.answer_start]  # (B, P): system, input image, instruction
    inside = image_code_mask(prompt, space)  # (B, P)
    output = batch.ids[:, batch.output_image]  # (B, h*w)
    changed = torch.zeros_like(output, dtype=torch.bool)
    for row in range(len(prompt)):
        codes = prompt[row][inside[row]]  # the input image's codes in raster order
        if codes.numel() == output.shape[1]:
            changed[row] = codes != output[row]
    return changed


def drawn_output_codes(batch: Batch, space: TokenSpace) -> torch.Tensor:
    """(B, h*w) bool: for rows without an input image (generations), the output codes other than
    the image's most frequent code (its background); all False for edits."""
    prompt = batch.ids[:, : batch.answer_start]  # (B, P)
    has_input = image_code_mask(prompt, space).any(1)  # (B,)
    output = batch.ids[:, batch.output_image]  # (B, h*w)
    background = output.mode(dim=1).values  # (B,) the most frequent code of each row
    return (output != background[:, None]) & ~has_input[:, None]


@dataclass(frozen=True)
class NoiseSettings:
    """How `noise_batch` masks and weighs an answer; the defaults are the paper's objective.
    The field names are the SFT recipe's `train.` keys."""

    loss_weighting: str = "paper"  # paper (w = 1/p_T on text) or uniform
    changed_image_weight: float = 1.0  # w on the output codes an edit changes
    drawn_image_weight: float = 1.0  # w on a generation's codes other than its background
    image_from_text_share: float = 0.0  # rows drawn at t_T = 0, t_I = 1

    def __post_init__(self) -> None:
        if self.loss_weighting not in WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {WEIGHTINGS}")
        for name in ("changed_image_weight", "drawn_image_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.image_from_text_share <= 1:
            raise ValueError(
                f"image_from_text_share must be in [0, 1], got {self.image_from_text_share}"
            )


def noise_batch(
    batch: Batch,
    space: TokenSpace,
    generators: list[torch.Generator],
    settings: NoiseSettings = NoiseSettings(),
) -> NoisedBatch:
    """Mask the answer of every row with its own generator (so a row's noise does not depend on
    which batch or process it lands in)."""
    B, L = batch.ids.shape
    image_pos, text_pos = batch.output_image, batch.text
    image_weight = torch.ones(B, len(image_pos))  # (B, h*w)
    if settings.changed_image_weight != 1.0:
        image_weight[changed_output_codes(batch, space)] = settings.changed_image_weight
    if settings.drawn_image_weight != 1.0:
        image_weight[drawn_output_codes(batch, space)] = settings.drawn_image_weight
    share = settings.image_from_text_share
    masked = torch.zeros(B, L, dtype=torch.bool)
    weight = torch.zeros(B, L)
    for row, gen in enumerate(generators):
        t_image, t_text = torch.rand(2, generator=gen)
        p_image, p_text = mask_probability(t_image), mask_probability(t_text)
        masked[row, image_pos] = torch.rand(len(image_pos), generator=gen) < p_image
        masked[row, text_pos] = torch.rand(len(text_pos), generator=gen) < p_text
        if share and torch.rand((), generator=gen) < share:
            masked[row, image_pos], masked[row, text_pos] = True, False  # t_I = 1, t_T = 0
        weight[row, image_pos] = image_weight[row]
        weight[row, text_pos] = 1.0 / p_text if settings.loss_weighting == "paper" else 1.0
    weight = weight * masked
    is_text = torch.zeros(B, L, dtype=torch.bool)
    is_text[:, text_pos] = True
    return NoisedBatch(
        ids=torch.where(masked, space.mask_id, batch.ids),
        attention_mask=batch.attention_mask,
        targets=batch.ids,
        masked=masked,
        weight=weight,
        is_text=is_text,
        answer_tokens=B * (len(image_pos) + len(text_pos)),
    )


@dataclass
class LossParts:
    """Sums over one micro-batch: weighted CE (the loss numerator), plain CE and counts per
    modality (for logging)."""

    weighted: torch.Tensor  # scalar, differentiable
    text_ce: float
    text_count: int
    image_ce: float
    image_count: int


def masked_diffusion_loss(
    model: MaskPredictor, noised: NoisedBatch, space: TokenSpace
) -> LossParts:
    """sum_i w_i CE_i over the masked positions (divide by N for the loss)."""
    hidden = model.hidden_states(noised.ids, noised.attention_mask)  # (B, L, d)
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])  # (B*L, d)
    masked = noised.masked.reshape(-1)
    targets, weight = noised.targets.reshape(-1), noised.weight.reshape(-1)
    is_text = noised.is_text.reshape(-1)
    weighted = hidden.new_zeros((), dtype=torch.float32)
    ce_sums: dict[bool, tuple[float, int]] = {}
    ranges = {True: space.text_vocab, False: space.image_vocab}
    for text, (start, stop) in ranges.items():
        where = (masked & (is_text == text)).nonzero().squeeze(1)  # (M,)
        if where.numel() == 0:
            ce_sums[text] = (0.0, 0)
            continue
        logits = model.logits(flat_hidden[where][None], vocab_range=(start, stop))[0].float()
        if text:
            space.forbid_mask(logits)  # (M, V') the sampler's candidates: never the mask id
        ce = F.cross_entropy(logits, targets[where] - start, reduction="none")  # (M,)
        weighted = weighted + (ce * weight[where]).sum()
        ce_sums[text] = (float(ce.detach().sum()), int(where.numel()))
    return LossParts(weighted, *ce_sums[True], *ce_sums[False])
