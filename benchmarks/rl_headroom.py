"""RL headroom: how much better than its greedy answer does the model's own sampling get?

Group-relative RL can only raise a greedy score by making the better answers among a prompt's
rollouts more likely. This measures, on held-out prompts (the first `--limit` of the
development split, disjoint from ShapeBench and the RL prompt pool), for each rollout
temperature T: the greedy answer's six metrics, the mean of G answers sampled at T, the best of
the G by the reward (the mean of the six metrics, what `reward.kind: shapes_judge` trains on) —
an upper bound for what reinforcing each group's best can buy — how often a group holds an
exactly right answer when the greedy one is wrong, and how many groups are all equal (no
advantage at all).

    python benchmarks/rl_headroom.py --limit 60 --group 8 --temperatures 1.0 0.5

`--records FILE` scores the first `--limit` samples of a records.jsonl instead (an RL run's own
prompt pool: what the run has learned on the prompts it trained on).

Scores are 0-100; one thread.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from paradiff.bench.items import METRICS
from paradiff.pipeline import ParallelPipeline, Request
from paradiff.shapes.dataset import development_samples
from paradiff.shapes.judge import exact_match, score_sample
from paradiff.shapes.probe import GREEDY, request_of
from paradiff.shapes.sample import ShapeSample
from paradiff.shapes.tasks import CATEGORIES
from paradiff.training.rollouts import load_records


def answers(pipe, samples, group: int, batch_size: int, **overrides):
    """G answers per sample (seeds 0..G-1), scored: [[metrics + exact, ...] per sample]."""
    scored = []
    for task in ("edit", "generation"):
        todo = [s for s in samples if s.task == task]
        requests = []
        for sample in todo:
            base = request_of(sample)
            requests += [Request(base.instruction, base.image, seed=k) for k in range(group)]
        results = []
        for start in range(0, len(requests), batch_size):
            chunk = requests[start : start + batch_size]
            results += pipe.run("edit" if task == "edit" else "generate", chunk, **overrides)
        for i, sample in enumerate(todo):
            rows = []
            for result in results[i * group : (i + 1) * group]:
                row = score_sample(sample, result.text, result.image)
                row["exact"] = 100.0 * exact_match(sample, result.image)
                rows.append(row)
            scored.append(rows)
    return scored


def reward(row: dict[str, float]) -> float:
    return sum(row[m] for m in METRICS) / len(METRICS)


def mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument(
        "--records", type=Path, default=None, help="a records.jsonl to draw the prompts from"
    )
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = ParallelPipeline.from_pretrained(args.model)
    if args.records is None:
        per_category = -(-args.limit // sum(len(names) for names in CATEGORIES.values()))
        samples = development_samples(per_category)[: args.limit]
    else:
        records, _ = load_records(args.records, args.limit)  # as the RL run read its pool
        samples = [ShapeSample.from_json(record) for record in records]
    started = time.perf_counter()
    greedy = [rows[0] for rows in answers(pipe, samples, 1, args.batch_size, **GREEDY)]
    table = {"greedy": {m: mean(r[m] for r in greedy) for m in (*METRICS, "exact")}}
    for temperature in args.temperatures:
        groups = answers(
            pipe,
            samples,
            args.group,
            args.batch_size,
            text_temperature=temperature,
            image_temperature=temperature,
        )
        best = [max(rows, key=reward) for rows in groups]
        table[f"T={temperature}"] = {
            "sampled": {m: mean(r[m] for rows in groups for r in rows) for m in METRICS},
            "best_of_group": {m: mean(r[m] for r in best) for m in METRICS},
            "exact_sampled": mean(r["exact"] for rows in groups for r in rows),
            "exact_any": mean(100.0 * any(r["exact"] for r in rows) for rows in groups),
            "exact_any_where_greedy_wrong": mean(
                100.0 * any(r["exact"] for r in rows)
                for rows, g in zip(groups, greedy, strict=True)
                if not g["exact"]
            ),
            "groups_all_equal": mean(
                100.0 * (len({round(reward(r), 6) for r in rows}) == 1) for rows in groups
            ),
            "best_beats_greedy": mean(
                100.0 * (reward(b) > reward(g) + 1e-6) for b, g in zip(best, greedy, strict=True)
            ),
        }
    table["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(table, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
