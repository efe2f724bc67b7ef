"""How far the CLIP reward agrees with the exact one on the rollouts ParaRL compares.

python scripts/reward_agreement.py --records runs/shapes-data2/records.jsonl --prompts 32

Samples G rollouts of each of the first `--prompts` records with a ParaRL recipe's policy and
rollout settings (the shipped recipe: the bundled model, G = 4, image and text temperature 1,
unguided), scores every rollout's partial state at the given shares of the timeline with the
exact `scene_agreement` reward and with a CLIP directory (the recipe's, unless given), and
prints per share the within-group correlation of the two (each group's mean removed, as the
advantages see them), the pooled correlation, and how often the exact reward is constant within
a group (no signal for ParaRL).
"""

from __future__ import annotations

import argparse
import math

import torch
from tqdm import tqdm

from paradiff.pipeline import ParallelPipeline
from paradiff.sampling.sampler import make_plan
from paradiff.training import pararl
from paradiff.training.rewards import build_reward, within_group_correlation
from paradiff.training.rollouts import RolloutSampler, load_records

SHIPPED_RECIPE = "configs/shapes-pararl.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=SHIPPED_RECIPE, help="ParaRL recipe to sample as")
    parser.add_argument("--model", default=None, help="policy checkpoint (default: the recipe's)")
    parser.add_argument("--records", required=True, help="prompt records (JSONL)")
    parser.add_argument("--clip-dir", default=None, help="CLIP directory (default: the recipe's)")
    parser.add_argument("--prompts", type=int, default=32, help="prompts (the first records)")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16, help="rollouts sampled together")
    args = parser.parse_args()
    recipe = pararl.RLSettings.load(args.recipe, [])
    group = recipe.rollout.group
    records, image_root = load_records(args.records, args.prompts)
    pipe = ParallelPipeline.from_pretrained(args.model or recipe.model.init, "float32", "cpu")
    config = pararl.rollout_sampler_config(pipe.sampler_defaults, recipe.rollout)
    n_steps = len(make_plan(config))
    indices = [max(1, min(n_steps, round(share * n_steps))) for share in args.shares]
    sampler = RolloutSampler(pipe, config, image_root)
    exact, clip = (
        build_reward("scene_agreement"),
        build_reward("clip", {"clip_dir": args.clip_dir or recipe.reward.options["clip_dir"]}),
    )
    rows = [r for r in records for _ in range(group)]
    generator = torch.Generator().manual_seed(args.seed)
    seeds = torch.randint(2**31 - 1, (len(rows),), generator=generator).tolist()
    scores = {index: ([], []) for index in indices}  # trajectory index -> (exact, clip)
    for start in tqdm(range(0, len(rows), args.batch), desc="rollouts"):
        chunk = slice(start, start + args.batch)
        rollouts = sampler.sample(rows[chunk], seeds[chunk], [])
        for index in indices:
            states = sampler.partial_states(rollouts, index)
            scores[index][0].append(exact.score(states))
            scores[index][1].append(clip.score(states))
    print(f"{len(records)} prompts x {group} rollouts, {n_steps} sampler steps")
    print("| share of the timeline | within-group r | pooled r | groups with constant exact |")
    print("|---|---|---|---|")
    for share, index in zip(args.shares, indices, strict=True):
        x, y = torch.cat(scores[index][0]), torch.cat(scores[index][1])
        within = within_group_correlation(x, y, group)
        pooled = float(torch.corrcoef(torch.stack([x, y]))[0, 1])
        constant = float((x.view(-1, group).std(1) == 0).float().mean())
        shown = "n/a" if math.isnan(within) else f"{within:+.2f}"
        print(f"| {share:g} (step {index}) | {shown} | {pooled:+.2f} | {100 * constant:.0f}% |")


if __name__ == "__main__":
    main()
