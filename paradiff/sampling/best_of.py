"""Best-of-K sampling: K answers per prompt, the one the model itself finds most coherent kept.

An answer's score is the model's own log-likelihood of its output image given its reasoning:
the output image masked whole and everything else (prompt, input image, the answer's reasoning)
given, one forward, the log-probabilities of the answer's codes summed,

    score(t, x) = sum_i log p(x_i | prompt, input, t, x masked).

With the image masked the positions' distributions do not depend on the candidate's image, so
the score is largest for the codes the reasoning makes most likely: a picture that does not
follow from its own reasoning scores low. No judge or reward model is involved; the cost is K
sampling runs and one forward per candidate. (`docs/results.md` measures this rule against
scoring the reasoning given the image and against their sum.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from paradiff.layout import Batch, TokenSpace
from paradiff.model import MaskPredictor


@torch.no_grad()
def masked_log_likelihood(
    model: MaskPredictor,
    space: TokenSpace,
    ids: torch.Tensor,
    batch: Batch,
    positions: torch.Tensor,
    vocab: tuple[int, int],
) -> torch.Tensor:
    """sum_i log p(ids_i | the rest) over `positions` (P,), all of them masked in one forward,
    of each answer in `ids` (B, L), B = the conditional rows of `batch`; returns (B,)."""
    rows = ids.shape[0]
    positions = positions.to(ids.device)
    masked = ids.clone()
    masked[:, positions] = space.mask_id
    hidden = model.hidden_states(masked, batch.attention_mask[:rows].to(ids.device))
    logits = model.logits(hidden[:, positions], vocab_range=vocab).float()
    log_probs = torch.log_softmax(logits, -1)  # (B, P, V')
    targets = ids[:, positions] - vocab[0]  # (B, P)
    return log_probs.gather(-1, targets[..., None])[..., 0].sum(-1)


def image_given_text_score(
    model: MaskPredictor, space: TokenSpace, ids: torch.Tensor, batch: Batch
) -> torch.Tensor:
    """The best-of score (B,): log p(output image | the rest), the whole image masked."""
    return masked_log_likelihood(model, space, ids, batch, batch.output_image, space.image_vocab)


def candidate_seeds(seeds: Sequence[int] | None, k: int) -> list[int] | None:
    """The seeds of candidate k: seed + k per row (candidate 0 keeps the request's seed)."""
    return None if seeds is None else [(int(s) + k) % 2**63 for s in seeds]
