"""The diffusion GRPO objective of ParaRL: group-relative advantages, replayed step
log-probabilities and the clipped token-level ratio loss with a k3 KL penalty.

A rollout's trajectory x_0 (fully masked) .. x_T (the answer) records the answer part after
every sampler step. Step t (0-based) turns x_t into x_{t+1}; the tokens o_t it decoded are the
positions masked in x_t and not in x_{t+1}. Their probability under a model pi is the one the
sampler drew them from: with logits l = head(hidden(x_t)) at the position and T_m the
temperature of the token's modality m,

    log pi(o | x_t) = log softmax(l / T_m)[o]

over m's vocabulary: text ids [0, image_offset) without the mask id (the sampler never picks
it), or the image codebook. Rollouts are unguided, so l is the conditional model's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from paradiff.layout import Batch, token_space_from_config
from paradiff.model import MaskPredictor
from paradiff.sampling import SamplerConfig


def by_group(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """Rewards (P * G, S), G consecutive rows per prompt, viewed as (P, G, S)."""
    if rewards.shape[0] % group:
        raise ValueError(f"{rewards.shape[0]} rollouts do not split into groups of {group}")
    return rewards.view(-1, group, *rewards.shape[1:])


def group_advantages(
    rewards: torch.Tensor, group: int, eps: float = 1e-6, scaled: bool = True
) -> torch.Tensor:
    """Group-relative advantages of rewards (P * G, S), G consecutive rows per prompt:

        A_{i,s} = (r_{i,s} - mean_G r_{.,s}) / (std_G r_{.,s} + eps)

    per group and scored step s (population std, so a group of equal rewards gets 0); with
    `scaled` False, A_{i,s} = r_{i,s} - mean_G r_{.,s} (Dr. GRPO: a group whose rewards differ by
    a hair keeps a hair of advantage instead of a full unit)."""
    grouped = by_group(rewards.double(), group)  # (P, G, S)
    centred = grouped - grouped.mean(1, keepdim=True)
    if scaled:
        centred = centred / (grouped.std(1, unbiased=False, keepdim=True) + eps)
    return centred.view_as(rewards).float()


def best_of_group(rewards: torch.Tensor, group: int) -> torch.Tensor:
    """A_{i,s} = 1 for the first rollout with its group's highest reward at scored step s when
    that reward is above the group's mean, else 0 (rewards (P * G, S), G consecutive rows per
    prompt): the group's best answer is learned as a training target and nothing else is
    (reward-ranked fine-tuning, RAFT), so a group of equal rewards teaches nothing."""
    grouped = by_group(rewards, group)  # (P, G, S)
    best = grouped.argmax(1, keepdim=True)  # (P, 1, S): the first of the ties
    top = grouped.gather(1, best)
    one_hot = torch.zeros_like(grouped).scatter_(1, best, 1.0)
    return (one_hot * (top > grouped.mean(1, keepdim=True))).view_as(rewards).float()


KL_LOG_BOUND = 20.0  # |log pi_ref / pi_theta| per token in k3
KL_TOKEN_BOUND = 10.0  # k3 per token


@dataclass
class UnitTerms:
    """Per (rollout, step) unit: the mean token loss, the mean k3 KL, the share of tokens whose
    ratio left [1 - eps, 1 + eps], and whether the unit decoded any token."""

    loss: torch.Tensor  # (N,)
    kl: torch.Tensor  # (N,) detached
    clipped: torch.Tensor  # (N,) detached
    has_tokens: torch.Tensor  # (N,) bool


def grpo_terms(
    new_logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    tokens: torch.Tensor,
    clip_eps: float,
    beta: float,
) -> UnitTerms:
    """The clipped ratio objective with a k3 KL penalty, averaged over each unit's tokens.

    new_logp, old_logp, ref_logp, tokens: (N, K), log-probabilities of K token slots under the
    trained, rollout and reference policies, `tokens` marking the slots decoded; advantages (N,).
    Per token, with r = exp(new - old) and d = ref - new:

        loss = -(min(r A, clip(r, 1 - eps, 1 + eps) A) - beta k3),  k3 = exp(d) - d - 1

    (k3 >= 0 estimates KL(pi_theta || pi_ref) without bias); d is clamped to +-KL_LOG_BOUND and
    k3 to KL_TOKEN_BOUND, so a token the policy has made unlikely (k3 grows as exp(d)) cannot
    swamp the batch's gradient under gradient clipping (a clamped token's k3 passes no
    gradient); a unit's loss is the mean over its decoded tokens (0 for a unit without any)."""
    tokens = tokens.bool()
    mask = tokens.to(new_logp.dtype)
    count = mask.sum(-1)  # (N,)
    ratio = torch.exp(torch.where(tokens, new_logp - old_logp, 0.0))  # (N, K)
    adv = advantages[:, None].to(new_logp.dtype)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    log_ref_ratio = torch.where(tokens, ref_logp - new_logp, 0.0).clamp(-KL_LOG_BOUND, KL_LOG_BOUND)
    kl = (torch.exp(log_ref_ratio) - log_ref_ratio - 1).clamp(max=KL_TOKEN_BOUND)
    token_loss = -(surrogate - beta * kl)
    clipped = ((ratio - 1).abs() > clip_eps).to(new_logp.dtype)

    def unit_mean(values: torch.Tensor) -> torch.Tensor:
        return (values * mask).sum(-1) / count.clamp(min=1)

    return UnitTerms(
        unit_mean(token_loss), unit_mean(kl).detach(), unit_mean(clipped).detach(), count > 0
    )


def replay_log_probs(
    model: MaskPredictor,
    batch: Batch,
    answer_start: int,
    before: torch.Tensor,
    after: torch.Tensor,
    config: SamplerConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(o | x_t) of the tokens one sampler step decoded, by replaying its input state.

    batch: the rollouts' batch (its answer parts are replaced); before, after (B, A): the answer
    part (columns answer_start..) before and after the step. Returns log_probs (B, A), 0 where
    nothing was decoded, and decoded (B, A) bool."""
    space = token_space_from_config(model.config)
    device = model.device
    before, after = before.to(device).long(), after.to(device).long()
    ids = batch.ids.to(device).clone()
    ids[:, answer_start:] = before
    hidden = model.hidden_states(ids, batch.attention_mask.to(device))  # (B, L, d)
    decoded = (before == space.mask_id) & (after != space.mask_id)  # (B, A)
    log_probs = torch.zeros(before.shape, dtype=torch.float32, device=device)
    for positions, vocab, temperature in (
        (batch.text, space.text_vocab, config.text_temperature),
        (batch.output_image, space.image_vocab, config.image_temperature),
    ):
        columns = positions.to(device) - answer_start  # (P,)
        here = decoded[:, columns]  # (B, P)
        if not here.any():
            continue
        logits = model.logits(hidden, positions, vocab).float() / temperature  # (B, P, V')
        if vocab == space.text_vocab:
            space.forbid_mask(logits)
        index = torch.where(here, after[:, columns] - vocab[0], 0)
        picked = torch.log_softmax(logits, -1).gather(-1, index[..., None])[..., 0]  # (B, P)
        log_probs[:, columns] = torch.where(here, picked, 0.0)
    return log_probs, decoded


def random_answer_masks(
    answer: torch.Tensor, generator: torch.Generator, group: int = 1
) -> torch.Tensor:
    """Random masks (B, A) over the True positions of `answer` (B, A): per group of `group`
    consecutive rows one ratio t ~ U(0, 1) and one draw, each position masked with probability t,
    and at least one masked (a row's first position when the draw masked none).

    Scoring a finished answer's tokens at the masked positions of such states averages the
    one-step log-probabilities over noise levels as the masked-diffusion training loss does. With
    `group` > 1 the rows of a group (one prompt's rollouts, same layout) share their mask: the
    terms of tokens they share in the same context then cancel in sum_i A_i log pi, but the
    gradient averages over fewer independent masks (measured noisier,
    benchmarks/rl_gradient_agreement.py)."""
    rows, columns = answer.shape
    if rows % group:
        raise ValueError(f"{rows} rollouts do not split into groups of {group}")
    ratio = torch.rand(rows // group, 1, generator=generator)  # (P, 1)
    draws = torch.rand(rows // group, columns, generator=generator)  # (P, A)
    shared = (draws < ratio).repeat_interleave(group, 0)  # (B, A)
    masked = answer & shared
    first = torch.where(answer.any(1), answer.float().argmax(1), 0)  # (B,)
    empty = ~masked.any(1) & answer.any(1)
    masked[empty, first[empty]] = True
    return masked


def step_window(n_steps: int, start: float = 0.0, stop: float = 1.0) -> range:
    """The step indices a fraction window [start, stop] of the timeline covers: [floor(start n),
    ceil(stop n)), at least one step (start 0.5 = the later half of the sampling steps)."""
    if not 0 <= start < stop <= 1:
        raise ValueError(
            f"the scored-step window needs 0 <= start < stop <= 1, got {start}, {stop}"
        )
    first = min(math.floor(start * n_steps), n_steps - 1)
    return range(first, max(first + 1, math.ceil(stop * n_steps)))


def select_steps(
    n_steps: int, count: int, generator: torch.Generator, window: range | None = None
) -> list[int]:
    """`count` distinct step indices of `window` (default: all of [0, n_steps)), drawn with
    `generator`, in order."""
    window = range(n_steps) if window is None else window
    picks = torch.randperm(len(window), generator=generator)[:count].tolist()
    return sorted(window[i] for i in picks)
