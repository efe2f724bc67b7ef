"""Plot a training log (log.jsonl) as a PNG line chart.

python scripts/plot_log.py runs/shapes-sft/log.jsonl docs/sft_curve.png --keys loss text_ce image_ce
"""

from __future__ import annotations

import argparse

from paradiff.plots import line_chart, read_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="JSONL log with a 'step' field")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--keys", nargs="+", default=["loss"], help="fields to plot")
    parser.add_argument("--title", default="", help="chart title")
    args = parser.parse_args()
    print(line_chart(read_log(args.log, args.keys), args.out, title=args.title))


if __name__ == "__main__":
    main()
