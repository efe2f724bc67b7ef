"""The `paradiff bench` commands: report, compare, and one per benchmark of `BENCHMARKS`
(`paradiff.bench.benchmark.Benchmark` objects: ParaBench built in, and those of installed
packages' `paradiff.benchmarks` entry points, the shapes world's ShapeBench)."""

from __future__ import annotations

import argparse

from paradiff.bench.benchmark import Benchmark
from paradiff.bench.parabench import PARABENCH
from paradiff.bench.report import compare_table, load_summary, markdown_table, report_run
from paradiff.registry import Registry

ENTRY_POINTS = "paradiff.benchmarks"
# subcommand name -> its benchmark
BENCHMARKS: Registry[Benchmark] = Registry(
    ENTRY_POINTS, {PARABENCH.name: PARABENCH}, key=lambda _, benchmark: benchmark.name
)


def run_report(args: argparse.Namespace) -> int:
    """Merge the shards of a run folder and write its report."""
    print(markdown_table(report_run(args.run_dir)))
    print(f"wrote {args.run_dir}/summary.json, summary.md and chart.png")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    a, b = load_summary(args.run_a), load_summary(args.run_b)
    print(f"A = {args.run_a}\nB = {args.run_b}")
    print(compare_table(a, b))
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="evaluation: ParaBench and registered benchmarks")
    subparsers = bench.add_subparsers(dest="bench_command", required=True)
    for _, benchmark in sorted(BENCHMARKS.entries().items()):
        benchmark.add_command(subparsers)
    report = subparsers.add_parser("report", help="write a run folder's report (all shards)")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.set_defaults(func=run_report)
    compare = subparsers.add_parser("compare", help="two runs' scores side by side")
    compare.add_argument("run_a", metavar="RUN_A")
    compare.add_argument("run_b", metavar="RUN_B")
    compare.set_defaults(func=run_compare)
