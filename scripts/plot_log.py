"""Plot training logs (log.jsonl) as a PNG line chart.

python scripts/plot_log.py runs/shapes-sft/log.jsonl --out docs/sft_curve.png --keys loss text_ce image_ce
python scripts/plot_log.py runs/a/log.jsonl runs/b/log.jsonl --labels A B --keys final_raw --out ab.png
"""

from __future__ import annotations

import argparse

from paradiff.plots import line_chart, read_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", help="JSONL logs with a 'step' field")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--keys", nargs="+", default=["loss"], help="fields to plot")
    parser.add_argument("--labels", nargs="+", default=None, help="one name per log")
    parser.add_argument("--title", default="", help="chart title")
    args = parser.parse_args()
    if args.labels is not None and len(args.labels) != len(args.logs):
        parser.error("give one label per log")
    series = {}
    for index, log in enumerate(args.logs):
        for key, points in read_log(log, args.keys).items():
            prefix = args.labels[index] if args.labels else (log if len(args.logs) > 1 else "")
            series[f"{prefix} {key}".strip()] = points
    print(line_chart(series, args.out, title=args.title))


if __name__ == "__main__":
    main()
