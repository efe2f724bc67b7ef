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
than their group's mean are learned from, the others are left alone). `eval.call` logs held-out
scores before the first step, every `eval.every` steps and at the end. Checkpoints are loadable pipelines plus
`training_state.pt` (as SFT's); `--resume` continues from the latest one. Prompts, row seeds
and scored steps come from generators seeded by (seed, step), so a resumed run repeats an
uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from paradiff.pipeline import ParallelPipeline
from paradiff.sampling import SamplerConfig
from paradiff.sampling.config import SamplerConfigError
from paradiff.sampling.sampler import make_plan
from paradiff.training.grpo import (
    group_advantages,
    grpo_terms,
    random_answer_masks,
    replay_log_probs,
    select_steps,
    step_window,
)
from paradiff.training.loop import (
    adamw,
    load_optimizer_state,
    restore_rng,
    rng_state,
    seed_generators,
)
from paradiff.training.recipe import (
    RecipeError,
    check_eval_settings,
    check_optimizer_settings,
    evaluation_function,
)
from paradiff.training.rewards import Reward, RewardNormaliser, build_reward, stats_prompt_count
from paradiff.training.rollouts import Rollouts, RolloutSampler, load_records
from paradiff.training.runs import (
    FINAL_DIR,
    RunFolder,
    check_output_settings,
    example_generator,
    warmup_cosine_schedule,
)
from paradiff.training.trackers import Tracker

DEFAULTS: dict[str, Any] = {
    "model": {
        "init": None,  # the SFT model: where training starts, and the KL reference
    },
    "data": {
        "records": None,  # training records JSONL (docs/architecture.md; images relative to it)
        "limit": None,  # use only the first N records as the prompt pool
    },
    "rollout": {
        "prompts": 4,  # prompts per step
        "group": 4,  # G rollouts per prompt
        "text_temperature": 1.0,
        "image_temperature": 1.0,
        "text_steps": None,  # None: the checkpoint's sampler setting
        "image_steps": None,
        "remasking": None,
        "mode": None,
        # a speed preset (fast: cached forwards) makes rollouts cheaper; the loss still scores
        # them with full forwards, so the sampling policy is the scored one only approximately
        "speed": None,
    },
    "reward": {
        # clip, colour_share, word_share, or a registered kind (scene_agreement, shapes_judge)
        "kind": "clip",
        "clip_dir": None,  # the CLIP directory of kind: clip
        "colour": None,  # [r, g, b] in [0, 1] of kind: colour_share
        "tolerance": 0.1,  # kind colour_share: how near a pixel must be (max over channels)
        "word": None,  # kind word_share: the word whose share of the reasoning's words is scored
        "metrics": None,  # kind shapes_judge: {metric: weight} (all six equally when unset)
        "at": "trajectory",  # trajectory (ParaRL) or final (output-level RL)
        "steps": 3,  # s: scored steps per rollout batch
        "window": [
            0.0,
            1.0,
        ],  # the share of the timeline they are drawn from ([0.5, 1]: later half)
        "clip_range": 3.0,  # c: standardised rewards clipped to [-c, c]
        "stats_fraction": 0.01,  # share of the prompts that estimates the statistics
        "stats_min_prompts": 32,
    },
    "train": {
        "steps": 100,
        "lr": 1e-5,
        "min_lr_ratio": 1.0,
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "betas": [0.9, 0.99],
        "grad_clip": 1.0,  # 0: no clipping
        "clip_eps": 0.2,  # ratio clip range
        "kl_beta": 0.01,  # weight of the KL penalty to the initial model
        "updates_per_batch": 1,  # optimizer steps on one rollout batch
        # steps: the loss on the tokens decoded at the scored steps, replayed (the paper's);
        # masked: on the final answer's tokens under `mask_draws` random masks per rollout
        "estimator": "steps",
        "mask_draws": 1,
        # masked: one prompt's rollouts share each mask draw (off: measured to halve the agreement
        # of two gradient estimates, benchmarks/rl_gradient_agreement.py)
        "shared_masks": False,
        # group: A = (r - mean) / std of the group (GRPO); centred: A = r - mean (Dr. GRPO, no
        # division by the group's std); positive: only rollouts above their group's mean are
        # learned from (the others get A = 0), reward-filtered self-training
        "advantage": "group",
        "seed": 0,
        "threads": None,
    },
    "eval": {
        # "module:function" called as function(pipeline, limit=limit) -> dict (held-out scores,
        # e.g. paradiff.shapes.probe:development_evaluation), logged as {"step", "eval"} before
        # the first step, every `every` steps and at the end
        "call": None,
        "every": 0,
        "limit": 60,
    },
    "output": {
        "dir": "runs/pararl",
        "save_every": 20,
        "log_every": 1,
        "keep": 2,  # checkpoints kept besides the final one
        "log_with": None,  # tensorboard: the log's numbers to TensorBoard too
    },
}
REWARD_AT = ("trajectory", "final")
ESTIMATORS = ("steps", "masked")
ADVANTAGES = ("group", "centred", "positive")
ROLLOUT_SAMPLER_KEYS = ("text_steps", "image_steps", "remasking", "mode", "speed")
STATS_FILE = "reward_stats.json"
STATS_STREAM = 1  # generator stream of the statistics rollouts (training steps use 0)
MASK_STREAM = 2  # generator stream of the masked estimator's masks


def check_config(config: dict[str, Any]) -> None:
    rollout, reward, train = config["rollout"], config["reward"], config["train"]
    if not config["model"]["init"]:
        raise RecipeError("model.init is not set (the SFT checkpoint to start from)")
    if not config["data"]["records"]:
        raise RecipeError("data.records is not set (a training records JSONL)")
    if reward["at"] not in REWARD_AT:
        raise RecipeError(f"reward.at must be one of {REWARD_AT}, got {reward['at']!r}")
    if train["estimator"] not in ESTIMATORS:
        raise RecipeError(
            f"train.estimator must be one of {ESTIMATORS}, got {train['estimator']!r}"
        )
    if train["advantage"] not in ADVANTAGES:
        raise RecipeError(
            f"train.advantage must be one of {ADVANTAGES}, got {train['advantage']!r}"
        )
    if not isinstance(train["shared_masks"], bool):
        raise RecipeError(
            f"train.shared_masks must be true or false, got {train['shared_masks']!r}"
        )
    if train["estimator"] == "masked" and reward["at"] != "final":
        raise RecipeError(
            "train.estimator: masked scores the final answer's tokens; it needs reward.at: final"
        )
    minimums = {
        "rollout.prompts": (rollout["prompts"], 1),
        "rollout.group": (rollout["group"], 2),  # advantages are relative to the group
        "reward.steps": (reward["steps"], 1),
        "reward.stats_min_prompts": (reward["stats_min_prompts"], 1),
        "train.updates_per_batch": (train["updates_per_batch"], 1),
        "train.mask_draws": (train["mask_draws"], 1),
    }
    if config["data"]["limit"] is not None:
        minimums["data.limit"] = (config["data"]["limit"], 1)
    for name, (value, least) in minimums.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise RecipeError(f"{name} must be a whole number of at least {least}, got {value!r}")
    positive = {
        "rollout.text_temperature": rollout["text_temperature"],  # rollouts are sampled
        "rollout.image_temperature": rollout["image_temperature"],
        "reward.clip_range": reward["clip_range"],
        "reward.stats_fraction": reward["stats_fraction"],
        "train.clip_eps": train["clip_eps"],
    }
    for name, value in positive.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise RecipeError(f"{name} must be a positive number, got {value!r}")
    if not isinstance(train["kl_beta"], int | float) or train["kl_beta"] < 0:
        raise RecipeError(f"train.kl_beta must be a non-negative number, got {train['kl_beta']!r}")
    window = reward["window"]
    if not isinstance(window, list | tuple) or len(window) != 2:
        raise RecipeError(f"reward.window must be [start, stop], got {window!r}")
    try:
        step_window(1, float(window[0]), float(window[1]))
    except (TypeError, ValueError) as err:
        raise RecipeError(f"reward.window: {err}") from None
    check_optimizer_settings(train)
    check_eval_settings(config["eval"])
    check_output_settings(config["output"])


def rollout_sampler_config(defaults: SamplerConfig, rollout: dict[str, Any]) -> SamplerConfig:
    """The checkpoint's sampler settings with the recipe's rollout settings, unguided (the policy
    is the conditional model itself), one sample per rollout (no best-of selection: rollouts are
    the policy's own samples) and in the default profile."""
    changes = {key: rollout[key] for key in ROLLOUT_SAMPLER_KEYS if rollout[key] is not None}
    try:
        return defaults.replace(
            text_temperature=float(rollout["text_temperature"]),
            image_temperature=float(rollout["image_temperature"]),
            cfg_text=0.0,
            cfg_image=0.0,
            best_of=1,
            profile="default",
            **changes,
        )
    except SamplerConfigError as err:
        raise RecipeError(f"rollout: {err}") from None


class ParaRLRun:
    """One ParaRL (or output-level RL) run: prompts, policy, reference, reward, checkpoints."""

    def __init__(
        self,
        config: dict[str, Any],
        resume: bool = False,
        progress: bool = True,
        reward: Reward | None = None,
        overwrite: bool = False,
    ) -> None:
        """`reward` replaces the one the recipe names (tests, custom rewards); `resume` and
        `overwrite` as SFT's (`paradiff.training.runs`)."""
        check_config(config)
        self.config = config
        train = config["train"]
        if train["threads"]:
            torch.set_num_threads(int(train["threads"]))
        self.progress = progress
        self.folder = RunFolder(config["output"]["dir"], extra_files=(STATS_FILE,))
        self.out = self.folder.root
        device = "cuda" if torch.cuda.is_available() else "cpu"
        # everything that can refuse the recipe comes before the folder is touched
        init = str(config["model"]["init"])
        initial = ParallelPipeline.from_pretrained(init, "float32", device)
        self.sampler_config = rollout_sampler_config(initial.sampler_defaults, config["rollout"])
        self.n_steps = len(make_plan(self.sampler_config))
        start, stop = config["reward"]["window"]
        self.window = step_window(self.n_steps, float(start), float(stop))
        if int(config["reward"]["steps"]) > len(self.window):
            raise RecipeError(
                f"reward.steps {config['reward']['steps']} exceeds the {len(self.window)} sampler"
                f" steps of reward.window {config['reward']['window']}"
            )
        self.records, image_root = load_records(config["data"]["records"], config["data"]["limit"])
        reward_cfg = config["reward"]
        self.reward = reward or build_reward(reward_cfg["kind"], reward_cfg, device)
        start_from = self.folder.start(resume, overwrite)
        resumed = self.folder.load_state(start_from) if start_from else None  # damaged: now
        self.tracker = Tracker(config["output"], "pararl", config)
        self.reference = initial.model.eval().requires_grad_(False)
        self.pipe = ParallelPipeline.from_pretrained(str(start_from or init), "float32", device)
        self.rollouts = RolloutSampler(self.pipe, self.sampler_config, image_root)
        self.optimizer = adamw(self.pipe.model, train["lr"], train["betas"], train["weight_decay"])
        self.scheduler = warmup_cosine_schedule(self.optimizer, train)
        self.step = 0
        self.rng: dict[str, Any] | None = None  # the checkpoint's generators, restored by run()
        self.normaliser: RewardNormaliser | None = None
        if resumed is not None:
            self.load_state(resumed)
        elif resume and (self.out / STATS_FILE).is_file():
            self.normaliser = RewardNormaliser.load(self.out / STATS_FILE)

    # -- rollouts ------------------------------------------------------------------------------
    def step_rollouts(self, step: int) -> Rollouts:
        """Step `step`'s prompts (G rows each), row seeds and scored steps, then the samples."""
        rollout, seed = self.config["rollout"], int(self.config["train"]["seed"])
        gen = example_generator(seed, step, 0)
        prompts = torch.randperm(len(self.records), generator=gen)[: int(rollout["prompts"])]
        rows = [self.records[int(i)] for i in prompts for _ in range(int(rollout["group"]))]
        seeds = torch.randint(2**31 - 1, (len(rows),), generator=gen).tolist()
        steps = select_steps(self.n_steps, int(self.config["reward"]["steps"]), gen, self.window)
        return self.rollouts.sample(rows, seeds, steps)

    def estimate_statistics(self) -> RewardNormaliser:
        """Reward statistics from one rollout of each of a random 1% of the prompts (at least
        `stats_min_prompts`), scored where the run scores (scored steps, or the final answer)."""
        reward_cfg, seed = self.config["reward"], int(self.config["train"]["seed"])
        count = stats_prompt_count(
            len(self.records),
            float(reward_cfg["stats_fraction"]),
            int(reward_cfg["stats_min_prompts"]),
        )
        gen = example_generator(seed, 0, STATS_STREAM)
        chosen = torch.randperm(len(self.records), generator=gen)[:count].tolist()
        chunk = int(self.config["rollout"]["prompts"]) * int(self.config["rollout"]["group"])
        scores = []
        for start in tqdm(
            range(0, count, chunk), desc="reward statistics", disable=not self.progress
        ):
            rows = [self.records[i] for i in chosen[start : start + chunk]]
            seeds = torch.randint(2**31 - 1, (len(rows),), generator=gen).tolist()
            steps = select_steps(self.n_steps, int(reward_cfg["steps"]), gen, self.window)
            rollouts = self.rollouts.sample(rows, seeds, steps)
            raw, _ = self.rollouts.raw_scores(self.reward, rollouts, reward_cfg["at"])
            scores.append(raw.flatten())
        return RewardNormaliser.fit(torch.cat(scores), float(reward_cfg["clip_range"]))

    # -- training ------------------------------------------------------------------------------
    def loss_units(
        self, rollouts: Rollouts, advantages: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(state before, state after, advantages (B,)) of each group of tokens the loss scores.

        estimator steps: the scored steps' transitions x_t -> x_{t+1}, with their advantages.
        estimator masked: `mask_draws` random maskings of the final answer x_T -> x_T (the
        tokens each masks), with the final answer's advantages; their log-probabilities are the
        one-forward estimate of the answer's likelihood used by masked-diffusion GRPO."""
        trajectory = rollouts.trajectory
        if self.config["train"]["estimator"] == "steps":
            return [
                (trajectory[t], trajectory[t + 1], advantages[:, j])
                for j, t in enumerate(rollouts.steps)
            ]
        gen = example_generator(int(self.config["train"]["seed"]), self.step, MASK_STREAM)
        final, mask_id = trajectory[-1], self.pipe.space.mask_id
        group = int(self.config["rollout"]["group"]) if self.config["train"]["shared_masks"] else 1
        answer = trajectory[0] == mask_id  # (B, A): the positions the sampler decoded
        units = []
        for _ in range(int(self.config["train"]["mask_draws"])):
            masked = random_answer_masks(answer, gen, group)
            units.append((torch.where(masked, mask_id, final), final, advantages[:, 0]))
        return units

    def train_step(self) -> dict[str, Any]:
        """Roll out, score, and take `updates_per_batch` optimizer steps on the batch."""
        train, reward_cfg = self.config["train"], self.config["reward"]
        started = time.perf_counter()
        rollouts = self.step_rollouts(self.step)
        sampled = time.perf_counter()
        raw, final_raw = self.rollouts.raw_scores(self.reward, rollouts, reward_cfg["at"])
        rewards = self.normaliser(raw)  # (B, S)
        advantages = group_advantages(
            rewards, int(self.config["rollout"]["group"]), scaled=train["advantage"] != "centred"
        )  # (B, S)
        if train["advantage"] == "positive":
            advantages = advantages.clamp(min=0)
        model = self.pipe.model
        units = self.loss_units(rollouts, advantages)
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
        updates = int(train["updates_per_batch"])
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
                    float(train["clip_eps"]),
                    float(train["kl_beta"]),
                )
                loss = terms.loss[terms.has_tokens].sum() / n_units
                loss.backward()  # accumulated over the units: one graph at a time
                loss_sum += float(loss.detach())
                kl_sum += float(terms.kl[terms.has_tokens].sum()) / n_units
                clipped_sum += float(terms.clipped[terms.has_tokens].sum()) / n_units
            if train["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(train["grad_clip"]))
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.step += 1
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

    def run(self) -> Path:
        """Estimate the reward statistics (unless resumed), train, checkpoint; the final model's
        directory."""
        train, output = self.config["train"], self.config["output"]
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rng is not None:
            restore_rng(self.rng)
        elif self.step == 0:
            seed_generators(int(train["seed"]))
        if self.normaliser is None:
            self.normaliser = self.estimate_statistics()
            self.normaliser.save(self.out / STATS_FILE)
        total = int(train["steps"])
        every = int(self.config["eval"]["every"])
        if self.step == 0:
            self.evaluate()  # the curve's origin: the initial model
        bar = tqdm(total=total, initial=self.step, desc="pararl", disable=not self.progress)
        while self.step < total:
            line = self.train_step()
            bar.update(1)
            bar.set_postfix(reward=line["reward"], final=line["final_raw"], kl=line["kl"])
            if self.step % int(output["log_every"]) == 0 or self.step == total:
                echo = None if self.progress else lambda text: print(text, flush=True)
                self.folder.log(line, echo)
                self.tracker.log(line, self.step)
            if every and self.step % every == 0 and self.step < total:
                self.evaluate()
            if self.step % int(output["save_every"]) == 0 and self.step < total:
                self.save_checkpoint()
        bar.close()
        self.evaluate()
        self.tracker.finish()
        self.save_checkpoint()
        self.pipe.save_pretrained(self.out / FINAL_DIR)
        return self.out / FINAL_DIR

    def evaluate(self) -> None:
        """The recipe's `eval.call` on the policy as it is now, appended to the log."""
        spec = self.config["eval"]
        if not spec["call"]:
            return
        result = evaluation_function(spec["call"])(self.pipe, limit=int(spec["limit"]))
        echo = None if self.progress else lambda text: print(text, flush=True)
        self.folder.log({"step": self.step, "eval": result}, echo)

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        state = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "normaliser": asdict(self.normaliser),
            "config": self.config,
        }
        keep = int(self.config["output"]["keep"])
        return self.folder.write_checkpoint(self.pipe, self.step, state, keep)

    def load_state(self, state: dict[str, Any]) -> None:
        was_at, now_at = state["config"]["reward"]["at"], self.config["reward"]["at"]
        if was_at != now_at:
            raise RecipeError(f"{self.out} was trained with reward.at={was_at}, not {now_at}")
        load_optimizer_state(self.optimizer, self.scheduler, state, self.pipe.model)
        self.rng = state.get("rng")  # absent in a state written before RL saved the generators
        self.normaliser = RewardNormaliser(**state["normaliser"])
        self.step = int(state["step"])
