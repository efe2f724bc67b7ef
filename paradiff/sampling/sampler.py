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
from dataclasses import replace

import torch

from paradiff.layout import Batch, TokenSpace
from paradiff.model import MaskPredictor
from paradiff.sampling.best_of import candidate_seeds, image_given_text_score
from paradiff.sampling.cache import leading_columns, step_forward
from paradiff.sampling.config import SamplerConfig
from paradiff.sampling.plan import DEFAULT, SamplerProfile, StepPlan
from paradiff.sampling.reference import REFERENCE
from paradiff.sampling.state import RunState, SampleOutput

__all__ = ["ParallelSampler", "SampleOutput", "StepPlan", "make_plan", "sampler_for"]

PROFILES = {profile.name: profile for profile in (DEFAULT, REFERENCE)}


def sampler_for(profile: str) -> SamplerProfile:
    """The timeline and step rules of a profile name ('default' or 'reference')."""
    if profile not in PROFILES:
        raise ValueError(f"unknown sampler profile {profile!r}; known: {', '.join(PROFILES)}")
    return PROFILES[profile]


def make_plan(config: SamplerConfig) -> list[StepPlan]:
    """The timeline of `config` (its speed preset applied): parallel, sequential, or its
    profile's own."""
    config = config.resolved()
    return sampler_for(config.profile).make_plan(config)


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
    text block and aMUSEd's MaskGIT scheduler step on the image. The reference profile
    (`paradiff/sampling/reference.py`) is its own timeline plus the few rules of
    `SamplerProfile` where upstream's step differs."""

    def __init__(self, model: MaskPredictor, space: TokenSpace, config: SamplerConfig) -> None:
        self.model = model
        self.space = space
        self.config = config.resolved()
        self.profile = sampler_for(self.config.profile)
        self.plan = self.profile.make_plan(self.config)

    @torch.no_grad()
    def __call__(
        self,
        batch: Batch,
        n_cond: int | None = None,
        seeds: Sequence[int] | None = None,
        on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> SampleOutput:
        """Sample the answers of `batch`'s conditional rows; its `n_uncond` unconditional twins
        are used only on the steps whose modality has a non-zero guidance weight. `n_cond` marks
        a batch collated without its twins marked: rows n_cond.. are the twins.

        `seeds` gives one seed per conditional row; `on_step(step, n_steps, ids)` sees the
        conditional rows (B, L) after every step. With the fast settings on, the forwards are
        `CachedForward`'s and the loop reads nothing back from the device. With `best_of` K > 1
        every row is sampled K times (candidate k with seed + k) and the candidate the model
        scores highest is kept (`paradiff.sampling.best_of`); `on_step` sees every candidate's
        steps, counted on one timeline of K times the steps.
        """
        if n_cond is not None:
            rows = batch.ids.shape[0]
            if rows not in (n_cond, 2 * n_cond):
                raise ValueError(f"batch has {rows} rows for {n_cond} conditional rows")
            batch = batch.with_unconditional(rows - n_cond)
        runs = self.config.best_of
        if runs == 1:
            return self.sample(batch, seeds, on_step)
        candidates, scores = [], []
        for k in range(runs):

            def candidate_step(step, n_steps, ids, k=k):
                on_step(k * n_steps + step, runs * n_steps, ids)

            report = None if on_step is None else candidate_step
            out = self.sample(batch, candidate_seeds(seeds, k), report)
            candidates.append(out)
            scores.append(image_given_text_score(self.model, self.space, out.ids, batch))
        return pick_best(candidates, scores)

    def sample(
        self,
        batch: Batch,
        seeds: Sequence[int] | None = None,
        on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> SampleOutput:
        """One run of the plan: per step one forward, whose logits decide the text and the image
        writes before either is written."""
        device = self.model.device
        run = RunState.start(batch, self.plan, self.config, seeds, self.space.mask_id, device)
        forward = step_forward(self.model, self.config, run, self.plan)
        for step, plan in enumerate(self.plan):
            with_uncond = run.guided and self._guides(plan)
            if with_uncond:
                run.share_answers()
            hidden, rows, positions = forward(step, plan, with_uncond)
            run.count(rows, positions)
            writes = []
            if plan.text is not None:
                writes.append(self._text_step(run, hidden, plan))
            if plan.image is not None:
                writes.append(self._image_step(run, hidden, plan))
            for at, values in writes:  # both decided from the same logits
                run.ids[: run.n_cond, at] = values
            run.record()
            if on_step is not None:
                on_step(step, len(self.plan), run.ids[: run.n_cond])
        return run.output(self.plan, self.space.image_offset)

    def _guides(self, plan: StepPlan) -> bool:
        """Whether a modality this step decodes has a non-zero guidance weight."""
        cfg = self.config
        return (plan.text is not None and cfg.cfg_text > 0) or (
            plan.image is not None and cfg.cfg_image > 0
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
    def _text_step(self, run: RunState, hidden: torch.Tensor, plan: StepPlan):
        """Decide this step's text writes: (positions (P,), new values (B, P)).

        The head runs only at the still-masked positions of the open block, over the text ids
        without the mask id (with the fast settings: at the block's first `text_open` columns,
        masked ones first); random draws cover the whole block, so a row's draws do not depend
        on its batch. Low-confidence remasking keeps the block's count of most confident
        candidates (their softmax probability); at temperature 0 the candidate is the argmax.
        The reference profile (`whole_text`) reads every text position over the whole vocabulary
        in float64."""
        space, whole = self.space, self.profile.whole_text
        positions = run.batch.text if whole else run.text_block(plan.text)
        current = run.ids[: run.n_cond, positions]
        if whole:
            cols = torch.arange(len(positions), device=current.device).expand_as(current)
        else:
            cols = self._columns(current == space.mask_id, plan.text_open)  # (B, P')
            if cols.shape[1] == 0:
                return positions, current
        vocab = None if whole else space.text_vocab
        logits = self._logits(hidden, positions[cols], vocab, run.n_cond, self.config.cfg_text)
        if not whole:
            space.forbid_mask(logits)
        precision = torch.float64 if whole else torch.float32
        candidates, confidence = self._text_candidates(run, logits, cols, len(positions), precision)
        count = plan.text[1]
        return positions, self._reveal_text(current, cols, count, confidence, candidates)

    def _text_candidates(self, run, logits, cols, n_positions, precision):
        """Each open column's candidate (B, P') and its confidence (B, P') float64: a sample
        at the text temperature (the argmax at 0) and its probability, or with random
        remasking a uniform draw; the Gumbel noise and the softmax in `precision`."""
        cfg = self.config
        if cfg.text_temperature > 0:
            noise = self._text_noise(logits, cols, n_positions, run.gens, precision)
            candidates = pick(logits, cfg.text_temperature, noise)
        else:
            candidates = logits.argmax(-1)
        if cfg.remasking == "random":
            return candidates, self._random_confidence(cols, n_positions, run.gens)
        probs = torch.softmax(logits.to(precision), dim=-1)
        return candidates, probs.gather(-1, candidates[..., None])[..., 0].double()

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

    def _reveal_text(self, current, cols, count, confidence, candidates):
        """`current` (B, P) with the `count` most confident masked columns of `cols` (B, P')
        revealed (their `candidates`); with a `text_threshold` tau also every masked column
        whose confidence is at least tau."""
        mask_id = self.space.mask_id
        n_masked = (current == mask_id).sum(1)  # (B,)
        open_current = current.gather(1, cols)
        confidence = confidence.masked_fill(open_current != mask_id, float("-inf"))
        count = torch.full_like(n_masked, count)
        if self.config.text_threshold:  # 0: off
            count = torch.maximum(count, (confidence >= self.config.text_threshold).sum(1))
        count = torch.minimum(n_masked, count)
        reveal = reveal_most_confident(confidence, count)  # (B, P')
        return current.scatter(1, cols, torch.where(reveal, candidates, open_current))

    # -- image: aMUSEd's (MaskGIT) scheduler step on the codebook slice ---------------------------
    def _image_step(self, run: RunState, hidden: torch.Tensor, plan: StepPlan):
        """Decide this step's image writes: (positions (P,), new values (B, P)).

        A code is sampled at every still-masked position; its confidence is its log-probability
        plus Gumbel noise scaled by T * (1 - progress); all but the `_kept_masked` least confident
        are revealed (with image_order 'halton': the earliest in the Halton order). The head runs
        only at the still-masked positions; random draws cover every position, so a row's draws
        do not depend on its batch."""
        image_pos, temperature = run.batch.output_image, self.config.image_temperature
        current = run.image_now()
        unknown = current == self.space.mask_id
        cols = self._columns(unknown)  # (B, P')
        uniforms = noise = None
        if temperature > 0:
            uniforms = row_rand(current.shape, run.gens, current.device).gather(1, cols)
            noise = gumbel(current.shape, run.gens, current.device).gather(1, cols)
        if cols.shape[1] == 0:
            return image_pos, current
        vocab = self.space.image_vocab
        logits = self._logits(hidden, image_pos[cols], vocab, run.n_cond, self.config.cfg_image)
        codes, log_probs = sample_codes(logits, temperature, uniforms)
        codes = codes + self.space.image_offset
        confidence = self._image_confidence(run, cols, log_probs, noise, plan)
        open_unknown = unknown.gather(1, cols)
        n_unknown = unknown.sum(1)
        confidence = confidence.masked_fill(~open_unknown, float("-inf"))
        reveal = reveal_most_confident(
            confidence, n_unknown - self._kept_masked(run, n_unknown, plan)
        )
        values = current.scatter(
            1, cols, torch.where(reveal & open_unknown, codes, current.gather(1, cols))
        )
        if plan.last_image and self.profile.image_keep_one:  # fill what the rule kept masked
            still = values == self.space.mask_id  # every such position is among `cols`
            values = torch.where(still, current.scatter(1, cols, codes), values)
        return image_pos, values

    def _image_confidence(self, run, cols, log_probs, noise, plan) -> torch.Tensor:
        """The confidence (B, P') float64 of each sampled code: minus its place in the Halton
        order, or its log-probability (log(p + eps) under the profile's rule) plus Gumbel
        noise scaled by T * (1 - progress)."""
        if run.image_rank is not None:  # the earliest in the Halton order go first
            return -run.image_rank[cols].double()
        eps = self.profile.image_confidence_eps
        confidence = (torch.log(log_probs.exp() + eps) if eps else log_probs).double()
        if noise is not None:
            confidence = confidence + self.config.image_temperature * (1 - plan.image) * noise
        return confidence

    def _kept_masked(self, run, n_unknown, plan) -> torch.Tensor:
        """Positions (B,) left masked after this step: the cosine schedule's count, at most all
        but one still-masked position, none after the last image step (with the profile's
        `image_keep_one` rule at least one, filled after the last step)."""
        keep_one = self.profile.image_keep_one
        if plan.last_image and not keep_one:
            return torch.zeros_like(n_unknown)
        kept = torch.minimum(run.image_keep[plan.image], n_unknown - 1)
        return kept.clamp(min=1 if keep_one else 0)
