"""The shapes world's exact ParaRL reward, registered with the core as `reward.kind:
scene_agreement` (pyproject.toml's `paradiff.rewards` entry point)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paradiff.shapes.image_tokenizer import EMPTY_CODE, ShapesImageTokenizer, shapes_tokenizer
from paradiff.shapes.judge import BROKEN, f1
from paradiff.shapes.parser import parse_reasoning
from paradiff.shapes.sample import ShapeSample
from paradiff.training.rewards import PartialState, RewardError


class SceneAgreementReward:
    """Exact agreement of a partial shapes-world answer, in [0, 1].

    With the base scene B (the input for editing, empty for generation), the cells V whose four
    codes are all revealed, the image's content c(p) of a revealed cell (an object, empty or
    broken) and the changes the partial reasoning claims T = {(p, content)}:

        score = F1({(p, content) in T : p in V},  {(p, c(p)) : p in V, c(p) != B(p)})

    (the judge's output alignment, restricted to what both modalities show so far; 0 when
    either side is empty). States need the prompt's record (`ShapeSample.from_json` reads it).
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
        codes = state.codes.long().cpu()
        h, w = codes.shape
        if (h, w) != (2 * base.rows, 2 * base.cols):
            raise RewardError(f"code grid {h}x{w} does not fit a {base.rows}x{base.cols} scene")
        revealed_cells = (codes >= 0).view(base.rows, 2, base.cols, 2).all(3).all(1)
        scene, broken = self.tokenizer.codes_to_scene(codes.clamp(min=EMPTY_CODE))
        broken = set(broken)
        visible = set()
        for pos in base.positions():
            if revealed_cells[pos]:
                content = BROKEN if pos in broken else scene.get(pos)
                if content != base.get(pos):
                    visible.add((pos, content))
        reading = parse_reasoning(state.text, base.rows, base.cols)
        claimed = {(pos, c) for pos, c in reading.changes.items() if revealed_cells[pos]}
        return f1(claimed, visible)

    @classmethod
    def build(cls, clip_dir: str | None = None, device="cpu") -> SceneAgreementReward:
        """The registry's factory: the reward needs no files and runs on the CPU."""
        return cls()
