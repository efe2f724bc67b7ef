"""Reveal schedules: how many tokens each modality decodes at each step of the shared timeline.

All functions are pure and work on Python ints, so a schedule can be printed, tested and reused by
training (ParaRL replays steps) without running a model.
"""

from __future__ import annotations

import math
from functools import lru_cache


def linear_reveal_counts(n_tokens: int, steps: int) -> list[int]:
    """Tokens revealed at each of `steps` steps by the linear schedule; they sum to `n_tokens`.

    After step i (0-based) int(n * (1 - (i + 1) / steps)) tokens are still masked, so
    k_i = remaining_before_i - remaining_after_i (the reference profile's rule, step for step).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    counts, remaining = [], n_tokens
    for i in range(steps):
        after = int(n_tokens * (1 - (i + 1) / steps))
        counts.append(remaining - after)
        remaining = after
    return counts


def split_evenly(total: int, parts: int) -> list[int]:
    """`total` split into `parts` integers differing by at most one, larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def block_text_plan(n_tokens: int, block_length: int, steps: int) -> list[tuple[int, int]]:
    """Semi-autoregressive text plan: per text step, (block index, tokens to reveal).

    The text is cut into blocks of `block_length`; the steps are split evenly over the blocks,
    and inside a block the linear schedule applies, so a block is complete before the next opens.
    """
    if block_length < 1 or n_tokens % block_length:
        raise ValueError(
            f"text block length {block_length} does not divide the text length {n_tokens}"
        )
    n_blocks = n_tokens // block_length
    if steps < n_blocks:
        raise ValueError(f"{steps} text steps are fewer than the {n_blocks} text blocks")
    plan = []
    for block, block_steps in enumerate(split_evenly(steps, n_blocks)):
        plan += [(block, k) for k in linear_reveal_counts(block_length, block_steps)]
    return plan


def cosine_masked(n_tokens: int, progress: float) -> int:
    """Tokens still masked at `progress` in [0, 1] under the cosine schedule:
    floor(n * cos(pi/2 * progress)); n at progress 0 and 0 at progress 1."""
    return int(math.floor(n_tokens * math.cos(math.pi / 2 * progress)))


def spread_steps(timeline: int, count: int, first: int = 0) -> list[int]:
    """`count` step indices spread evenly over [first, timeline - 1]: round(linspace(...)).

    The last step is always `timeline - 1`. Rounding duplicates collapse (the set is returned).
    """
    if count < 1:
        raise ValueError(f"step count must be at least 1, got {count}")
    if count == 1:
        return [timeline - 1]
    span = timeline - 1 - first
    return sorted({round(first + span * i / (count - 1)) for i in range(count)})


def radical_inverse(i: int, base: int) -> float:
    """The van der Corput radical inverse of i >= 0 in `base`: its digits mirrored after the point."""
    value, scale = 0.0, 1.0 / base
    while i:
        i, digit = divmod(i, base)
        value += digit * scale
        scale /= base
    return value


@lru_cache(maxsize=32)
def halton_order(height: int, width: int) -> tuple[int, ...]:
    """The cells of a height x width grid (flat index r * width + c) in the order the 2-D Halton
    sequence (bases 2 and 3) first lands in them, so that any run of consecutive cells is spread
    over the grid (the Halton scheduler of masked image generation)."""
    order: list[int] = []
    seen: set[int] = set()
    i = 0
    while len(order) < height * width:
        i += 1
        cell = int(radical_inverse(i, 2) * height) * width + int(radical_inverse(i, 3) * width)
        if cell not in seen:
            seen.add(cell)
            order.append(cell)
    return tuple(order)
