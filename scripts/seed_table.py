"""Paired differences of trained arms to a baseline, with intervals over training seeds and prompts.

python scripts/seed_table.py runs/dev/sft --arm "RL" runs/dev/rl-s0 runs/dev/rl-s1 runs/dev/rl-s2
python scripts/seed_table.py runs/dev/sft-s0 runs/dev/sft-s1 runs/dev/sft-s2 --arm "RL" ...

Each arm is one benchmark run folder per training seed, all scoring the baseline's prompts; the
baseline is one run folder (a fixed model) or one per training seed of a trained arm. Each cell
is the arm's mean minus the baseline's, [95% interval] from a bootstrap that resamples each
side's seeds and the prompts, paired (`paradiff.bench.report.arm_difference_interval`; with one
baseline folder it is `seed_level_interval`). `--groups` picks overall, a task or a category;
the column "TA+IA" is the mean of text and image alignment.
"""

from __future__ import annotations

import argparse

import numpy as np

from paradiff.bench.items import METRICS
from paradiff.bench.report import SHORT_NAMES, arm_difference_interval, in_group, run_matrix
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
    parser.add_argument(
        "baseline", nargs="+", help="the baseline's run folder, or one per training seed"
    )
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
        bases = [per_prompt(run, group) for run in args.baseline]
        if not all(bases):
            raise SystemExit(f"no sample of group {group!r} in every baseline folder")
        shared = [i for i in bases[0] if all(i in b for b in bases)]
        cells = [
            f"{np.mean([b[i][c] for b in bases for i in shared if c in b[i]]):.1f}" for c in COLUMNS
        ]
        seeds = len(bases) if len(bases) > 1 else "–"
        print(f"| baseline | {group} | {seeds} | {len(shared)} | " + " | ".join(cells) + " |")
        for label, *runs in args.arm:
            if not runs:
                raise SystemExit(f"arm {label!r} names no run folder")
            arm = [per_prompt(run, group) for run in runs]
            cells = []
            for column in COLUMNS:
                ids = [i for i in shared if all(column in r.get(i, {}) for r in (*bases, *arm))]
                if not ids:
                    cells.append("–")
                    continue
                better = run_matrix(arm, column, ids)  # (runs, prompts)
                worse = run_matrix(bases, column, ids)
                low, high = arm_difference_interval(better, worse)
                cells.append(f"{better.mean() - worse.mean():+.1f} [{low:+.1f}, {high:+.1f}]")
            print(f"| {label} | {group} | {len(runs)} | {len(ids)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
