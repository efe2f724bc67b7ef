"""The forward each step runs: the exact full forward, or the fast settings' cached one.

`step_forward` picks one per run. `FullForward` runs every position of the rows the step needs.
`CachedForward` (cached keys/values, partial passes, reused guidance) takes approximations of the exact step (a full forward of every row each step), each a setting:
- `cache_refresh` r: every r-th step runs the full forward and refills the key/value cache; the
  steps between compute only the positions the step decodes (the open text block, the output
  image) against the cached keys/values of the rest: the prompt and input image (a prefix cache),
  the closed text blocks and the image on text steps (Fast-dLLM's dual cache), the text on image
  steps. The positions computed write their fresh keys/values into the cache.
- `answer_refresh` a: every a-th step between the full forwards computes the whole answer (every
  text position, the whole output image and the answer's fixed tokens) against the cached prefix
  (prompt and input image), so the closed text blocks and the codes revealed earlier get fresh
  keys/values without recomputing the prefix.
- `image_recompute` 'active': the image positions computed between full forwards are only those
  still masked before the previous image step (the ML-Cache / dLLM-Cache pattern): the ones the
  step reads, and the ones the previous image step revealed, whose cached keys/values are still
  the mask token's; a code revealed earlier keeps its keys/values until the next full forward.
- `uncond_recompute` 'guided': the unconditional rows' partial forwards compute only the positions
  of the modalities they guide (the image, and the text block when text guidance is on).
- `guidance_reuse` k: the unconditional rows run on every k-th guided step only; between, the
  guidance residual d = h_c - h_u of the last one stands in: h_u := h_c - d, so the guided
  hidden state l_u + (1 + w)(h_c - h_u) is h_c + w d.
Everything stays on the device: the number of positions per step is fixed by the schedule (no
data-dependent shape), so the loop needs no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from paradiff.model import MaskPredictor
from paradiff.sampling.config import SamplerConfig
from paradiff.sampling.plan import StepPlan, step_refresh
from paradiff.sampling.state import RunState

Forward = Callable[[int, StepPlan, bool], tuple[torch.Tensor, int, int]]


def step_forward(
    model: MaskPredictor, config: SamplerConfig, run: RunState, plan: list[StepPlan]
) -> Forward:
    """The forward of one run: `forward(step, step_plan, with_uncond)` returns the hidden states
    (R, L, d) the step reads, the rows and the positions it computed."""
    if config.fast:
        return CachedForward(model, config, run, plan)
    return FullForward(model, run)


class FullForward:
    """The exact step's forward: every position of the conditional rows, and of their
    unconditional twins when the step is guided."""

    def __init__(self, model: MaskPredictor, run: RunState) -> None:
        self.model, self.run = model, run

    def __call__(self, step: int, plan: StepPlan, with_uncond: bool):
        run = self.run
        rows = 2 * run.n_cond if with_uncond else run.n_cond
        hidden = self.model.hidden_states(run.ids[:rows], run.batch.attention_mask[:rows])
        return hidden, rows, rows * run.ids.shape[1]


class CachedForward:
    """The hidden states (R, L, d) each step reads, for one sampler run, with the fast settings."""

    def __init__(
        self, model: MaskPredictor, config: SamplerConfig, run: RunState, plan: list[StepPlan]
    ):
        self.model, self.config, self.run = model, config, run
        self.batch, self.n_cond = run.batch, run.n_cond
        self.active = None  # image_recompute 'active' (validated to come with cache_refresh)
        if config.image_recompute == "active":
            steps = [p for p in plan if p.image is not None]
            self.active = ActiveImage(run.batch.output_image, run.masked_at_start, steps)
        rows, length = run.batch.ids.shape
        self.hidden = torch.zeros(rows, length, model.config.d_model, device=model.device)
        self.hidden = self.hidden.to(model.dtype)  # the newest hidden state of every position
        self.cache = model.new_cache(rows, length) if config.cache_refresh else None
        self.filled_rows = 0  # rows whose cache a full forward has filled
        answer = torch.arange(run.batch.answer_start, length, device=run.ids.device)
        self.answer_rest = answer[~torch.isin(answer, run.batch.output_image)]  # text and fixed
        self.residual: torch.Tensor | None = None  # (n_cond, L, d) h_c - h_u
        self.guided_steps = 0
        forward = model.partial_hidden_states
        if config.compile and model.device.type == "cuda":
            forward = torch.compile(forward, dynamic=True)
        self.forward = forward

    def __call__(self, step: int, plan: StepPlan, wants_uncond: bool):
        """Hidden states for step `step` of the run's ids; the step reads the open text block and
        the output image (all of it, or with `image_recompute` 'active' the active positions).
        Returns (hidden (R, L, d), rows computed, positions computed)."""
        run = self.run
        text_at = run.text_block(plan.text) if plan.text else None
        image_at = run.batch.output_image if plan.image is not None else None
        if image_at is not None and self.active is not None:
            image_at = self.active.positions(run.image_now() == run.mask_id)
        if step_refresh(step, self.config) == "answer":  # the whole answer against the prefix
            text_at, image_at = self.answer_rest, run.batch.output_image
        return self._hidden(step, run.ids, wants_uncond, text_at, image_at)

    def _hidden(
        self,
        step: int,
        ids: torch.Tensor,
        wants_uncond: bool,
        text_at: torch.Tensor | None,
        image_at: torch.Tensor | None,
    ) -> tuple[torch.Tensor, int, int]:
        """Hidden states for step `step` of `ids` (R, L); the step reads the open text block's
        positions `text_at` (P,) and the output image's `image_at` (P,) or per row (B, P), or
        None."""
        cfg, n = self.config, self.n_cond
        run_uncond = wants_uncond and (
            cfg.guidance_reuse == 0 or self.guided_steps % cfg.guidance_reuse == 0
        )
        self.guided_steps += wants_uncond
        rows = 2 * n if run_uncond else n
        length = ids.shape[1]
        full = step_refresh(step, cfg) == "full" or rows > self.filled_rows
        if full and self.cache is not None and self.filled_rows == 0:
            rows = ids.shape[0]  # the first fill takes every row (later steps may need them)
        mask = self.batch.attention_mask[:rows]
        if self.cache is None:
            self.hidden[:rows] = self.model.hidden_states(ids[:rows], mask)
            computed = rows * length
        elif full:
            self.hidden[:rows] = self.forward(ids[:rows], self.cache, None, mask)
            self.filled_rows = max(self.filled_rows, rows)
            computed = rows * length
        else:
            computed = self._partial_step(ids, rows, run_uncond, text_at, image_at)
        if run_uncond and cfg.guidance_reuse:
            self.residual = self.hidden[:n] - self.hidden[n:]
        elif wants_uncond and self.residual is not None:
            self.hidden[n:] = self.hidden[:n] - self.residual
        return self.hidden, rows, computed

    def _partial_step(self, ids, rows, run_uncond, text_at, image_at) -> int:
        """A step between full forwards: the positions the step reads, of `rows` rows, against the
        cache (with `uncond_recompute` 'guided' the unconditional rows compute only the guided
        modalities' positions); returns the number of positions computed."""
        cfg, n = self.config, self.n_cond
        at = row_positions(n, text_at, image_at)  # (n, P)
        if run_uncond and cfg.uncond_recompute == "guided":
            guided = row_positions(
                n, text_at if cfg.cfg_text > 0 else None, image_at if cfg.cfg_image > 0 else None
            )
            return self._partial(ids, 0, n, at) + self._partial(ids, n, 2 * n, guided)
        # the unconditional rows (if any) compute the same positions
        return self._partial(ids, 0, rows, at.repeat(rows // n, 1))

    def _partial(self, ids: torch.Tensor, start: int, stop: int, at: torch.Tensor) -> int:
        """Compute positions `at` (stop - start, P) of rows start..stop against the cache; returns
        the number of positions computed."""
        if at.shape[1] == 0:
            return 0
        mask = self.batch.attention_mask[start:stop]
        out = self.forward(ids[start:stop], self.cache.rows(start, stop), at, mask)  # (R', P, d)
        self.hidden[start:stop].scatter_(1, at[..., None].expand_as(out), out)
        return at.numel()


def row_positions(
    n_rows: int, text_at: torch.Tensor | None, image_at: torch.Tensor | None
) -> torch.Tensor:
    """The positions (n_rows, P) of each row a partial forward computes: the text block's `text_at`
    (P_t,) and the image's `image_at` (P_i,) or (n_rows, P_i); either may be None."""
    parts = [at.expand(n_rows, -1) for at in (text_at, image_at) if at is not None]
    if not parts:
        return torch.zeros(n_rows, 0, dtype=torch.long)
    return torch.cat(parts, dim=1)


class ActiveImage:
    """The output-image positions (B, K) each image step computes with `image_recompute`
    'active': those masked before the previous image step, i.e. still masked now or revealed by
    it.

    K is fixed by the schedule, so no count is read from the device: all masked positions for the
    first two image steps, then the most the cosine schedule leaves masked after image step j - 2
    in any row (an upper bound: a row with fewer active positions pads with others)."""

    def __init__(
        self, image_pos: torch.Tensor, masked_at_start: list[int], image_steps: list[StepPlan]
    ):
        first = max(masked_at_start, default=0)
        later = [max(map(p.image_masked, masked_at_start), default=0) for p in image_steps]
        self.counts = [first, first, *later[:-2]]  # per image step
        self.image_pos = image_pos  # (P,)
        self.previous: torch.Tensor | None = None  # (B, P) masked before the previous image step
        self.image_step = 0

    def positions(self, masked: torch.Tensor) -> torch.Tensor:
        """The positions (B, K) this image step computes; `masked` (B, P) is its state before it
        writes. Call on every image step, full forwards included, to follow the timeline."""
        active = masked if self.previous is None else self.previous
        self.previous = masked
        count = self.counts[self.image_step]
        self.image_step += 1
        return self.image_pos[leading_columns(active, count)]  # (B, K): the active ones first


def leading_columns(flags: torch.Tensor, count: int) -> torch.Tensor:
    """(B, count) column indices of `flags` (B, P): each row's True columns first, then False
    ones, each in order; a fixed shape, read from the device by no one."""
    return flags.int().argsort(dim=1, descending=True, stable=True)[:, :count]
