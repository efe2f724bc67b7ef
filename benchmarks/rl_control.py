"""RL positive control: does ParaRL's machinery learn a reward any model can learn?

Each arm trains the bundled model for the same number of steps on the same rollouts (prompts,
row seeds, group size, learning rate, updates) with a trivially learnable reward — the share of
red pixels in the final image (`reward.kind: colour_share`), or with `--reward word` the share of
the word "red" among the reasoning's words (`reward.kind: word_share`, the text side's control)
— and differs only in the loss's
estimator: the tokens decoded at s scored steps replayed (`train.estimator: steps`, the
paper's), or every token of the final answer under a random mask (`train.estimator: masked`).
Before and after, on held-out prompts (the development split, disjoint from ShapeBench and from
the prompt pool), greedy answers give the red share, the word share and the exact judge's six
metrics.

    python benchmarks/rl_control.py --records runs/rl-data/records.jsonl --out runs/rl-control

A defect shows as an arm whose held-out red share does not move while its training reward
does not either; a weak signal as one that moves with more tokens per update. Arms run one after
another on one thread each (`--arms` picks them; run two processes side by side for speed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from paradiff.pipeline import ParallelPipeline
from paradiff.shapes.dataset import development_samples
from paradiff.shapes.judge import score_sample
from paradiff.shapes.probe import GREEDY, answers_of
from paradiff.shapes.scene import COLOURS
from paradiff.training.pararl import DEFAULTS, ParaRLRun
from paradiff.training.recipe import load_recipe
from paradiff.training.rewards import ColourShareReward, PartialState, WordShareReward

RED = [round(c / 255, 4) for c in COLOURS["red"]]
REWARDS = {  # --reward: the recipe's reward section
    "red": ["reward.kind=colour_share", f"reward.colour={json.dumps(RED)}"],
    "word": ["reward.kind=word_share", "reward.word=red"],
}
ARMS = {
    "steps-3": ["train.estimator=steps", "reward.steps=3"],
    "steps-12": ["train.estimator=steps", "reward.steps=12"],
    "masked": ["train.estimator=masked", "train.mask_draws=1"],
    "masked-2": ["train.estimator=masked", "train.mask_draws=2"],
    "masked-4": ["train.estimator=masked", "train.mask_draws=4"],
}


def held_out(pipe: ParallelPipeline, limit: int) -> dict[str, float]:
    """Greedy answers to the first `limit` development prompts: mean red share (of the image's
    pixels), mean word share (of the reasoning's words that are "red") and the six metrics'
    means (0-100)."""
    samples = development_samples(-(-limit // 15))[:limit]
    red, word = ColourShareReward(RED), WordShareReward("red")
    shares, words, metrics = [], [], []
    for task in ("edit", "generation"):
        todo = [s for s in samples if s.task == task]
        for sample, (text, image) in zip(todo, answers_of(pipe, todo, 20, **GREEDY), strict=True):
            pixels = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
            rgb = pixels.permute(2, 0, 1).float() / 255  # (3, H, W)
            state = PartialState(text, torch.zeros(1), rgb)
            shares.append(float(red.score([state])))
            words.append(float(word.score([state])))
            metrics.append(score_sample(sample, text, image))
    mean = {m: round(sum(row[m] for row in metrics) / len(metrics), 2) for m in metrics[0]}
    share = {"red_share": round(sum(shares) / len(shares), 5)}
    return {**share, "word_share": round(sum(words) / len(words), 5), **mean}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", required=True, help="the prompt pool (training records)")
    parser.add_argument("--out", required=True, help="folder of the arms' runs and results.json")
    parser.add_argument("--arms", nargs="+", default=["steps-3", "masked"], choices=list(ARMS))
    parser.add_argument("--steps", type=int, default=30, help="RL steps per arm (default 30)")
    parser.add_argument("--lr", type=float, default=5e-5, help="learning rate (default 5e-5)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step (default 4)")
    parser.add_argument("--group", type=int, default=4, help="rollouts per prompt (default 4)")
    parser.add_argument("--updates", type=int, default=2, help="updates per batch (default 2)")
    parser.add_argument("--held-out", type=int, default=60, help="development prompts (60)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument(
        "--reward", choices=list(REWARDS), default="red", help="red pixels or the word (red)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    if "initial" not in results:
        results["initial"] = held_out(ParallelPipeline.from_pretrained(), args.held_out)
        print("initial", json.dumps(results["initial"]), flush=True)
    for arm in args.arms:
        name = f"{arm}-lr{args.lr:g}-seed{args.seed}" + ("-word" if args.reward == "word" else "")
        overrides = [
            "model.init=shapes",
            f"data.records={args.records}",
            f"output.dir={out / name}",
            *REWARDS[args.reward],
            "reward.at=final",
            f"rollout.prompts={args.prompts}",
            f"rollout.group={args.group}",
            f"train.steps={args.steps}",
            f"train.lr={args.lr}",
            f"train.updates_per_batch={args.updates}",
            f"train.seed={args.seed}",
            "train.threads=1",
            "output.save_every=1000",
            *ARMS[arm],
        ]
        started = time.perf_counter()
        run = ParaRLRun(load_recipe(None, overrides, DEFAULTS), progress=False, overwrite=True)
        run.run()
        log = [json.loads(line) for line in open(out / name / "log.jsonl")]
        rewards = [line["final_raw"] for line in log if "final_raw" in line]
        tenth = max(1, len(rewards) // 5)
        results[name] = {
            "train_reward_first": round(sum(rewards[:tenth]) / tenth, 5),
            "train_reward_last": round(sum(rewards[-tenth:]) / tenth, 5),
            "kl_last": log[-1].get("kl") if "kl" in log[-1] else None,
            "minutes": round((time.perf_counter() - started) / 60, 1),
            "held_out": held_out(run.pipe, args.held_out),
        }
        print(name, json.dumps(results[name]), flush=True)
        results_path.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
