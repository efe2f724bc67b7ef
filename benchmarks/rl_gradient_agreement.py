"""How much of an RL gradient is signal: the agreement of two independent estimates.

On one batch of rollouts of the bundled model (the judge reward, group-relative advantages), each
estimator computes the policy gradient twice with independent randomness — two draws of scored
steps (`steps`), or two draws of masks (`masked`, per rollout or shared by a prompt's rollouts) —
and the cosine of the two gradients is printed. With g = signal + noise, E[cos] ~ |signal|^2 /
(|signal|^2 + noise^2): near 0, an update is mostly noise, and Adam turns it into a step of the
full learning rate all the same.

    python benchmarks/rl_gradient_agreement.py --records runs/rl-data/records.jsonl

Measured on the 2-core CPU beside two training runs (docs/results.md, "RL that learns").
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from paradiff.training.grpo import group_advantages, grpo_terms, replay_log_probs, select_steps
from paradiff.training.pararl import DEFAULTS, ParaRLRun
from paradiff.training.recipe import load_recipe
from paradiff.training.rewards import RewardNormaliser

ESTIMATORS = {
    "steps, s = 3": ["train.estimator=steps", "reward.steps=3"],
    "steps, s = 12": ["train.estimator=steps", "reward.steps=12"],
    "masked, a mask per rollout": ["train.estimator=masked", "train.shared_masks=false"],
    "masked, shared by the group": ["train.estimator=masked", "train.shared_masks=true"],
    "masked, shared, 4 draws": [
        "train.estimator=masked",
        "train.shared_masks=true",
        "train.mask_draws=4",
    ],
    "masked, a mask per rollout, 4 draws": [
        "train.estimator=masked",
        "train.shared_masks=false",
        "train.mask_draws=4",
    ],
}


def gradient(run: ParaRLRun, rollouts, advantages: torch.Tensor, draw: int) -> torch.Tensor:
    """The flattened policy gradient (no KL) of one draw of the run's estimator's randomness."""
    model = run.pipe.model
    model.zero_grad(set_to_none=True)
    run.step = draw  # the estimator's generator is seeded by (seed, step)
    if run.settings.train.estimator == "steps":
        generator = torch.Generator().manual_seed(1000 + draw)
        rollouts.steps = select_steps(run.n_steps, run.settings.reward.steps, generator)
        advantages = advantages[:, :1].expand(-1, len(rollouts.steps))
    units = run.loss_units(rollouts, advantages)
    replay = (rollouts.batch, rollouts.answer_start)
    for before, after, advantage in units:
        new, decoded = replay_log_probs(model, *replay, before, after, run.sampler_config)
        terms = grpo_terms(new, new.detach(), new.detach(), advantage, decoded, 0.2, 0.0)
        terms.loss[terms.has_tokens].sum().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", required=True, help="the prompt pool (training records)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts (default 8)")
    parser.add_argument("--group", type=int, default=8, help="rollouts per prompt (default 8)")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of draws per estimator (3)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = [
        "model.init=shapes",
        f"data.records={args.records}",
        "reward.kind=shapes_judge",
        "reward.at=final",
        f"rollout.prompts={args.prompts}",
        f"rollout.group={args.group}",
        "rollout.speed=fast",
    ]
    rollouts = advantages = None
    with tempfile.TemporaryDirectory() as scratch:
        for name, settings in ESTIMATORS.items():
            overrides = [*base, *settings, f"output.dir={scratch}/{len(name)}"]
            run = ParaRLRun(load_recipe(None, overrides, DEFAULTS), progress=False)
            if rollouts is None:  # one batch of rollouts and advantages for every estimator
                rollouts = run.step_rollouts(0)
                raw, _ = run.rollouts.raw_scores(run.reward, rollouts, "final")
                rewards = RewardNormaliser.fit(raw.flatten())(raw)
                advantages = group_advantages(rewards, args.group)
                spread = float((advantages.abs().sum(1) > 0).float().mean())
                print(f"{len(rollouts.records)} rollouts; share with a non-zero advantage {spread}")
            cosines = []
            for pair in range(args.pairs):
                first = gradient(run, rollouts, advantages, 2 * pair)
                second = gradient(run, rollouts, advantages, 2 * pair + 1)
                cosines.append(float(torch.nn.functional.cosine_similarity(first, second, 0)))
            mean = sum(cosines) / len(cosines)
            print(f"{name:<38} cos = {mean:.3f}  ({', '.join(f'{c:.3f}' for c in cosines)})")


if __name__ == "__main__":
    main()
