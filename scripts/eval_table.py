"""The held-out evaluations a training log holds, as a Markdown table (one row per run and step).

python scripts/eval_table.py runs/shapes-rl/log.jsonl runs/other/log.jsonl --labels RL other --group overall

Reads the `{"step", "eval": {group: {metric: value}}}` lines that `eval.call` writes (SFT and RL);
a resumed run's repeated step keeps its later line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from paradiff.bench.items import METRICS
from paradiff.bench.report import SHORT_NAMES


def evaluations(log: Path, group: str) -> dict[int, dict[str, float]]:
    """Step -> the group's metrics, from a log's evaluation lines."""
    rows = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        record = json.loads(line) if line.strip() else {}
        if isinstance(record.get("eval"), dict) and group in record["eval"]:
            rows[int(record["step"])] = record["eval"][group]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path, help="training logs (log.jsonl)")
    parser.add_argument("--labels", nargs="+", default=None, help="one name per log")
    parser.add_argument("--group", default="overall", help="overall, edit or generation")
    args = parser.parse_args()
    labels = args.labels or [str(log.parent) for log in args.logs]
    if len(labels) != len(args.logs):
        parser.error("give one label per log")
    print("| run | step | " + " | ".join(SHORT_NAMES[m] for m in METRICS) + " |")
    print("|---|---|" + "---|" * len(METRICS))
    for label, log in zip(labels, args.logs, strict=True):
        for step, metrics in sorted(evaluations(log, args.group).items()):
            cells = [f"{metrics[m]:.1f}" if m in metrics else "–" for m in METRICS]
            print(f"| {label} | {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
