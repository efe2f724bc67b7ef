"""The reference profile: upstream `generate_ti2ti`'s rules, step for step.

It differs from the default step where upstream does:
- the timeline has `text_steps` steps; the image decodes at round(linspace(T // 4, T - 1,
  image_steps)) with the cosine on the global step ratio (s + 1) / T;
- text: one block over the whole answer text, the linear schedule, candidates over the whole
  vocabulary (the mask and image ids included), confidences in float64;
- image: the confidence is log(p + 1e-10); at least one position stays masked at every image step,
  and after the last one those are filled with that step's candidates.
Checked against upstream runs by tests/test_reference_sampler.py.
"""

from __future__ import annotations

from paradiff.sampling.config import SamplerConfig
from paradiff.sampling.plan import SamplerProfile, StepPlan
from paradiff.sampling.schedules import linear_reveal_counts, spread_steps


def reference_plan(config: SamplerConfig) -> list[StepPlan]:
    """Upstream's timeline: one text step per step, the image at its spread steps from T // 4."""
    T = config.text_steps
    counts = linear_reveal_counts(config.text_gen_length, T)
    image_steps = set(spread_steps(T, config.image_steps, first=T // 4))
    last = max(image_steps)
    return [
        StepPlan((0, counts[s]), (s + 1) / T if s in image_steps else None, s == last)
        for s in range(T)
    ]


REFERENCE = SamplerProfile(
    "reference", reference_plan, whole_text=True, image_confidence_eps=1e-10, image_keep_one=True
)
