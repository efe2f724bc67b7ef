"""Batch inference: `paradiff edit|generate --batch requests.jsonl --out DIR`.

A requests file is JSONL, one request a line:

    {"id": "cat-1", "instruction": "make the cat blue", "image": "in/cat.png", "seed": 3,
     "settings": {"image_steps": 32, "cfg_image": 2.0}}

`instruction` (or `prompt`, for generation) is required; `image` (editing, a path relative to the
requests file) too for editing; `seed` and `settings` (SamplerConfig fields) are optional and
replace the command's for that request. Requests are sampled in batches of one task, size and
settings (`generate_answers`, which the benchmarks answer their items with too), in a resumable
folder (`paradiff.resumable`): a re-run skips the ids it finished, and a run can be split into
shards (`--shard i/n`, or accelerate's RANK of WORLD_SIZE). DIR gets one folder per id —
image.png, reasoning.txt, meta.json, trajectory.gif — plus run.json and generations*.jsonl (one
line per finished id).

Every prompt gets a fixed seed — its own, else `(base + crc32(id)) mod 2^31` — so its output
depends on neither the order, the batch nor the shard it was drawn in.
"""

from __future__ import annotations

import argparse
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from PIL import Image

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
from paradiff.pipeline import ParallelPipeline, Request, SampleResult
from paradiff.resumable import Answered, ResumableFolder, Shard, file_name
from paradiff.sampling import SamplerConfig
from paradiff.sampling.config import SamplerConfigError, check_setting
from paradiff.schema import SchemaError, record, take

PIPELINE_TASKS = {"edit": "edit", "generation": "generate"}  # a prompt's task -> pipeline task
RECORD_TASKS = {pipeline: task for task, pipeline in PIPELINE_TASKS.items()}


class Prompt(Protocol):
    """What batched sampling needs of a prompt (a request here, a benchmark's item): its id,
    task (edit or generation), instruction, input image (editing), and its own seed and sampler
    settings where it has them."""

    id: str
    task: str
    instruction: str
    seed: int | None
    settings: dict[str, Any]

    def image(self) -> Image.Image: ...


P = TypeVar("P", bound=Prompt)


def item_seed(item_id: str, base: int | None) -> int:
    """The fixed seed of one prompt."""
    return ((base or 0) + zlib.crc32(item_id.encode("utf-8"))) % 2**31


def batches(items: Iterable[P], batch_size: int, fixed_size: bool) -> Iterator[list[P]]:
    """Groups of at most `batch_size` prompts of one task, one set of settings and (editing,
    unless every output has one `fixed_size`) one input image size, in the order their last
    member arrives."""
    pending: dict[tuple, list[P]] = {}
    for item in items:
        size = None if item.task == "generation" or fixed_size else item.image().size
        key = (item.task, size, json.dumps(item.settings, sort_keys=True))
        group = pending.setdefault(key, [])
        group.append(item)
        if len(group) == batch_size:
            yield pending.pop(key)
    yield from pending.values()


def generate_answers(
    pipe: ParallelPipeline,
    items: Iterable[P],
    batch_size: int = 8,
    overrides: dict[str, Any] | None = None,
    size: tuple[int, int] | None = None,
) -> Iterator[tuple[P, SampleResult]]:
    """Each prompt with its answer, batch by batch; `size` (width, height) fixes every
    output's."""
    width, height = size or (None, None)
    for batch in batches(items, batch_size, size is not None):
        settings = {**(overrides or {}), **batch[0].settings}
        base = pipe.sampler_defaults.replace(**settings).seed
        requests = [
            Request(
                item.instruction,
                item.image() if item.task == "edit" else None,
                seed=item_seed(item.id, base) if item.seed is None else item.seed,
            )
            for item in batch
        ]
        results = pipe.run(
            PIPELINE_TASKS[batch[0].task], requests, height=height, width=width, **settings
        )
        yield from zip(batch, results, strict=True)


class BatchError(ValueError):
    """A requests file or output folder that cannot be used."""


@dataclass(frozen=True)
class BatchRequest:
    """One request of a requests file: `task` edit or generation (as its record names it),
    `input_image` (editing) a path; `seed` and `settings` (SamplerConfig fields), where given,
    replace the command's."""

    id: str
    task: str
    instruction: str
    input_image: Path | None = None
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def image(self) -> Image.Image:
        """The input image as RGB (its header checked before it is decoded)."""
        try:
            return open_image(self.input_image).convert("RGB")
        except ImageInputError as err:
            raise BatchError(f"item {self.id}: {err}") from None


class RequestFolder(ResumableFolder):
    """A batch run's folder: one sub-folder per request id (image.png, reasoning.txt, …)."""

    def image_file(self, request_id: str) -> str:
        """Where a request's image goes, relative to the root."""
        return f"{file_name(request_id)}/image.png"

    def check_todo(self, requests: list[BatchRequest]) -> None:
        """Refuse, before anything is sampled, a request folder paradiff may not write: a link,
        a file, or a folder of the user's files (the rules of `publish`)."""
        done = self.generated() if self.root.is_dir() else {}
        for request in self.shard.select(requests):
            if request.id in done:
                continue
            try:
                folder = safe_target(self.root, file_name(request.id))
            except FileInputError as err:
                raise BatchError(f"request {request.id}: {err}") from None
            owned_outputs(folder)


def read_requests(path: str | os.PathLike, task: str) -> list[BatchRequest]:
    """The requests of a JSONL file for `task` ('edit' or 'generate'), every one checked (ids
    unique, fields of their kinds, input images readable regular files within the size limit,
    settings known and in range) before anything is sampled."""
    path = Path(path)
    try:
        text = read_text(path, what="requests file")
    except FileInputError as err:
        raise BatchError(str(err)) from None
    requests: list[BatchRequest] = []
    seen = set()
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise BatchError(f"{where} is not JSON") from None
        try:
            requests.append(read_request(record(row, where), task, path.parent, where))
        except SchemaError as err:
            raise BatchError(str(err)) from None
        except SamplerConfigError as err:
            raise BatchError(f"{where}: {err}") from None
        if requests[-1].id in seen:
            raise BatchError(f"{where}: id {requests[-1].id!r} occurs twice")
        seen.add(requests[-1].id)
    if not requests:
        raise BatchError(f"{path} holds no requests")
    return requests


MAX_ID_LENGTH = 200  # a request's folder is named after its id (file names stop at 255 bytes)


def read_request(row: dict[str, Any], task: str, base: Path, where: str) -> BatchRequest:
    request_id = take(row, "id", "id", where)
    folder = file_name(str(request_id))
    if len(str(request_id)) > MAX_ID_LENGTH:
        raise BatchError(f"{where}: the id is longer than {MAX_ID_LENGTH} characters")
    if folder.endswith((".json", ".jsonl")):  # the run's own files (run.json, generations.jsonl)
        raise BatchError(f"{where}: id {request_id!r} would name a folder like the run's own files")
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
    return BatchRequest(str(request_id), RECORD_TASKS[task], instruction, image, seed, settings)


def run_batch(
    pipe: ParallelPipeline,
    task: str,
    requests: list[BatchRequest],
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
    command settings and size (the folder refuses others)."""
    if batch_size < 1:
        raise BatchError(f"--batch-size must be at least 1, got {batch_size}")
    out = Path(out)
    folder = RequestFolder(out, shard or Shard.from_env())
    folder.check()  # new, empty, or an earlier batch run's folder: never a user's other files
    folder.check_todo(requests)
    overrides = dict(overrides or {})
    for request in requests:  # every request's settings, before the first is sampled
        try:
            config = pipe.sampler_config(**{**overrides, **request.settings})
            pipe.check_settings(PIPELINE_TASKS[request.task], config, size)
        except ValueError as err:
            raise BatchError(f"request {request.id}: {err}") from None
    folder.start(
        {
            "batch": task,
            "model": model or "bundled",
            "sampler": pipe.sampler_config(**overrides).to_dict(),
            "size": list(size) if size else None,
        }
    )

    def answer(todo: list[BatchRequest]) -> Iterator[Answered]:
        for request, result in generate_answers(pipe, todo, batch_size, overrides, size):
            # image, reasoning, meta, GIF under the rules of single runs; recorded after
            publish(result.save, safe_target(out, file_name(request.id)))
            yield (
                request,
                {
                    "id": request.id,
                    "task": request.task,
                    "category": request.task,
                    "instruction": request.instruction,
                    "text": result.text,
                    "image": folder.image_file(request.id),
                    "seed": result.settings["seed"],
                },
            )

    with folder.discarded_on_error():
        return folder.generate(requests, answer, progress)


def sample_batch(args: argparse.Namespace, task: str) -> int:
    """`paradiff edit|generate --batch REQUESTS`: every request of the file, one folder per id
    under --out; every check before the model is loaded."""
    if args.instruction is not None or getattr(args, "image", None) is not None:
        raise CommandError("--batch takes the requests from its file: drop the text and --image")
    size = check_size_flags(args)
    requests = read_requests(args.batch, task)
    shard = Shard.parse(args.shard) if args.shard is not None else None
    out = output_dir(args.out)
    check_writable(out)
    folder = RequestFolder(out, shard or Shard.from_env())
    folder.check()
    folder.check_todo(requests)
    pipe, overrides = load_configured_pipeline(args)
    done = run_batch(
        pipe,
        task,
        requests,
        out,
        args.batch_size,
        overrides,
        size,
        shard,
        args.model,
        not args.quiet,
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
