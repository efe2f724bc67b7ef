"""Batch inference: `paradiff edit|generate --batch requests.jsonl --out DIR`.

A requests file is JSONL, one request a line:

    {"id": "cat-1", "instruction": "make the cat blue", "image": "in/cat.png", "seed": 3,
     "settings": {"image_steps": 32, "cfg_image": 2.0}}

`instruction` (or `prompt`, for generation) is required; `image` (editing, a path relative to the
requests file) too for editing; `seed` and `settings` (SamplerConfig fields) are optional and
replace the command's for that request. Requests are sampled in batches of one task, size and
settings through the benchmark runner (`paradiff.bench.runner`), so a run is resumable (a re-run
skips the ids it finished) and shardable (`--shard i/n`, or accelerate's RANK of WORLD_SIZE).
DIR gets one folder per id — image.png, reasoning.txt, meta.json, trajectory.gif — plus the
runner's run.json and generations*.jsonl (one line per finished id).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from paradiff.bench.generate import PIPELINE_TASKS, generate_answers
from paradiff.bench.items import BenchItem
from paradiff.bench.runner import BenchFolder, Shard, file_name, run_benchmark
from paradiff.command_support import (
    CommandError,
    check_size_flags,
    check_writable,
    load_configured_pipeline,
    output_dir,
    owned_outputs,
    publish,
)
from paradiff.files import FileInputError, ImageInputError, open_image, read_text, safe_target
from paradiff.pipeline import ParallelPipeline
from paradiff.sampling import SamplerConfig
from paradiff.sampling.config import SamplerConfigError, check_setting
from paradiff.schema import SchemaError, record, take

BENCH_TASKS = {pipeline: bench for bench, pipeline in PIPELINE_TASKS.items()}


class BatchError(ValueError):
    """A requests file or output folder that cannot be used."""


class RequestFolder(BenchFolder):
    """A run folder with one sub-folder per request id (image.png, reasoning.txt, …)."""

    def answer_files(self, item_id: str) -> tuple[str, str]:
        name = file_name(item_id)
        return f"{name}/image.png", f"{name}/reasoning.txt"

    def write_answer(self, item_id: str, text: str, image) -> str:
        """Nothing to write: the answerer published the request's folder (`publish`)."""
        return self.answer_files(item_id)[0]

    def check_todo(self, items: list[BenchItem]) -> None:
        """Refuse, before anything is sampled, a request folder paradiff may not write: a link,
        a file, or a folder of the user's files (the rules of `publish`)."""
        done = self.generated() if self.root.is_dir() else {}
        for item in self.shard.select(items):
            if item.id in done:
                continue
            try:
                folder = safe_target(self.root, file_name(item.id))
            except FileInputError as err:
                raise BatchError(f"request {item.id}: {err}") from None
            owned_outputs(folder)


def read_requests(path: str | os.PathLike, task: str) -> list[BenchItem]:
    """The requests of a JSONL file for `task` ('edit' or 'generate'), every one checked (ids
    unique, fields of their kinds, input images readable regular files within the size limit,
    settings known and in range) before anything is sampled."""
    path = Path(path)
    try:
        text = read_text(path, what="requests file")
    except FileInputError as err:
        raise BatchError(str(err)) from None
    items, seen = [], set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise BatchError(f"{where} is not JSON") from None
        try:
            items.append(request_item(record(row, where), task, path.parent, where))
        except SchemaError as err:
            raise BatchError(str(err)) from None
        except SamplerConfigError as err:
            raise BatchError(f"{where}: {err}") from None
        if items[-1].id in seen:
            raise BatchError(f"{where}: id {items[-1].id!r} occurs twice")
        seen.add(items[-1].id)
    if not items:
        raise BatchError(f"{path} holds no requests")
    return items


def request_item(row: dict[str, Any], task: str, base: Path, where: str) -> BenchItem:
    request_id = take(row, "id", "id", where)
    key = "instruction" if "instruction" in row else "prompt"
    if key not in row:
        raise BatchError(f"{where} has no instruction (or prompt)")
    instruction = take(row, key, "text", where)
    image = None
    if task == "edit":
        if "image" not in row:
            raise BatchError(f"{where}: an edit request needs an image path")
        image = base / take(row, "image", "text", where)
        if not image.exists():
            raise BatchError(f"{where}: no image at {image}")
        try:
            open_image(image, decode=False)  # a regular file; its size from the header
        except ImageInputError as err:
            raise BatchError(f"{where}: {err}") from None
    seed = take(row, "seed", "int", where, default=None, nullable=True)
    if seed is not None:
        check_setting("seed", seed)
    settings = take(row, "settings", "object", where, default={}, nullable=True) or {}
    for name, value in settings.items():
        check_setting(name, value)
    try:
        SamplerConfig().replace(**settings)
    except (TypeError, ValueError) as err:
        raise BatchError(f"{where}: {err}") from None
    return BenchItem(
        str(request_id), BENCH_TASKS[task], BENCH_TASKS[task], instruction, image, seed, settings
    )


def run_batch(
    pipe: ParallelPipeline,
    task: str,
    items: list[BenchItem],
    out: str | os.PathLike,
    batch_size: int = 8,
    overrides: dict[str, Any] | None = None,
    size: tuple[int, int] | None = None,
    shard: Shard | None = None,
    model: str | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Sample the shard's requests not yet finished in `out`; returns the shard's generation
    records (one per request, earlier runs' included). A re-run must use the same model,
    command settings and size (the runner refuses others)."""
    if batch_size < 1:
        raise BatchError(f"--batch-size must be at least 1, got {batch_size}")
    out = Path(out)
    folder = RequestFolder(out, shard or Shard.from_env())
    folder.check()  # new, empty, or an earlier batch run's folder: never a user's other files
    folder.check_todo(items)
    overrides = dict(overrides or {})
    folder.start(
        {
            "batch": task,
            "model": model or "bundled",
            "sampler": pipe.sampler_defaults.replace(**overrides).to_dict(),
            "size": list(size) if size else None,
        }
    )

    def answer(todo: list[BenchItem]):
        for item, result in generate_answers(pipe, todo, batch_size, overrides, size):
            # image, reasoning, meta, GIF under the rules of single runs; recorded after
            publish(result.save, safe_target(out, file_name(item.id)))
            yield item, result.text, result.image, {"seed": result.settings["seed"]}

    with folder.discarded_on_error():
        return run_benchmark(folder, items, answer, None, progress=progress)


def sample_batch(args: argparse.Namespace, task: str) -> int:
    """`paradiff edit|generate --batch REQUESTS`: every request of the file, one folder per id
    under --out; every check before the model is loaded."""
    if args.instruction is not None or getattr(args, "image", None) is not None:
        raise CommandError("--batch takes the requests from its file: drop the text and --image")
    size = check_size_flags(args)
    items = read_requests(args.batch, task)
    shard = Shard.parse(args.shard) if args.shard is not None else None
    out = output_dir(args.out)
    check_writable(out)
    folder = RequestFolder(out, shard or Shard.from_env())
    folder.check()
    folder.check_todo(items)
    pipe, overrides = load_configured_pipeline(args)
    done = run_batch(
        pipe, task, items, out, args.batch_size, overrides, size, shard, args.model, not args.quiet
    )
    if not args.quiet:
        print(f"{len(done)} requests done in {out}")
    return 0


def add_batch_arguments(parser) -> None:
    """The batch flags of `paradiff edit` / `paradiff generate`."""
    group = parser.add_argument_group("batch inference", "many requests from a JSONL file")
    group.add_argument(
        "--batch", default=None, metavar="REQUESTS", help="JSONL requests file (see docs)"
    )
    group.add_argument(
        "--batch-size", type=int, default=8, help="requests per sampler run (1..1024)"
    )
    group.add_argument("--shard", default=None, help="i/n: this process's share of the requests")
