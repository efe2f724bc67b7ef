"""The parallel sampler: text and image denoised together on one timeline.

Each step runs one forward pass; its logits feed both modalities before either writes:
- text: the open semi-autoregressive block reveals its k most confident (or random) candidates,
  candidates restricted to text ids (`default`) or over the whole vocabulary (`reference`);
- image: MaskGIT decoding over the codebook slice: sample a code everywhere, keep the
  `cosine_masked` least confident positions masked (Gumbel-perturbed log-probabilities, noise
  annealed by 1 - progress), write the rest.
Guidance runs the unconditional twins of the rows in the same forward, only on the steps whose
modality is guided, with their answer parts copied from the conditional rows first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from paradiff.layout import Batch, TokenSpace
from paradiff.model import MaskPredictor
from paradiff.sampling.best_of import candidate_seeds, image_given_text_score
from paradiff.sampling.cache import ActiveImage, CachedForward, leading_columns
from paradiff.sampling.config import SamplerConfig
from paradiff.sampling.schedules import (
    block_text_plan,
    cosine_masked,
    halton_order,
    spread_steps,
)


@dataclass(frozen=True)
class StepPlan:
    """What one step of the timeline decodes.

    text: (block index, tokens to reveal) or None; image: the cosine progress reached after this
    step (in (0, 1]) or None; last_image: whether this is the final image step; text_open: the
    most tokens of the open block still masked before this step (the schedule's count; fewer
    when a confidence threshold revealed more).
    """

    text: tuple[int, int] | None
    image: float | None
    last_image: bool = False
    text_open: int = 0


def make_plan(config: SamplerConfig) -> list[StepPlan]:
    """The timeline of `config` (its speed preset applied): parallel, sequential, or its
    profile's own."""
    config = config.resolved()
    return ParallelSampler.for_profile(config.profile).make_plan(config)


def default_plan(config: SamplerConfig) -> list[StepPlan]:
    """The default profile's timeline: text blocks and image steps spread over one timeline
    (parallel), or all text steps before the image steps (sequential)."""
    text = block_text_plan(config.text_gen_length, config.text_block_length, config.text_steps)
    revealed: dict[int, int] = {}  # block -> tokens the schedule revealed before this text step
    text_open = []  # per text step
    for block, count in text:
        text_open.append(config.text_block_length - revealed.get(block, 0))
        revealed[block] = revealed.get(block, 0) + count
    image_count = config.image_steps
    if config.mode == "sequential":
        steps = [StepPlan(t, None, text_open=n) for t, n in zip(text, text_open, strict=True)]
        return steps + [
            StepPlan(None, (j + 1) / image_count, j == image_count - 1) for j in range(image_count)
        ]
    T = max(len(text), image_count)
    text_steps = zip(text, text_open, strict=True)
    text_at = dict(zip(spread_steps(T, len(text)), text_steps, strict=True))
    image_at = {s: j for j, s in enumerate(spread_steps(T, image_count))}
    n_image = len(image_at)
    return [
        StepPlan(
            text_at[s][0] if s in text_at else None,
            (image_at[s] + 1) / n_image if s in image_at else None,
            image_at.get(s) == n_image - 1,
            text_at[s][1] if s in text_at else 0,
        )
        for s in range(T)
    ]


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


def pick_best(candidates: list[SampleOutput], scores: list[torch.Tensor]) -> SampleOutput:
    """Per row, the candidate with the highest score (the first on ties), as one SampleOutput."""
    best = torch.stack(scores).argmax(0)  # (B,)
    rows = torch.arange(best.shape[0])
    first = candidates[0]
    device = first.ids.device
    pick, on_device = best.to(device), rows.to(device)
    return replace(
        first,
        ids=torch.stack([c.ids for c in candidates])[pick, on_device],
        text_tokens=torch.stack([c.text_tokens for c in candidates])[pick, on_device],
        image_codes=torch.stack([c.image_codes for c in candidates])[pick, on_device],
        trajectory=torch.stack([c.trajectory for c in candidates])[best, :, rows].transpose(0, 1),
        forward_rows=sum(c.forward_rows for c in candidates) + len(candidates) * len(rows),
        forward_positions=sum(c.forward_positions for c in candidates)
        + len(candidates) * first.ids.numel(),
    )


def row_generators(seeds: Sequence[int] | None, device: torch.device) -> list[torch.Generator]:
    """One generator per row, so a row's randomness does not depend on its batch."""
    gens = []
    for seed in seeds or []:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
        gens.append(gen)
    return gens


def row_rand(
    shape: tuple[int, ...], gens: list[torch.Generator], device, dtype=torch.float32
) -> torch.Tensor:
    """Uniform noise (B, *shape) with row b drawn from gens[b] (the global RNG without gens)."""
    if not gens:
        return torch.rand(shape, device=device, dtype=dtype)
    return torch.stack(
        [torch.rand(shape[1:], generator=g, device=device, dtype=dtype) for g in gens]
    )


def gumbel(shape, gens, device, dtype=torch.float64) -> torch.Tensor:
    """Gumbel(0, 1) noise -log(-log u), u ~ U(0, 1) clamped away from 0 and 1."""
    u = row_rand(shape, gens, device, dtype).clamp(1e-20, 1 - 1e-12)
    return -torch.log(-torch.log(u))


def guide(logits: torch.Tensor, n_cond: int, weight: float) -> torch.Tensor:
    """Classifier-free guidance l_u + (1 + w)(l_c - l_u) when the unconditional rows are present."""
    if logits.shape[0] == n_cond:
        return logits
    cond, uncond = logits[:n_cond], logits[n_cond:]
    return torch.lerp(uncond, cond, 1 + weight)  # one fused pass over the logits


def reveal_most_confident(confidence: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Boolean (B, P): the count[b] highest confidences of row b (ties: earlier position first)."""
    order = confidence.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks < count[:, None]


def pick(logits: torch.Tensor, temperature: float, noise: torch.Tensor | None) -> torch.Tensor:
    """argmax of logits / T + Gumbel `noise` (a sample from softmax(logits / T)); argmax at T = 0.

    The noise's dtype is the working precision (float64 in the reference profile)."""
    if temperature <= 0:
        return logits.argmax(-1)
    return (logits.to(noise.dtype) / temperature + noise).argmax(-1)


def sample_codes(
    logits: torch.Tensor, temperature: float, uniforms: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A sample from softmax(logits / T) at every position (argmax at T = 0) and its
    log-probability under softmax(logits).

    Sampling inverts the cumulative distribution with one of `uniforms` (U(0, 1), shaped like
    logits without the last dimension) per position: the law of Gumbel-max, without a random
    number per vocabulary entry."""
    if temperature <= 0:
        codes = logits.argmax(-1)
    else:
        probs = torch.softmax(logits if temperature == 1 else logits / temperature, dim=-1)
        cdf = probs.cumsum(-1)
        u = uniforms[..., None].to(cdf.dtype) * cdf[..., -1:]
        codes = torch.searchsorted(cdf, u, right=True)[..., 0].clamp(max=cdf.shape[-1] - 1)
        if temperature == 1:
            return codes, probs.gather(-1, codes[..., None])[..., 0].log()
    return codes, torch.log_softmax(logits, dim=-1).gather(-1, codes[..., None])[..., 0]


def open_columns(still_masked: torch.Tensor) -> torch.Tensor:
    """(B, P') the columns of `still_masked` (B, P) that are True, when every row has the same
    number of them (rows decoded in step, the usual case); else every column (B, P)."""
    counts = still_masked.sum(1)
    if bool((counts == counts[0]).all()):
        return still_masked.nonzero()[:, 1].view(still_masked.shape[0], -1)
    return torch.arange(still_masked.shape[1], device=still_masked.device).expand_as(still_masked)


class ParallelSampler:
    """Runs `make_plan(config)` over a batch built by `Layout.collate`.

    The default profile's step is the paper's: LLaDA's low-confidence remasking inside the open
    text block and aMUSEd's MaskGIT scheduler step on the image. `ParallelSampler(model, space,
    config)` builds the class registered for `config.profile` (the reference profile's rules live
    in `paradiff/sampling/reference.py`)."""

    profiles: dict[str, type[ParallelSampler]] = {}

    def __new__(cls, model: MaskPredictor, space: TokenSpace, config: SamplerConfig):
        if cls is ParallelSampler:
            cls = ParallelSampler.for_profile(config.profile)
        return super().__new__(cls)

    def __init__(self, model: MaskPredictor, space: TokenSpace, config: SamplerConfig) -> None:
        self.model = model
        self.space = space
        self.config = config.resolved()
        self.plan = self.make_plan(self.config)
        self.image_rank: torch.Tensor | None = None  # set per run with image_order 'halton'

    @staticmethod
    def for_profile(profile: str) -> type[ParallelSampler]:
        """The sampler class of a profile name ('default' is this class)."""
        return ParallelSampler if profile == "default" else ParallelSampler.profiles[profile]

    @staticmethod
    def make_plan(config: SamplerConfig) -> list[StepPlan]:
        return default_plan(config)

    @torch.no_grad()
    def __call__(
        self,
        batch: Batch,
        n_cond: int | None = None,
        seeds: Sequence[int] | None = None,
        on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> SampleOutput:
        """Sample the answers of `batch`'s first `n_cond` rows; rows n_cond..2*n_cond are their
        unconditional twins (used only when a guidance weight is non-zero).

        `seeds` gives one seed per conditional row; `on_step(step, n_steps, ids)` sees the
        conditional rows (B, L) after every step. With the fast settings on, the forwards are
        `CachedForward`'s and the loop reads nothing back from the device. With `best_of` K > 1
        every row is sampled K times (candidate k with seed + k) and the candidate the model
        scores highest is kept (`paradiff.sampling.best_of`); `on_step` sees every candidate's
        steps, counted on one timeline of K times the steps.
        """
        runs = self.config.best_of
        if runs == 1:
            return self._sample_once(batch, n_cond, seeds, on_step)
        candidates, scores = [], []
        for k in range(runs):

            def candidate_step(step, n_steps, ids, k=k):
                on_step(k * n_steps + step, runs * n_steps, ids)

            report = None if on_step is None else candidate_step
            out = self._sample_once(batch, n_cond, candidate_seeds(seeds, k), report)
            candidates.append(out)
            scores.append(image_given_text_score(self.model, self.space, out.ids, batch))
        return pick_best(candidates, scores)

    def _sample_once(
        self,
        batch: Batch,
        n_cond: int | None,
        seeds: Sequence[int] | None,
        on_step: Callable[[int, int, torch.Tensor], None] | None,
    ) -> SampleOutput:
        cfg, space = self.config, self.space
        device = self.model.device
        batch = batch.to(device)
        n_cond = batch.ids.shape[0] if n_cond is None else n_cond
        if batch.ids.shape[0] not in (n_cond, 2 * n_cond):
            raise ValueError(f"batch has {batch.ids.shape[0]} rows for {n_cond} conditional rows")
        guided = batch.ids.shape[0] == 2 * n_cond
        gens = row_generators(seeds if seeds is not None else None, device)
        if gens and len(gens) != n_cond:
            raise ValueError(f"{len(gens)} seeds for {n_cond} rows")
        ids = batch.ids.clone()
        answer = torch.arange(batch.answer_start, ids.shape[1])
        answer = answer.to(device)
        image_pos, text_pos = batch.output_image, batch.text
        masked_at_start = (ids[:n_cond, image_pos] == space.mask_id).sum(1).tolist()
        keep_at = {  # progress -> positions (B,) the cosine schedule keeps masked
            p.image: torch.tensor(
                [cosine_masked(n, p.image) for n in masked_at_start], device=device
            )
            for p in self.plan
            if p.image is not None
        }
        self.image_rank = None  # image_order 'halton': each position's place in the order (P,)
        if cfg.image_order == "halton":
            order = torch.tensor(halton_order(*batch.grid), device=device)
            places = torch.arange(len(order), device=device)
            self.image_rank = torch.empty_like(order).scatter_(0, order, places)
        cached = CachedForward(self.model, cfg, batch, n_cond) if cfg.fast else None
        active = None  # image_recompute 'active' (validated to come with cache_refresh)
        if cfg.image_recompute == "active":
            progress = [p.image for p in self.plan if p.image is not None]
            active = ActiveImage(image_pos, masked_at_start, progress)
        trajectory = [ids[:n_cond, answer].to(torch.int32)]
        forward_rows = forward_positions = 0
        for step, plan in enumerate(self.plan):
            use_uncond = guided and (
                (plan.text is not None and cfg.cfg_text > 0)
                or (plan.image is not None and cfg.cfg_image > 0)
            )
            rows = 2 * n_cond if use_uncond else n_cond
            if use_uncond:
                ids[n_cond:, answer] = ids[:n_cond, answer]
            if cached is None:
                hidden = self.model.hidden_states(ids[:rows], batch.attention_mask[:rows])
                forward_positions += rows * ids.shape[1]
            else:
                text_at = self._text_positions(text_pos, plan.text) if plan.text else None
                image_at = image_pos if plan.image is not None else None
                if image_at is not None and active is not None:
                    image_at = active.positions(ids[:n_cond, image_pos] == space.mask_id)
                hidden, rows, positions = cached(step, ids, use_uncond, text_at, image_at)
                forward_positions += positions
            forward_rows += rows
            writes = []
            if plan.text is not None:
                writes.append(
                    self._text_step(ids, hidden, text_pos, plan.text, n_cond, gens, plan.text_open)
                )
            if plan.image is not None:
                keep = keep_at[plan.image]
                writes.append(self._image_step(ids, hidden, image_pos, plan, keep, n_cond, gens))
            for positions, values in writes:  # both decided from the same logits
                ids[:n_cond, positions] = values
            trajectory.append(ids[:n_cond, answer].to(torch.int32))
            if on_step is not None:
                on_step(step, len(self.plan), ids[:n_cond])
        h, w = batch.grid
        return SampleOutput(
            ids=ids[:n_cond],
            text_tokens=ids[:n_cond, text_pos],
            image_codes=(ids[:n_cond, image_pos] - space.image_offset).view(-1, h, w),
            trajectory=torch.stack(trajectory).cpu(),
            answer_start=batch.answer_start,
            plan=self.plan,
            forward_rows=forward_rows,
            forward_positions=forward_positions,
        )

    def _logits(self, hidden, at, vocab, n_cond, weight) -> torch.Tensor:
        """Guided logits (B, P, V') of the conditional rows at sequence positions `at` (B, P).

        The head is linear (no bias), so l_u + (1 + w)(l_c - l_u) = head(h_u + (1 + w)(h_c - h_u)):
        guidance mixes the hidden states and the head runs on the conditional rows only."""
        rows = hidden if weight > 0 else hidden[:n_cond]
        at = at.repeat(rows.shape[0] // n_cond, 1)
        picked = torch.gather(rows, 1, at[..., None].expand(-1, -1, rows.shape[-1]))
        return self.model.logits(guide(picked, n_cond, weight), None, vocab).float()

    # -- text: LLaDA's generate step inside the open semi-autoregressive block -------------------
    def _text_step(self, ids, hidden, text_pos, text_plan, n_cond, gens, open_count=0):
        """Decide this step's text writes: (positions (P,), new values (B, P)).

        The head runs only at the still-masked positions of the open block, over the text ids
        without the mask id (with the fast settings: at the block's first `open_count` columns,
        masked ones first); random draws cover the whole block, so a row's draws do not depend
        on its batch. Low-confidence remasking keeps the `count` most confident candidates
        (their softmax probability); at temperature 0 the candidate is the argmax."""
        cfg, space = self.config, self.space
        count = text_plan[1]
        positions = self._text_positions(text_pos, text_plan)
        current = ids[:n_cond, positions]
        cols = self._columns(current == space.mask_id, open_count)  # (B, P')
        if cols.shape[1] == 0:
            return positions, current
        vocab = space.text_vocab
        logits = self._logits(hidden, positions[cols], vocab, n_cond, cfg.cfg_text)
        space.forbid_mask(logits)
        candidates = None  # greedy low-confidence: the argmax (taken after the confidences)
        if cfg.text_temperature > 0:
            noise = self._text_noise(logits, cols, len(positions), gens, torch.float32)
            candidates = pick(logits, cfg.text_temperature, noise)
        elif cfg.remasking == "random":
            candidates = logits.argmax(-1)
        if cfg.remasking == "random":
            confidence = self._random_confidence(cols, len(positions), gens)
        elif candidates is None:
            confidence = torch.softmax(logits, dim=-1).amax(-1).double()
        else:
            probs = torch.softmax(logits, dim=-1)
            confidence = probs.gather(-1, candidates[..., None])[..., 0].double()
        return positions, self._reveal_text(current, cols, count, confidence, candidates, logits)

    def _text_positions(self, text_pos: torch.Tensor, text_plan) -> torch.Tensor:
        """The sequence positions (P,) of the open text block."""
        block_len = self.config.text_block_length
        return text_pos[text_plan[0] * block_len : (text_plan[0] + 1) * block_len]

    def _columns(self, masked: torch.Tensor, bound: int = 0) -> torch.Tensor:
        """The columns (B, P') of `masked` (B, P) a step computes: the masked ones (exact mode),
        or with the fast settings a fixed number of them, nothing read back from the device: the
        first `bound` columns with the masked ones first (`bound` at least their count), or all
        P without a bound."""
        if not self.config.fast:
            return open_columns(masked)
        if bound and bound < masked.shape[1]:
            return leading_columns(masked, bound)
        return torch.arange(masked.shape[1], device=masked.device).expand_as(masked)

    def _text_noise(self, logits, cols, n_positions, gens, dtype) -> torch.Tensor:
        """Gumbel noise (B, P', V') for the open columns, drawn for all `n_positions`."""
        width = logits.shape[-1]
        noise = gumbel((cols.shape[0], n_positions, width), gens, logits.device, dtype)
        return noise.gather(1, cols[..., None].expand(-1, -1, width))

    def _random_confidence(self, cols, n_positions, gens) -> torch.Tensor:
        """Random-remasking scores (B, P') for the open columns, drawn for all `n_positions`."""
        confidence = row_rand((cols.shape[0], n_positions), gens, cols.device, torch.float64)
        return confidence.gather(1, cols)

    def _reveal_text(self, current, cols, count, confidence, candidates, logits):
        """`current` (B, P) with the `count` most confident masked columns of `cols` (B, P')
        revealed (their `candidates`, or the argmax of `logits` when None); with a
        `text_threshold` tau also every masked column whose confidence is at least tau."""
        mask_id = self.space.mask_id
        n_masked = (current == mask_id).sum(1)  # (B,)
        open_current = current.gather(1, cols)
        confidence = confidence.masked_fill(open_current != mask_id, float("-inf"))
        count = torch.full_like(n_masked, count)
        if self.config.text_threshold is not None:
            count = torch.maximum(count, (confidence >= self.config.text_threshold).sum(1))
        count = torch.minimum(n_masked, count)
        reveal = reveal_most_confident(confidence, count)  # (B, P')
        if candidates is None:
            candidates = logits.argmax(-1)  # (B, P'); no boolean indexing: no host sync
        return current.scatter(1, cols, torch.where(reveal, candidates, open_current))

    # -- image: aMUSEd's (MaskGIT) scheduler step on the codebook slice ---------------------------
    def _image_step(self, ids, hidden, image_pos, plan, keep, n_cond, gens):
        """Decide this step's image writes: (positions (P,), new values (B, P)); `keep` (B,) is
        the cosine schedule's count of positions still masked after this step."""
        current, cols, candidates, reveal = self._image_decision(
            ids, hidden, image_pos, plan, keep, n_cond, gens
        )
        if cols.shape[1] == 0:
            return image_pos, current
        return image_pos, current.scatter(
            1, cols, torch.where(reveal, candidates, current.gather(1, cols))
        )

    def _image_decision(self, ids, hidden, image_pos, plan, keep, n_cond, gens):
        """The image step's candidates (B, P') as token ids at the still-masked columns `cols`
        (B, P') of `current` (B, P), and which of them it reveals.

        A code is sampled at every still-masked position; its confidence is its log-probability
        plus Gumbel noise scaled by T * (1 - progress); all but the `_kept_masked` least confident
        are revealed (with image_order 'halton': the earliest in the Halton order). The head runs
        only at the still-masked positions; random draws cover every position, so a row's draws
        do not depend on its batch."""
        cfg, space = self.config, self.space
        vocab = space.image_vocab
        temperature = cfg.image_temperature
        current = ids[:n_cond, image_pos]
        unknown = current == space.mask_id
        n_unknown = unknown.sum(1)
        cols = self._columns(unknown)  # (B, P')
        if temperature > 0:
            uniforms = row_rand((n_cond, len(image_pos)), gens, ids.device).gather(1, cols)
            noise = gumbel((n_cond, len(image_pos)), gens, ids.device).gather(1, cols)
        if cols.shape[1] == 0:
            return current, cols, None, None
        logits = self._logits(hidden, image_pos[cols], vocab, n_cond, cfg.cfg_image)
        codes, log_probs = sample_codes(logits, temperature, uniforms if temperature > 0 else None)
        if self.image_rank is not None:  # the earliest in the Halton order go first
            confidence = -self.image_rank[cols].double()
        else:
            confidence = self._image_confidence(log_probs).double()
            if temperature > 0:
                confidence = confidence + temperature * (1 - plan.image) * noise
        open_unknown = unknown.gather(1, cols)
        keep = self._kept_masked(keep, n_unknown, plan).clamp(min=0)
        reveal = reveal_most_confident(
            confidence.masked_fill(~open_unknown, float("-inf")), n_unknown - keep
        )
        return current, cols, codes + space.image_offset, reveal & open_unknown

    def _image_confidence(self, log_probs: torch.Tensor) -> torch.Tensor:
        """The confidence of a sampled code before the Gumbel noise: its log-probability."""
        return log_probs

    def _kept_masked(self, keep, n_unknown, plan) -> torch.Tensor:
        """Positions (B,) left masked after this step: the cosine schedule's count `keep`, at
        most all but one still-masked position, none after the last image step."""
        if plan.last_image:
            return torch.zeros_like(n_unknown)
        return torch.minimum(keep, n_unknown - 1)
