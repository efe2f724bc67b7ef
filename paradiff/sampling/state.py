"""One sampler run's state: its batch and ids, each row's randomness, the image schedule's
counts, the trajectory so far and what the forwards computed; and the run's result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from paradiff.layout import Batch
from paradiff.sampling.config import SamplerConfig
from paradiff.sampling.plan import StepPlan
from paradiff.sampling.schedules import halton_order


@dataclass
class SampleOutput:
    """Final tokens of the conditional rows and the trajectory of their answer part.

    trajectory[s] is the answer part (columns `answer_start`..) after s steps; trajectory[0] is
    the fully masked start, trajectory[-1] the result.
    """

    ids: torch.Tensor  # (B, L)
    text_tokens: torch.Tensor  # (B, N)
    image_codes: torch.Tensor  # (B, h, w)
    trajectory: torch.Tensor  # (T + 1, B, A) int32
    answer_start: int
    plan: list[StepPlan]
    forward_rows: int  # sequences run through the model, summed over steps
    forward_positions: int = 0  # positions computed (over rows and steps); full: rows x L


def row_generators(seeds: Sequence[int] | None, device: torch.device) -> list[torch.Generator]:
    """One generator per row, so a row's randomness does not depend on its batch."""
    gens = []
    for seed in seeds or []:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
        gens.append(gen)
    return gens


def halton_rank(grid: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Each image position's place (P,) in the Halton order of a grid."""
    order = torch.tensor(halton_order(*grid), device=device)
    places = torch.arange(len(order), device=device)
    return torch.empty_like(order).scatter_(0, order, places)


@dataclass
class RunState:
    """One sampler run over `batch` (on the model's device): the conditional rows first, their
    unconditional twins (if any) after; `ids` (R, L) is written step by step."""

    batch: Batch
    ids: torch.Tensor  # (R, L)
    gens: list[torch.Generator]  # one per conditional row, or none (the global RNG)
    block_length: int
    mask_id: int
    masked_at_start: list[int]  # per conditional row: output-image positions masked
    image_keep: dict[float, torch.Tensor]  # image progress -> (B,) positions left masked after
    image_rank: torch.Tensor | None  # image_order 'halton': each position's place (P,)
    trajectory: list[torch.Tensor] = field(default_factory=list)
    forward_rows: int = 0  # sequences run through the model, summed over steps
    forward_positions: int = 0

    @classmethod
    def start(
        cls,
        batch: Batch,
        plan: list[StepPlan],
        config: SamplerConfig,
        seeds: Sequence[int] | None,
        mask_id: int,
        device: torch.device,
    ) -> RunState:
        """The state before the first step; records it as the trajectory's first entry."""
        batch = batch.to(device)
        gens = row_generators(seeds, device)
        if gens and len(gens) != batch.n_cond:
            raise ValueError(f"{len(gens)} seeds for {batch.n_cond} rows")
        ids = batch.ids.clone()
        masked = (ids[: batch.n_cond, batch.output_image] == mask_id).sum(1).tolist()
        keep = {
            p.image: torch.tensor([p.image_masked(n) for n in masked], device=device)
            for p in plan
            if p.image is not None
        }
        rank = halton_rank(batch.grid, device) if config.image_order == "halton" else None
        run = cls(batch, ids, gens, config.text_block_length, mask_id, masked, keep, rank)
        run.record()
        return run

    @property
    def n_cond(self) -> int:
        return self.batch.n_cond

    @property
    def guided(self) -> bool:
        """Whether the batch carries unconditional twins."""
        return self.batch.n_uncond > 0

    def text_block(self, text: tuple[int, int]) -> torch.Tensor:
        """The sequence positions (P,) of the text block a step's `text` plan opens."""
        return self.batch.text[text[0] * self.block_length : (text[0] + 1) * self.block_length]

    def image_now(self) -> torch.Tensor:
        """The conditional rows' output image (B, P) as it stands."""
        return self.ids[: self.n_cond, self.batch.output_image]

    def share_answers(self) -> None:
        """Copy the conditional rows' answer parts into their unconditional twins."""
        start, n = self.batch.answer_start, self.n_cond
        self.ids[n:, start:] = self.ids[:n, start:]

    def count(self, rows: int, positions: int) -> None:
        """Account one step's forward: `rows` sequences, `positions` positions computed."""
        self.forward_rows += rows
        self.forward_positions += positions

    def record(self) -> None:
        """Append the conditional rows' answer parts to the trajectory."""
        answer = self.ids[: self.n_cond, self.batch.answer_start :]
        self.trajectory.append(answer.to(torch.int32, copy=True))

    def output(self, plan: list[StepPlan], image_offset: int) -> SampleOutput:
        n, (h, w) = self.n_cond, self.batch.grid
        return SampleOutput(
            ids=self.ids[:n],
            text_tokens=self.ids[:n, self.batch.text],
            image_codes=(self.ids[:n, self.batch.output_image] - image_offset).view(-1, h, w),
            trajectory=torch.stack(self.trajectory).cpu(),
            answer_start=self.batch.answer_start,
            plan=plan,
            forward_rows=self.forward_rows,
            forward_positions=self.forward_positions,
        )
