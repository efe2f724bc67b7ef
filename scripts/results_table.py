"""Print a Markdown table of several benchmark runs side by side (one row per run and group).

python scripts/results_table.py runs/sb-sft runs/sb-pararl --labels SFT ParaRL --groups overall edit
python scripts/results_table.py runs/sb-t1-s0 runs/sb-t1-s1 runs/sb-t1-s2 --ci --average "3 seeds"

--ci writes each cell as `mean [95% interval over prompts]`; --average adds, per group, a row with
the mean over the runs and [lowest, highest] of the runs (e.g. sampling seeds); --paired adds a
table of each run's paired difference to the first run over the prompts both scored (mean [95%
bootstrap interval]), per group, e.g. an RL run on the first 100 prompts against its SFT model's full run:
python scripts/results_table.py runs/eval/parallel runs/eval/rl --paired
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from paradiff.bench.items import METRICS
from paradiff.bench.report import SUMMARY_JSON, groups_of, in_group, paired_differences
from paradiff.bench.runner import BenchFolder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders holding summary.json")
    parser.add_argument("--labels", nargs="+", default=None, help="row names (default: folders)")
    parser.add_argument("--groups", nargs="+", default=["overall"], help="overall, task, category")
    parser.add_argument("--ci", action="store_true", help="add the 95%% intervals over prompts")
    parser.add_argument("--average", default=None, help="label of a row averaging the runs")
    parser.add_argument("--paired", action="store_true", help="differences to the first run")
    args = parser.parse_args()
    labels = args.labels or args.runs
    if len(labels) != len(args.runs):
        raise SystemExit("give one label per run")
    print("| model | group | n | " + " | ".join(METRICS) + " |")
    print("|---|---|---|" + "---|" * len(METRICS))
    blocks: dict[str, list[dict]] = {group: [] for group in args.groups}
    for label, run in zip(labels, args.runs, strict=True):
        groups = groups_of(json.loads((Path(run) / SUMMARY_JSON).read_text()))
        for group in args.groups:
            if group not in groups:
                raise SystemExit(f"no group {group!r} in {run}")
            block = groups[group]
            blocks[group].append(block)
            cells = [cell(block["metrics"][m], args.ci) for m in METRICS]
            print(f"| {label} | {group} | {block['count']} | " + " | ".join(cells) + " |")
    if args.average:
        for group, runs in blocks.items():
            cells = []
            for metric in METRICS:
                means = [run["metrics"][metric]["mean"] for run in runs]
                cells.append(f"{sum(means) / len(means):.1f} [{min(means):.1f}, {max(means):.1f}]")
            count = "+".join(str(run["count"]) for run in runs)
            print(f"| {args.average} | {group} | {count} | " + " | ".join(cells) + " |")
    if args.paired:
        print_paired(args.runs, labels, args.groups)


def print_paired(runs: list[str], labels: list[str], groups: list[str]) -> None:
    """Each later run minus the first, per group (overall, a task or a category) and metric,
    over the prompts both runs scored."""
    base = BenchFolder(Path(runs[0])).scored()
    print(f"\n| paired difference to {labels[0]} | group | n | " + " | ".join(METRICS) + " |")
    print("|---|---|---|" + "---|" * len(METRICS))
    for label, run in zip(labels[1:], runs[1:], strict=True):
        scored = BenchFolder(Path(run)).scored()
        for group in groups:
            picked = {i: record for i, record in scored.items() if in_group(record, group)}
            differences = paired_differences(picked, base)
            cells = []
            for metric in METRICS:
                d = differences.get(metric)
                cells.append(
                    f"{d['mean']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]" if d else "-"
                )
            n = sum(i in base for i in picked)
            print(f"| {label} | {group} | {n} | " + " | ".join(cells) + " |")


def cell(value: dict, ci: bool) -> str:
    if not ci:
        return f"{value['mean']:.1f}"
    low, high = value["ci95"]
    return f"{value['mean']:.1f} [{low:.1f}, {high:.1f}]"


if __name__ == "__main__":
    main()
