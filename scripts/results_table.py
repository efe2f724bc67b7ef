"""Print a Markdown table of several benchmark runs side by side (one row per run and group).

python scripts/results_table.py runs/sb-sft runs/sb-pararl --labels SFT ParaRL --groups overall edit
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from paradiff.bench.data import METRICS
from paradiff.bench.report import SUMMARY_JSON, groups_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders holding summary.json")
    parser.add_argument("--labels", nargs="+", default=None, help="row names (default: folders)")
    parser.add_argument("--groups", nargs="+", default=["overall"], help="overall, task, category")
    args = parser.parse_args()
    labels = args.labels or args.runs
    if len(labels) != len(args.runs):
        raise SystemExit("give one label per run")
    print("| model | group | n | " + " | ".join(METRICS) + " |")
    print("|---|---|---|" + "---|" * len(METRICS))
    for label, run in zip(labels, args.runs, strict=True):
        groups = groups_of(json.loads((Path(run) / SUMMARY_JSON).read_text()))
        for group in args.groups:
            if group not in groups:
                raise SystemExit(f"no group {group!r} in {run}")
            block = groups[group]
            cells = [f"{block['metrics'][m]['mean']:.1f}" for m in METRICS]
            print(f"| {label} | {group} | {block['count']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
