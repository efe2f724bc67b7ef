"""The reference profile: upstream `generate_ti2ti`'s rules, step for step.

It differs from the default step (`ParallelSampler`) where upstream does:
- the timeline has `text_steps` steps; the image decodes at round(linspace(T // 4, T - 1,
  image_steps)) with the cosine on the global step ratio (s + 1) / T;
- text: one block over the whole answer text, the linear schedule, candidates over the whole
  vocabulary (the mask and image ids included), confidences in float64;
- image: the confidence is log(p + 1e-10); at least one position stays masked at every image step,
  and after the last one those are filled with that step's candidates.
Checked against upstream runs by tests/test_reference_sampler.py.
"""

from __future__ import annotations

import torch

from paradiff.sampling.config import SamplerConfig
from paradiff.sampling.sampler import ParallelSampler, StepPlan, pick
from paradiff.sampling.schedules import linear_reveal_counts, spread_steps


class ReferenceSampler(ParallelSampler):
    """`ParallelSampler` with upstream generate_ti2ti's timeline and remasking rules."""

    @staticmethod
    def make_plan(config: SamplerConfig) -> list[StepPlan]:
        T = config.text_steps
        counts = linear_reveal_counts(config.text_gen_length, T)
        image_steps = set(spread_steps(T, config.image_steps, first=T // 4))
        last = max(image_steps)
        return [
            StepPlan((0, counts[s]), (s + 1) / T if s in image_steps else None, s == last)
            for s in range(T)
        ]

    def _text_step(self, ids, hidden, text_pos, text_plan, n_cond, gens, open_count=0):
        """Upstream's text step: every text position, the whole vocabulary, float64."""
        cfg = self.config
        current = ids[:n_cond, text_pos]
        cols = torch.arange(len(text_pos), device=ids.device).expand_as(current)
        logits = self._logits(hidden, text_pos[cols], None, n_cond, cfg.cfg_text)
        if cfg.text_temperature > 0:
            noise = self._text_noise(logits, cols, len(text_pos), gens, torch.float64)
            candidates = pick(logits, cfg.text_temperature, noise)
        else:
            candidates = logits.argmax(-1)
        if cfg.remasking == "random":
            confidence = self._random_confidence(cols, len(text_pos), gens)
        else:
            probs = torch.softmax(logits.double(), dim=-1)
            confidence = probs.gather(-1, candidates[..., None])[..., 0].double()
        count = text_plan[1]
        return text_pos, self._reveal_text(current, cols, count, confidence, candidates, logits)

    def _image_step(self, ids, hidden, image_pos, plan, keep, n_cond, gens):
        """Upstream's image step; after the last one no position is left masked."""
        current, cols, candidates, reveal = self._image_decision(
            ids, hidden, image_pos, plan, keep, n_cond, gens
        )
        if cols.shape[1] == 0:
            return image_pos, current
        values = current.scatter(1, cols, torch.where(reveal, candidates, current.gather(1, cols)))
        if plan.last_image:  # every still-masked position is among `cols`
            still = values == self.space.mask_id
            values = torch.where(still, current.scatter(1, cols, candidates), values)
        return image_pos, values

    def _image_confidence(self, log_probs: torch.Tensor) -> torch.Tensor:
        return torch.log(log_probs.exp() + 1e-10)

    def _kept_masked(self, keep, n_unknown, plan) -> torch.Tensor:
        return torch.minimum(keep, n_unknown - 1).clamp(min=1)


ParallelSampler.profiles["reference"] = ReferenceSampler
