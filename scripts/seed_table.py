"""Paired differences of trained arms to a baseline, with intervals over training seeds and prompts.

python scripts/seed_table.py runs/dev/sft --arm "RL" runs/dev/rl-s0 runs/dev/rl-s1 runs/dev/rl-s2

Each arm is one benchmark run folder per training seed, all scoring the baseline's prompts; each
cell is the arm's mean minus the baseline's, [95% interval] from a bootstrap that resamples the
seeds and the prompts (`paradiff.bench.report.seed_level_interval`). `--groups` picks overall,
a task or a category; the column "TA+IA" is the mean of text and image alignment.
"""

from __future__ import annotations

import argparse

import numpy as np

from paradiff.bench.items import METRICS
from paradiff.bench.report import SHORT_NAMES, in_group, seed_level_interval
from paradiff.bench.runner import BenchFolder

COLUMNS = (*METRICS, "TA+IA")


def per_prompt(folder: str, group: str) -> dict[str, dict[str, float]]:
    """Sample id -> its scores (and TA+IA) in the group of a run folder."""
    rows = {}
    for item, record in BenchFolder(folder).scored().items():
        if in_group(record, group):
            row = {m: record[m] for m in METRICS if record.get(m) is not None}
            row["TA+IA"] = (record["text_alignment"] + record["image_alignment"]) / 2
            rows[item] = row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="the baseline's run folder")
    parser.add_argument(
        "--arm",
        nargs="+",
        action="append",
        required=True,
        metavar=("LABEL", "RUN"),
        help="an arm's label and its run folders, one per training seed (repeatable)",
    )
    parser.add_argument("--groups", nargs="+", default=["overall"], help="overall, task, category")
    args = parser.parse_args()
    names = [SHORT_NAMES.get(c, c) for c in COLUMNS]
    print("| arm | group | seeds | n | " + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(COLUMNS))
    for group in args.groups:
        base = per_prompt(args.baseline, group)
        if not base:
            raise SystemExit(f"no sample of group {group!r} in {args.baseline}")
        cells = [f"{np.mean([r[c] for r in base.values() if c in r]):.1f}" for c in COLUMNS]
        print(f"| baseline | {group} | – | {len(base)} | " + " | ".join(cells) + " |")
        for label, *runs in args.arm:
            if not runs:
                raise SystemExit(f"arm {label!r} names no run folder")
            seeds = [per_prompt(run, group) for run in runs]
            cells = []
            for column in COLUMNS:
                ids = [i for i, r in base.items() if column in r and all(i in s for s in seeds)]
                if not ids:
                    cells.append("–")
                    continue
                diff = np.array([[s[i][column] - base[i][column] for i in ids] for s in seeds])
                low, high = seed_level_interval(diff)
                cells.append(f"{diff.mean():+.1f} [{low:+.1f}, {high:+.1f}]")
            print(f"| {label} | {group} | {len(runs)} | {len(ids)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
