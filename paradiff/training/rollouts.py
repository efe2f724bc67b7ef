"""ParaRL rollouts: prompts from training records, sampled with the parallel sampler, trajectories
recorded, and the partial answers along them scored by a reward."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from paradiff.layout import Batch
from paradiff.model import eval_mode
from paradiff.pipeline import ParallelPipeline, Request, decode_partial_image
from paradiff.sampling import ParallelSampler, SamplerConfig
from paradiff.training.recipe import RecipeError
from paradiff.training.records import read_records, records_file_problem
from paradiff.training.rewards import PartialState, Reward


@dataclass
class Rollouts:
    """A batch of sampled answers, G consecutive rows per prompt when grouped.

    trajectory[t] (B, A) is the answer part (columns answer_start..) after t steps: [0] fully
    masked, [-1] the answer. `steps` are the scored step indices: step t's result is
    trajectory[t + 1]."""

    batch: Batch
    answer_start: int
    trajectory: torch.Tensor  # (T + 1, B, A) int32
    records: list[dict[str, Any]]
    steps: list[int]

    def rows(self, keep: torch.Tensor) -> Rollouts:
        """The rollouts of the rows `keep` (B,) bool marks (an unguided batch's)."""
        batch = replace(
            self.batch, ids=self.batch.ids[keep], attention_mask=self.batch.attention_mask[keep]
        )
        records = [r for r, k in zip(self.records, keep.tolist(), strict=True) if k]
        return Rollouts(batch, self.answer_start, self.trajectory[:, keep], records, self.steps)


def load_records(path: str | Path, limit: int | None = None) -> tuple[list[dict[str, Any]], Path]:
    """The prompt pool: records of a JSONL file (the first `limit`), and the folder their
    images are relative to."""
    path = Path(path)
    problem = records_file_problem(path)
    if problem:
        raise RecipeError(problem)
    records = []
    for number, record in read_records(path):
        if limit is not None and len(records) >= int(limit):
            break
        if isinstance(record, str):
            raise RecipeError(f"{path} line {number} is {record}")
        if not record.get("user_prompt"):
            raise RecipeError(f"{path} line {number} has no user_prompt")
        records.append(record)
    if not records:
        raise RecipeError(f"{path} holds no records")
    return records, path.parent


class RolloutSampler:
    """Samples answers to records with one pipeline and shows states as `PartialState`s."""

    def __init__(self, pipe: ParallelPipeline, config: SamplerConfig, image_root: Path) -> None:
        self.pipe = pipe
        self.config = config
        self.image_root = image_root

    def sample(self, records: list[dict[str, Any]], seeds: list[int], steps: list[int]) -> Rollouts:
        """One answer per record (row b drawn with seeds[b]), in eval mode, no gradients."""
        pipe = self.pipe
        sequences = []
        for record in records:
            image = record.get("user_image")
            task = "edit" if image else "generate"
            request = Request(record["user_prompt"], self.image_root / image if image else None)
            sequences.append(pipe.build_sequences(task, request, self.config)[0])
        batch = pipe.layout.collate(sequences)
        with eval_mode(pipe.model):
            out = ParallelSampler(pipe.model, pipe.space, self.config)(batch, seeds=seeds)
        return Rollouts(batch, out.answer_start, out.trajectory, records, steps)

    def partial_states(self, rollouts: Rollouts, index: int) -> list[PartialState]:
        """The answers in trajectory[index]: reasoning with the still-masked tokens dropped,
        image decoded from the revealed codes with masked patches grey."""
        pipe, space = self.pipe, self.pipe.space
        states = rollouts.trajectory[index].long()  # (B, A)
        start = rollouts.answer_start
        text = states[:, rollouts.batch.text.cpu() - start]  # (B, N)
        image = states[:, rollouts.batch.output_image.cpu() - start]  # (B, h w)
        codes = torch.where(image == space.mask_id, -1, image - space.image_offset)
        h, w = rollouts.batch.grid
        pixels = decode_partial_image(pipe.image_tokenizer, space, image.view(-1, h, w))
        return [
            PartialState(
                text=pipe.decode_reasoning(text[i][text[i] != space.mask_id]),
                codes=codes[i].view(h, w),
                image=pixels[i],
                record=rollouts.records[i],
            )
            for i in range(states.shape[0])
        ]

    def raw_scores(
        self, reward: Reward, rollouts: Rollouts, at: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw rewards (B, S) at the scored steps — every one the final answer's for `at` =
        'final' (output-level RL) — and the final answers' raw rewards (B,)."""
        final = reward.score(self.partial_states(rollouts, -1))
        if at == "final":
            return final[:, None].expand(-1, len(rollouts.steps)).clone(), final
        scores = [reward.score(self.partial_states(rollouts, t + 1)) for t in rollouts.steps]
        return torch.stack(scores, 1), final
