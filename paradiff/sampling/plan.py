"""The timeline: what each step of a sampler run decodes, and the profiles that lay it out.

A plan is a list of `StepPlan`, one per forward pass. It carries every reveal count of the run:
the text block and its count (the linear schedule inside semi-autoregressive blocks) and the
image's cosine progress, whose count of positions still masked is `StepPlan.image_masked`. No
other module reads the schedules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from paradiff.sampling.config import SamplerConfig
from paradiff.sampling.schedules import block_text_plan, cosine_masked, spread_steps


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

    def image_masked(self, n_tokens: int) -> int:
        """Of `n_tokens` image positions masked at the start, how many the cosine schedule keeps
        masked after this step (an image step)."""
        return cosine_masked(n_tokens, self.image)


@dataclass(frozen=True)
class SamplerProfile:
    """A profile: its timeline and the few rules where its step differs from the paper's.

    whole_text: the text step reads every text position over the whole vocabulary (the mask and
    image ids included) in float64, instead of the open block's masked positions over the text
    ids; image_confidence_eps: an image code's confidence is log(p + eps) (0: log p);
    image_keep_one: at least one image position stays masked at every image step, and after the
    last one those are filled with that step's candidates (else the last step reveals all).
    """

    name: str
    make_plan: Callable[[SamplerConfig], list[StepPlan]]
    whole_text: bool = False
    image_confidence_eps: float = 0.0
    image_keep_one: bool = False


def step_refresh(step: int, config: SamplerConfig) -> str:
    """What the fast settings' forward of step `step` recomputes (a resolved config): 'full'
    every position, refilling the cache (every step without `cache_refresh`, else every r-th);
    'answer' the whole answer against the cached prefix (with `answer_refresh` a, the steps
    between whose offset from the last full forward is a multiple of a); 'partial' only the
    positions the step decodes."""
    r, a = config.cache_refresh, config.answer_refresh
    if not r or step % r == 0:
        return "full"
    return "answer" if a and step % r % a == 0 else "partial"


def text_open_counts(text: list[tuple[int, int]], block_length: int) -> list[int]:
    """Per text step, the tokens of its block the schedule has not revealed before it."""
    revealed: dict[int, int] = {}  # block -> tokens the schedule revealed so far
    counts = []
    for block, count in text:
        counts.append(block_length - revealed.get(block, 0))
        revealed[block] = revealed.get(block, 0) + count
    return counts


def default_plan(config: SamplerConfig) -> list[StepPlan]:
    """The default profile's timeline: text blocks and image steps spread over one timeline
    (parallel), or all text steps before the image steps (sequential)."""
    text = block_text_plan(config.text_gen_length, config.text_block_length, config.text_steps)
    text_steps = list(zip(text, text_open_counts(text, config.text_block_length), strict=True))
    n_image = config.image_steps
    if config.mode == "sequential":
        steps = [StepPlan(t, None, text_open=n) for t, n in text_steps]
        return steps + [StepPlan(None, (j + 1) / n_image, j == n_image - 1) for j in range(n_image)]
    T = max(len(text), n_image)
    text_at = dict(zip(spread_steps(T, len(text)), text_steps, strict=True))
    image_at = {s: j for j, s in enumerate(spread_steps(T, n_image))}
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


DEFAULT = SamplerProfile("default", default_plan)
