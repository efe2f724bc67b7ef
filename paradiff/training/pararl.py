"""`paradiff train pararl`: ParaRL, semantic rewards along the denoising trajectory (diffusion GRPO).

Every step draws `rollout.prompts` prompts and samples G = `rollout.group` answers to each with
the parallel sampler (temperatures > 0, unguided), recording the trajectories x_0 .. x_T. A set S
of `reward.steps` step indices is drawn once per rollout batch. At each t in S the partial answer
x_{t+1} is scored by the reward (`reward.at: trajectory`, ParaRL), or every t in S takes the
final answer's score (`reward.at: final`, the output-level baseline, all else equal). Raw scores
are normalised to [0, 1] with statistics estimated once on a random 1% of the prompts
(`RewardNormaliser`, stored with the run), then turned into group-relative advantages A_{i,t}
(`grpo.group_advantages`).

The tokens o_{i,t} decoded at step t are scored by replaying the recorded state x_t
(`grpo.replay_log_probs`). With rho = pi_theta / pi_old (pi_old: the rollout policy, computed once
per batch) and pi_ref the frozen initial (SFT) model, the loss is

    L = 1/|U| sum_{(i,t) in U} 1/|o_{i,t}| sum_{o in o_{i,t}}
            -[ min(rho A_{i,t}, clip(rho, 1 - eps, 1 + eps) A_{i,t}) - beta k3 ],
    k3 = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1,

over the (rollout, scored step) units U that decoded at least one token; `train.updates_per_batch`
optimizer steps are taken on each rollout batch.

`train.estimator: masked` (with `reward.at: final`) scores every token of the final answer
instead of the few decoded at s steps: each of `train.mask_draws` units per rollout masks the
answer x_T at a random ratio t ~ U(0, 1) and takes log pi(o | masked x_T) at the masked
positions — the one-forward likelihood estimate of masked-diffusion GRPO, the loss above
otherwise unchanged (`train.shared_masks` lets a prompt's G rollouts share each mask; measured
worse than a mask per rollout). `train.advantage: positive` keeps only advantages above 0 (rollouts better
than their group's mean are learned from, the others are left alone); `best` learns each group's
best answer (A = 1 when it beats the group's mean, `grpo.best_of_group`) and leaves the other
rows out of the loss altogether, which costs 1/G of the forwards. `eval.call` logs held-out
scores before the first step, every `eval.every` steps and at the end. Checkpoints are loadable pipelines plus
`training_state.pt` (as SFT's: the run loop is `paradiff.training.loop`'s, the settings
`paradiff.training.pararl_settings`); `--resume` continues from the latest one. Prompts, row
seeds and scored steps come from generators seeded by (seed, step), and the global generators
are seeded from `train.seed` and carried by every checkpoint, so a resumed run repeats an
uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import torch
from tqdm import tqdm

from paradiff.pipeline import ParallelPipeline
from paradiff.sampling import SamplerConfig
from paradiff.sampling.config import SamplerConfigError
from paradiff.sampling.sampler import make_plan
from paradiff.training.grpo import (
    best_of_group,
    group_advantages,
    grpo_terms,
    random_answer_masks,
    replay_log_probs,
    select_steps,
    step_window,
)
from paradiff.training.loop import TrainingLoop
from paradiff.training.pararl_settings import RLSettings, RolloutSettings
from paradiff.training.recipe import RecipeError
from paradiff.training.rewards import Reward, RewardNormaliser, stats_prompt_count
from paradiff.training.rollouts import Rollouts, RolloutSampler, load_records
from paradiff.training.runs import example_generator
from paradiff.training.settings import recorded

DEFAULTS = RLSettings.defaults()  # the recipe's keys and defaults (`load_recipe`)
STATS_FILE = "reward_stats.json"
STATS_STREAM = 1  # generator stream of the statistics rollouts (training steps use 0)
MASK_STREAM = 2  # generator stream of the masked estimator's masks


def rollout_sampler_config(defaults: SamplerConfig, rollout: RolloutSettings) -> SamplerConfig:
    """The checkpoint's sampler settings with the recipe's rollout settings, unguided (the policy
    is the conditional model itself), one sample per rollout (no best-of selection: rollouts are
    the policy's own samples) and in the default profile."""
    try:
        return defaults.replace(
            text_temperature=rollout.text_temperature,
            image_temperature=rollout.image_temperature,
            cfg_text=0.0,
            cfg_image=0.0,
            best_of=1,
            profile="default",
            **rollout.sampler_changes(),
        )
    except SamplerConfigError as err:
        raise RecipeError(f"rollout: {err}") from None


class ParaRLRun(TrainingLoop):
    """One ParaRL (or output-level RL) run: prompts, policy, reference, reward, and the shared
    loop (optimizer, schedule, checkpoints, logs)."""

    NAME = "pararl"
    EXTRA_FILES = (STATS_FILE,)
    EVALUATE_FIRST = True  # the curve's origin: the initial model

    def __init__(
        self,
        config: RLSettings | Mapping[str, Any],
        resume: bool = False,
        progress: bool = True,
        reward: Reward | None = None,
        overwrite: bool = False,
    ) -> None:
        """`config`: the settings, or a merged recipe (`load_recipe`) to check first; `reward`
        replaces the one the recipe names (tests, custom rewards); `resume` and `overwrite` as
        SFT's (`paradiff.training.runs`)."""
        self.settings = settings = RLSettings.of(config)
        self.set_threads()
        self.progress = progress
        device = "cuda" if torch.cuda.is_available() else "cpu"
        # everything that can refuse the recipe comes before the folder is touched
        init = settings.model.init
        initial = ParallelPipeline.from_pretrained(init, "float32", device)
        self.sampler_config = rollout_sampler_config(initial.sampler_defaults, settings.rollout)
        self.n_steps = len(make_plan(self.sampler_config))
        reward_settings = settings.reward
        self.window = step_window(self.n_steps, *reward_settings.window)
        if reward_settings.steps > len(self.window):
            raise RecipeError(
                f"reward.steps {reward_settings.steps} exceeds the {len(self.window)} sampler"
                f" steps of reward.window {list(reward_settings.window)}"
            )
        self.records, image_root = load_records(settings.data.records, settings.data.limit)
        self.reward = reward or reward_settings.build(device)
        start_from = self.start_folder(resume, overwrite)
        self.reference = initial.model.eval().requires_grad_(False)
        self.pipe = ParallelPipeline.from_pretrained(str(start_from or init), "float32", device)
        self.rollouts = RolloutSampler(self.pipe, self.sampler_config, image_root)
        self.normaliser: RewardNormaliser | None = None
        self.start_optimizer(self.pipe.model)
        if self.normaliser is None and resume and (self.out / STATS_FILE).is_file():
            self.normaliser = RewardNormaliser.load(self.out / STATS_FILE)

    # -- rollouts ------------------------------------------------------------------------------
    def step_rollouts(self, step: int) -> Rollouts:
        """Step `step`'s prompts (G rows each), row seeds and scored steps, then the samples."""
        rollout = self.settings.rollout
        gen = example_generator(self.settings.train.seed, step, 0)
        prompts = torch.randperm(len(self.records), generator=gen)[: rollout.prompts]
        rows = [self.records[int(i)] for i in prompts for _ in range(rollout.group)]
        seeds = torch.randint(2**31 - 1, (len(rows),), generator=gen).tolist()
        steps = select_steps(self.n_steps, self.settings.reward.steps, gen, self.window)
        return self.rollouts.sample(rows, seeds, steps)

    def estimate_statistics(self) -> RewardNormaliser:
        """Reward statistics from one rollout of each of a random 1% of the prompts (at least
        `stats_min_prompts`), scored where the run scores (scored steps, or the final answer)."""
        reward, rollout = self.settings.reward, self.settings.rollout
        count = stats_prompt_count(
            len(self.records), reward.stats_fraction, reward.stats_min_prompts
        )
        gen = example_generator(self.settings.train.seed, 0, STATS_STREAM)
        chosen = torch.randperm(len(self.records), generator=gen)[:count].tolist()
        chunk = rollout.prompts * rollout.group
        scores = []
        for start in tqdm(
            range(0, count, chunk), desc="reward statistics", disable=not self.progress
        ):
            rows = [self.records[i] for i in chosen[start : start + chunk]]
            seeds = torch.randint(2**31 - 1, (len(rows),), generator=gen).tolist()
            steps = select_steps(self.n_steps, reward.steps, gen, self.window)
            rollouts = self.rollouts.sample(rows, seeds, steps)
            raw, _ = self.rollouts.raw_scores(self.reward, rollouts, reward.at)
            scores.append(raw.flatten())
        return RewardNormaliser.fit(torch.cat(scores), reward.clip_range)

    # -- training ------------------------------------------------------------------------------
    def loss_units(
        self, rollouts: Rollouts, advantages: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(state before, state after, advantages (B,)) of each group of tokens the loss scores.

        estimator steps: the scored steps' transitions x_t -> x_{t+1}, with their advantages.
        estimator masked: `mask_draws` random maskings of the final answer x_T -> x_T (the
        tokens each masks), with the final answer's advantages; their log-probabilities are the
        one-forward estimate of the answer's likelihood used by masked-diffusion GRPO."""
        trajectory, train = rollouts.trajectory, self.settings.train
        if train.estimator == "steps":
            return [
                (trajectory[t], trajectory[t + 1], advantages[:, j])
                for j, t in enumerate(rollouts.steps)
            ]
        gen = example_generator(train.seed, self.step, MASK_STREAM)
        final, mask_id = trajectory[-1], self.pipe.space.mask_id
        group = self.settings.rollout.group if train.shared_masks else 1
        answer = trajectory[0] == mask_id  # (B, A): the positions the sampler decoded
        units = []
        for _ in range(train.mask_draws):
            masked = random_answer_masks(answer, gen, group)
            units.append((torch.where(masked, mask_id, final), final, advantages[:, 0]))
        return units

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """The advantages (B, S) of normalised rewards (B, S) by `train.advantage`."""
        group, kind = self.settings.rollout.group, self.settings.train.advantage
        if kind == "best":
            return best_of_group(rewards, group)
        advantages = group_advantages(rewards, group, scaled=kind != "centred")
        return advantages.clamp(min=0) if kind == "positive" else advantages

    def train_step(self) -> dict[str, Any]:
        """Roll out, score, and take `updates_per_batch` optimizer steps on the batch."""
        train = self.settings.train
        started = time.perf_counter()
        rollouts = self.step_rollouts(self.step)
        sampled = time.perf_counter()
        raw, final_raw = self.rollouts.raw_scores(self.reward, rollouts, self.settings.reward.at)
        rewards = self.normaliser(raw)  # (B, S)
        advantages = self.advantages(rewards)  # (B, S)
        if train.advantage == "best":  # the rows that learn nothing are left out
            keep = advantages.ne(0).any(1)  # (B,)
            rollouts, advantages = rollouts.rows(keep), advantages[keep]
        model = self.pipe.model
        # (no row left: every group was all equal, and the step only moves the schedule)
        units = self.loss_units(rollouts, advantages) if len(advantages) else []
        replay = (rollouts.batch, rollouts.answer_start)
        with torch.no_grad():
            ref = [
                replay_log_probs(self.reference, *replay, b, a, self.sampler_config)
                for b, a, _ in units
            ]
        n_units = max(1, sum(int(decoded.any(-1).sum()) for _, decoded in ref))
        # pi_old is the rollout policy, the model before this batch's updates: the first pass
        # over the scored steps (the optimizer steps only after it) gives its log-probabilities
        old: list[torch.Tensor | None] = [None] * len(units)
        model.train()
        updates = train.updates_per_batch
        loss_sum = kl_sum = clipped_sum = 0.0
        for _ in range(updates):
            for j, (before, after, advantage) in enumerate(units):
                new, decoded = replay_log_probs(model, *replay, before, after, self.sampler_config)
                if old[j] is None:
                    old[j] = new.detach()
                terms = grpo_terms(
                    new,
                    old[j],
                    ref[j][0],
                    advantage.to(new.device),
                    decoded,
                    train.clip_eps,
                    train.kl_beta,
                )
                loss = terms.loss[terms.has_tokens].sum() / n_units
                loss.backward()  # accumulated over the units: one graph at a time
                loss_sum += float(loss.detach())
                kl_sum += float(terms.kl[terms.has_tokens].sum()) / n_units
                clipped_sum += float(terms.clipped[terms.has_tokens].sum()) / n_units
            self.optimizer_step()
        lr = self.end_step()
        return {
            "step": self.step,
            "reward": round(float(rewards.mean()), 5),
            "reward_raw": round(float(raw.mean()), 5),
            "final_raw": round(float(final_raw.mean()), 5),
            "loss": round(loss_sum / updates, 6),
            "kl": round(kl_sum / updates, 6),
            "clip_frac": round(clipped_sum / updates, 4),
            "lr": lr,
            "scored_steps": rollouts.steps,
            "reward_by_step": [round(float(r), 5) for r in rewards.mean(0)],  # (S,)
            "rollout_s": round(sampled - started, 2),
            "step_s": round(time.perf_counter() - started, 2),
        }

    def before_training(self) -> None:
        """The reward statistics, estimated once (a resumed run reads them)."""
        if self.normaliser is None:
            self.normaliser = self.estimate_statistics()
            self.normaliser.save(self.out / STATS_FILE)

    def log_line(self, result: dict[str, Any]) -> dict[str, Any]:
        return result

    def postfix(self, line: dict[str, Any]) -> dict[str, Any]:
        return {"reward": line["reward"], "final": line["final_raw"], "kl": line["kl"]}

    # -- checkpoints ---------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"normaliser": asdict(self.normaliser)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        was_at, now_at = recorded(state["config"], "reward.at"), self.settings.reward.at
        if was_at != now_at:
            raise RecipeError(f"{self.out} was trained with reward.at={was_at}, not {now_at}")
        self.normaliser = RewardNormaliser(**state["normaliser"])
