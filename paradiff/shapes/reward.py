"""The shapes world's exact ParaRL rewards, registered with the core as `reward.kind:
scene_agreement` and `reward.kind: shapes_judge` (pyproject.toml's `paradiff.rewards` entry
points)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from paradiff.bench.items import METRICS
from paradiff.shapes.image_tokenizer import ShapesImageTokenizer, shapes_tokenizer
from paradiff.shapes.judge import f1, score_sample
from paradiff.shapes.parser import parse_reasoning
from paradiff.shapes.sample import ShapeSample
from paradiff.training.rewards import PartialState, RewardError


class SceneAgreementReward:
    """Exact agreement of a partial shapes-world answer, in [0, 1], quadrant by quadrant.

    With the base scene B (the input for editing, empty for generation) as a code grid b(q), the
    quadrants Q revealed so far with their codes c(q), the scene the partial reasoning claims
    (B with the changes of the sentences parsed so far) as codes t(q):

        score = F1({(q, t(q)) : q in Q, t(q) != b(q)},  {(q, c(q)) : q in Q, c(q) != b(q)})

    so a cell counts from the quadrants revealed so far and intermediate states of a trajectory
    carry signal (the judge's output alignment at quadrant level, restricted to what both
    modalities show so far; 0 when either side is empty). States need the prompt's record
    (`ShapeSample.from_json` reads it).
    """

    name = "scene_agreement"

    def __init__(self, tokenizer: ShapesImageTokenizer | None = None) -> None:
        self.tokenizer = tokenizer or shapes_tokenizer()

    def score(self, states: Sequence[PartialState]) -> torch.Tensor:
        return torch.tensor([self.agreement(state) for state in states], dtype=torch.float32)

    def agreement(self, state: PartialState) -> float:
        sample, codes = sample_and_codes(state, "scene agreement")
        base = sample.base_scene
        base_codes = self.tokenizer.scene_to_codes(base)  # b(q)
        reading = parse_reasoning(state.text, base.rows, base.cols)
        claimed_codes = self.tokenizer.scene_to_codes(reading.apply(base))  # t(q)
        revealed = codes >= 0
        claimed = _pairs(claimed_codes, revealed & (claimed_codes != base_codes))
        visible = _pairs(codes, revealed & (codes != base_codes))
        return f1(claimed, visible)

    @classmethod
    def build(cls, settings: Mapping[str, Any], device="cpu") -> SceneAgreementReward:
        """The registry's factory: the reward needs no settings and runs on the CPU."""
        return cls()


class JudgeReward:
    """The exact judge's verdict on an answer, a weighted mean of its six metrics in [0, 1]:

        score = sum_m w_m * metric_m / 100 / sum_m w_m

    with partial credit per cell (the alignments are F1 scores over cells). A partial state is
    judged as if its still-masked quadrants showed the base scene (the input for editing, the
    empty canvas for generation): only what was revealed counts as a change. States need the
    prompt's record (`ShapeSample.from_json` reads it), which holds the ground truth."""

    name = "shapes_judge"

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        tokenizer: ShapesImageTokenizer | None = None,
    ) -> None:
        weights = dict.fromkeys(METRICS, 1.0) if weights is None else dict(weights)
        unknown = sorted(set(weights) - set(METRICS))
        if unknown:
            raise RewardError(f"reward.metrics: unknown metric {unknown[0]!r} (one of {METRICS})")
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                raise RewardError(f"reward.metrics.{name} must be a weight >= 0, got {weight!r}")
        if not sum(weights.values()) > 0:
            raise RewardError("reward.metrics needs a positive weight on at least one metric")
        self.weights = {name: float(w) for name, w in weights.items() if w}
        self.tokenizer = tokenizer or shapes_tokenizer()

    def score(self, states: Sequence[PartialState]) -> torch.Tensor:
        return torch.tensor([self.verdict(state) for state in states], dtype=torch.float32)

    def verdict(self, state: PartialState) -> float:
        sample, codes = sample_and_codes(state, "the judge reward")
        base = sample.base_scene
        codes = torch.where(codes >= 0, codes, self.tokenizer.scene_to_codes(base))
        metrics = score_sample(sample, state.text, codes, self.tokenizer)
        total = sum(self.weights.values())
        return sum(w * metrics[name] for name, w in self.weights.items()) / (100 * total)

    @classmethod
    def build(cls, settings: Mapping[str, Any], device="cpu") -> JudgeReward:
        """The registry's factory: `reward.metrics` ({metric: weight}; all six equally when
        unset)."""
        metrics = settings.get("metrics")
        if metrics is not None and not isinstance(metrics, Mapping):
            raise RewardError(f"reward.metrics must map metric names to weights, got {metrics!r}")
        return cls(metrics)


def sample_and_codes(state: PartialState, reward: str) -> tuple[ShapeSample, torch.Tensor]:
    """The state's prompt as a `ShapeSample` (from its record) and its code grid (h, w) on the
    CPU, -1 where still masked; RewardError naming `reward` when the record is missing or the
    grid does not fit the scene."""
    if state.record is None:
        raise RewardError(f"{reward} needs the prompt's record in every state")
    sample = ShapeSample.from_json(state.record)
    base = sample.base_scene
    codes = state.codes.long().cpu()
    if tuple(codes.shape) != (2 * base.rows, 2 * base.cols):
        raise RewardError(
            f"code grid {tuple(codes.shape)} does not fit a {base.rows}x{base.cols} scene"
        )
    return sample, codes


def _pairs(codes: torch.Tensor, where: torch.Tensor) -> set[tuple[int, int, int]]:
    """{(row, col, code)} of the code grid at the True positions of `where`."""
    return {(r, c, int(codes[r, c])) for r, c in where.nonzero().tolist()}
