"""The shapes world's exact ParaRL reward, registered with the core as `reward.kind:
scene_agreement` (pyproject.toml's `paradiff.rewards` entry point)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paradiff.shapes.image_tokenizer import ShapesImageTokenizer, shapes_tokenizer
from paradiff.shapes.judge import f1
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
        if state.record is None:
            raise RewardError("scene agreement needs the prompt's record in every state")
        base = ShapeSample.from_json(state.record).base_scene
        codes = state.codes.long().cpu()  # (h, w), -1 still masked
        if tuple(codes.shape) != (2 * base.rows, 2 * base.cols):
            raise RewardError(
                f"code grid {tuple(codes.shape)} does not fit a {base.rows}x{base.cols} scene"
            )
        base_codes = self.tokenizer.scene_to_codes(base)  # b(q)
        reading = parse_reasoning(state.text, base.rows, base.cols)
        claimed_codes = self.tokenizer.scene_to_codes(reading.apply(base))  # t(q)
        revealed = codes >= 0
        claimed = _pairs(claimed_codes, revealed & (claimed_codes != base_codes))
        visible = _pairs(codes, revealed & (codes != base_codes))
        return f1(claimed, visible)

    @classmethod
    def build(cls, clip_dir: str | None = None, device="cpu") -> SceneAgreementReward:
        """The registry's factory: the reward needs no files and runs on the CPU."""
        return cls()


def _pairs(codes: torch.Tensor, where: torch.Tensor) -> set[tuple[int, int, int]]:
    """{(row, col, code)} of the code grid at the True positions of `where`."""
    return {(r, c, int(codes[r, c])) for r, c in where.nonzero().tolist()}
