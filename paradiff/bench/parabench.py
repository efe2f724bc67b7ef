"""`paradiff bench parabench`: generate every ParaBench item with a model and have an LLM judge
score the answers, in a resumable run folder (`paradiff.bench.runner`).

The two halves can run apart: `--no-judge` only generates (on the GPU machine); a later run with
a judge on the same folder scores the saved answers and, when every item of its shard is already
generated, loads no model at all. The judge's model is kept in `judge.json`: one judge per folder.

Big runs split into shards: `--shard i/n`, or under `accelerate launch` / torchrun the process's
RANK of WORLD_SIZE (each process then uses the GPU of its LOCAL_RANK). Every shard writes its own
files into the same folder; the last one to finish writes the report over all of them
(`paradiff bench report RUN_DIR` writes it at any time).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from paradiff.bench.benchmark import Benchmark, checked_out
from paradiff.bench.generate import pipeline_answerer, sampler_settings
from paradiff.bench.items import BenchItem, check_inputs, load_parabench
from paradiff.bench.llm_judge import (
    JUDGE_DEADLINE,
    JUDGE_RETRIES,
    JUDGE_TIMEOUT,
    JudgeClient,
    JudgeError,
    judge_scorer,
)
from paradiff.bench.report import markdown_table, report_run
from paradiff.bench.runner import Answerer, BenchFolder, Scorer, run_benchmark, write_atomic
from paradiff.checkpoint import is_hub_id
from paradiff.command_support import (
    MAX_BATCH_SIZE,
    CommandError,
    add_pipeline_arguments,
    check_size_flags,
    load_configured_pipeline,
    one_line,
    output_dir,
    sampler_overrides,
    weight_settings,
)
from paradiff.files import FileInputError, read_text
from paradiff.resumable import Shard
from paradiff.schema import SchemaError, record, take

MAX_CONCURRENCY = 64  # --concurrency: judge requests at a time
MAX_JUDGE_TIMEOUT = 86400.0  # --judge-timeout, --judge-deadline, --judge-backoff: a day at most
MAX_JUDGE_RETRIES = 100  # --judge-retries
JUDGE_CACHE_DIR = "judge_cache"
JUDGE_FILE = "judge.json"


def shard_of(args: argparse.Namespace) -> Shard:
    return Shard.parse(args.shard) if args.shard is not None else Shard.from_env()


def judge_client(args: argparse.Namespace, out: Path) -> JudgeClient:
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            raise CommandError(f"environment variable {args.api_key_env} (--api-key-env) is empty")
    for flag, value in (("timeout", args.judge_timeout), ("deadline", args.judge_deadline)):
        if not (math.isfinite(value) and value > 0):
            raise CommandError(f"--judge-{flag} must be a positive number of seconds, got {value}")
    if args.judge_retries < 0:
        raise CommandError(f"--judge-retries must be 0 or more, got {args.judge_retries}")
    if not (math.isfinite(args.judge_backoff) and args.judge_backoff >= 0):
        raise CommandError(f"--judge-backoff must be 0 or more seconds, got {args.judge_backoff}")
    return JudgeClient(
        args.judge_url,
        args.judge_model,
        api_key,
        cache_dir=out / JUDGE_CACHE_DIR,
        timeout=args.judge_timeout,
        retries=args.judge_retries,
        backoff=args.judge_backoff,
        deadline=args.judge_deadline,
        on_retry=None if args.quiet else lambda text: tqdm.write(f"judge: {text}"),
    )


def check_judge(out: Path, judge_model: str) -> None:
    """One judge per run folder: the first scoring run records it, later ones must match."""
    path = out / JUDGE_FILE
    if path.is_file():
        try:
            row = json.loads(read_text(path, inside=out, limit=1 << 20))
            earlier = take(record(row, str(path)), "judge_model", "text", str(path))
        except (FileInputError, SchemaError, ValueError) as err:
            raise CommandError(f"{path} is damaged: {one_line(err)}") from None
        if earlier != judge_model:
            raise CommandError(
                f"{out} is scored by judge {earlier!r}: use --judge-model {earlier} or another --out"
            )
    else:
        write_atomic(path, json.dumps({"judge_model": judge_model}) + "\n")


def nothing_to_generate(items):
    raise AssertionError("every item of the shard was generated before")


class ParaBench(Benchmark):
    """Every ParaBench item generated with a model, the answers scored by an LLM judge."""

    name = "parabench"
    help = "ParaBench: generate with a model, score with an LLM judge"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--data",
            required=True,
            help="ParaBench folder or file (JSONL/parquet), or a hub id (tyfeld/ParaBench)",
        )
        parser.add_argument("--out", required=True, help="run folder (a re-run resumes)")
        parser.add_argument("--judge-url", default=None, help="OpenAI-compatible server root")
        parser.add_argument("--judge-model", default=None, help="the judge's model name")
        parser.add_argument(
            "--no-judge",
            action="store_true",
            help="only generate; a later run with a judge scores the saved answers",
        )
        parser.add_argument(
            "--api-key-env", default=None, help="environment variable holding the judge's API key"
        )
        parser.add_argument("--limit", type=int, default=None, help="only the first N items")
        parser.add_argument("--categories", default=None, help="comma-separated categories to keep")
        parser.add_argument("--batch-size", type=int, default=8, help="items per sampler run")
        parser.add_argument("--concurrency", type=int, default=4, help="judge requests at a time")
        parser.add_argument("--shard", default=None, help="i/n: this process's share of the items")
        parser.add_argument(
            "--judge-timeout", type=float, default=JUDGE_TIMEOUT, help="seconds per attempt"
        )
        parser.add_argument(
            "--judge-deadline",
            type=float,
            default=JUDGE_DEADLINE,
            help="seconds for one request, all its retries included",
        )
        parser.add_argument("--judge-retries", type=int, default=JUDGE_RETRIES, help="retries")
        parser.add_argument(
            "--judge-backoff",
            type=float,
            default=2.0,
            help="first retry wait, doubled each time (s)",
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bars")
        add_pipeline_arguments(parser)

    def check_options(self, args: argparse.Namespace) -> None:
        for name, most in (("batch_size", MAX_BATCH_SIZE), ("concurrency", MAX_CONCURRENCY)):
            if not 1 <= getattr(args, name) <= most:
                bound = "at least 1" if getattr(args, name) < 1 else f"at most {most}"
                raise CommandError(f"--{name.replace('_', '-')} must be {bound}")
        for limit, flag in ((MAX_JUDGE_TIMEOUT, "timeout"), (MAX_JUDGE_TIMEOUT, "deadline")):
            value = getattr(args, f"judge_{flag}")
            if math.isfinite(value) and value > limit:
                raise CommandError(
                    f"--judge-{flag} must be at most {limit:g} seconds, got {value:g}"
                )
        if args.judge_retries > MAX_JUDGE_RETRIES:
            raise CommandError(f"--judge-retries must be in 0..{MAX_JUDGE_RETRIES}")
        if math.isfinite(args.judge_backoff) and args.judge_backoff > MAX_JUDGE_TIMEOUT:
            raise CommandError(f"--judge-backoff must be at most {MAX_JUDGE_TIMEOUT:g} seconds")
        sampler_overrides(args)  # every sampler flag typed and in range, before the model loads
        check_size_flags(args)
        if not args.no_judge and not (args.judge_url and args.judge_model):
            raise CommandError("give --judge-url and --judge-model, or --no-judge to only generate")

    def items(self, args: argparse.Namespace) -> list[BenchItem]:
        """The selected items; the input images of this process's shard checked."""
        self.check_options(args)
        shard = shard_of(args)
        categories = [c.strip() for c in args.categories.split(",")] if args.categories else None
        items = load_parabench(args.data, args.limit, categories)
        check_inputs(shard.select(items))
        return items

    def answerer(self, args: argparse.Namespace) -> tuple[Answerer, dict[str, Any]]:
        """The model's answers (under accelerate / torchrun on the GPU of LOCAL_RANK), at the
        size of --width/--height when given."""
        if args.device is None and "LOCAL_RANK" in os.environ and torch.cuda.is_available():
            args.device = f"cuda:{os.environ['LOCAL_RANK']}"
        pipe, overrides = load_configured_pipeline(args)
        size = (args.width, args.height) if args.width or args.height else None
        answer = pipeline_answerer(pipe, args.batch_size, overrides, size)
        settings = {"sampler": sampler_settings(pipe, overrides), "size": size}
        return answer, {**settings, **weight_settings(args)}

    def scorer(self, args: argparse.Namespace) -> Scorer | None:
        """The LLM judge, reached once before any work (None with --no-judge)."""
        if args.no_judge:
            return None
        client = judge_client(args, output_dir(args.out))
        try:
            client.check_reachable()
        except JudgeError as err:
            raise CommandError(str(err)) from None
        return judge_scorer(client)

    def run(self, args: argparse.Namespace) -> int:
        """Every check (options, data, input images, judge, model) before the run folder is
        made."""
        items = self.items(args)
        shard = shard_of(args)
        out = checked_out(args.out, shard)  # a folder of another run, or of the user's files
        scorer = self.scorer(args)
        folder = BenchFolder(out, shard)
        data = (
            args.data
            if is_hub_id(args.data) and not Path(args.data).exists()
            else str(Path(args.data).resolve())
        )
        settings = {"benchmark": self.name, "model": args.model or "bundled", "data": data}
        generated = folder.generated() if out.is_dir() else {}
        if shard.select(items) and all(item.id in generated for item in shard.select(items)):
            folder.start({**folder.settings(), **settings})  # scoring only: no model is loaded
            answer = nothing_to_generate
        else:
            answer, answered = self.answerer(args)
            folder.start({**settings, **answered})
        if scorer is None:
            with folder.discarded_on_error():
                run_benchmark(folder, items, answer, None, progress=not args.quiet)
            print(f"generated {len(items)} items in {out}: score them with a run that has a judge")
            return 0
        check_judge(out, args.judge_model)
        try:
            with folder.discarded_on_error():
                run_benchmark(folder, items, answer, scorer, args.concurrency, not args.quiet)
        except JudgeError as err:
            raise CommandError(f"{err} (run the command again to resume)") from None
        scored = folder.scored()
        missing = sum(item.id not in scored for item in items)
        if missing:
            print(
                f"shard {shard.index}/{shard.count} done; {missing} of {len(items)} items wait "
                f"for other shards: then run `paradiff bench report {out}`"
            )
            return 0
        summary = report_run(out, [item.id for item in items])
        print(markdown_table(summary))
        print(f"wrote {out}/summary.json, summary.md and chart.png")
        return 0


PARABENCH = ParaBench()
