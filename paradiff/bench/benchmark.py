"""A benchmark as one object: its command-line options, its items, how the items are answered and
how an answer is scored, and the command that runs them through a run folder
(`paradiff.bench.runner`).

`paradiff bench NAME` is any registered benchmark (`paradiff.bench.commands` `BENCHMARKS`:
ParaBench built in, the shapes world's ShapeBench from its entry point), added to the command line
the same way (`Benchmark.add_command`).
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from paradiff.bench.items import BenchItem
from paradiff.bench.runner import Answerer, BenchFolder, Scorer
from paradiff.command_support import check_writable, output_dir
from paradiff.resumable import Shard


class Benchmark(ABC):
    """One benchmark. Every method but `add_options` takes the parsed options of its command;
    each checks what it reads before it does any work."""

    name: ClassVar[str]  # its `paradiff bench` subcommand (and its registry name)
    help: ClassVar[str]  # its line in `paradiff bench --help`

    @abstractmethod
    def add_options(self, parser: argparse.ArgumentParser) -> None:
        """Its flags."""

    @abstractmethod
    def items(self, args: argparse.Namespace) -> list[BenchItem]:
        """The items the options select (every option checked first)."""

    @abstractmethod
    def answerer(self, args: argparse.Namespace) -> tuple[Answerer, dict[str, Any]]:
        """How the items are answered (a model is loaded here), with the settings a run folder
        records for those answers."""

    @abstractmethod
    def scorer(self, args: argparse.Namespace) -> Scorer | None:
        """How an answer is scored (None: the answers are only generated)."""

    @abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """The command: the items answered and scored in a run folder, the report printed;
        returns the exit status."""

    def add_command(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        """Add `paradiff bench <name>` to the `bench` subparsers."""
        parser = subparsers.add_parser(self.name, help=self.help)
        self.add_options(parser)
        parser.set_defaults(func=self.run)
        return parser


def checked_out(value: str, shard: Shard | None = None) -> Path:
    """The run folder an --out names, refused before any work when it cannot be written or holds
    anything but an earlier run (a run writes only into its own folder)."""
    out = output_dir(value)
    check_writable(out)
    BenchFolder(out, shard or Shard()).check()
    return out
