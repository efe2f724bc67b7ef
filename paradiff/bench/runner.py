"""Resumable benchmark runs: generate every item once, score every answer once.

A run folder holds

- `run.json`: the settings of the run (model, sampler, data, judge); a re-run must match them;
- `outputs/<name>.png` and `outputs/<name>.txt`: each answer's image and reasoning (a subclass
  may lay them out otherwise: `answer_files`);
- `generations<shard>.jsonl`: one line per answered item, written as soon as its batch is done
  (id, task, category, instruction, text, image path, seed);
- `scores<shard>.jsonl`: one line per scored item (id, task, category, the metrics);

where `<shard>` is empty for an unsharded run and `.shard-i-of-n` otherwise. Every process appends
to its own files only and reads everyone's, so a re-run (sharded differently or not) skips what
any earlier run finished: no item is generated twice, no answer scored twice. A run without a
scorer only generates; a later run with one scores the saved answers without generating again.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from paradiff.bench.items import METRICS, BenchItem
from paradiff.files import FileInputError, check_inside, make_dirs, read_text, safe_target
from paradiff.files import write_atomic as write_file_atomic
from paradiff.sampling.config import SamplerConfig, SamplerConfigError
from paradiff.schema import SchemaError, record, take

RUN_FILE = "run.json"
OUTPUTS_DIR = "outputs"
GENERATIONS = "generations"
SCORES = "scores"

# An answerer turns items into (item, reasoning text, image, extra fields to record).
Answer = tuple[BenchItem, str, Image.Image, dict[str, Any]]
Answerer = Callable[[list[BenchItem]], Iterable[Answer]]
# A scorer maps (item, generation record, output image path) to the metrics (None = not scored).
Scorer = Callable[[BenchItem, dict[str, Any], Path], dict[str, Any]]


class RunError(ValueError):
    """A run folder that does not fit the command (other settings, bad shard)."""


@dataclass(frozen=True)
class Shard:
    """Process `index` of `count` takes items index, index + count, index + 2 count, …"""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, spec: str) -> Shard:
        """'i/n' with 0 <= i < n."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
        if not match or not int(match[1]) < int(match[2]):
            raise RunError(f"bad --shard {spec!r}: expected i/n with 0 <= i < n")
        return cls(int(match[1]), int(match[2]))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Shard:
        """This process's shard under `accelerate launch` / torchrun (RANK of WORLD_SIZE)."""
        env = os.environ if env is None else env
        try:
            count, index = int(env.get("WORLD_SIZE", "1")), int(env.get("RANK", "0"))
        except ValueError:
            raise RunError("RANK and WORLD_SIZE must be whole numbers") from None
        if not 0 <= index < count:
            raise RunError(f"RANK {index} is not below WORLD_SIZE {count}")
        return cls(index, count)

    @property
    def suffix(self) -> str:
        return "" if self.count == 1 else f".shard-{self.index}-of-{self.count}"

    def select(self, items: list[BenchItem]) -> list[BenchItem]:
        return items[self.index :: self.count]


def with_sampler_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with its sampler settings completed by the defaults of the settings added since
    they were written (a run recorded before a new setting existed ran with its default)."""
    sampler = settings.get("sampler")
    if not isinstance(sampler, dict):
        return settings
    try:
        return {**settings, "sampler": SamplerConfig.from_dict(sampler).to_dict()}
    except (SamplerConfigError, TypeError):  # a setting since removed: compared as it is
        return settings


def file_name(item_id: str) -> str:
    """A file name for an id: unsafe characters replaced, plus a checksum when any were."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)
    if safe != item_id or safe.startswith("."):
        safe = f"{safe}-{zlib.crc32(item_id.encode('utf-8')):08x}"
    return safe


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file (readers never see half of it; a link
    at `path` is replaced, never followed)."""
    write_file_atomic(path, text)


def check_record(row: Any, kind: str | None, where: str) -> dict[str, Any]:
    """A generations or scores record (any record with an id when `kind` is None), its fields
    of the kinds the runner writes."""
    row = record(row, where)
    take(row, "id", "text", where)
    for name in ("task", "category"):
        take(row, name, "text", where, default=None)
    if kind == GENERATIONS:
        take(row, "image", "text", where)
        take(row, "text", "str", where, default="")
    if kind == SCORES:
        for metric in METRICS:
            take(row, metric, "number", where, default=None, nullable=True)
    return row


def read_records(
    paths: Iterable[Path], root: Path | None = None, kind: str | None = None
) -> dict[str, dict[str, Any]]:
    """id -> record of JSONL files, first occurrence kept; a torn last line (a killed write, or
    another process mid-write) is skipped; any other line must be a record of `kind`
    (`check_record`), else RunError naming the file and line."""
    records: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            lines = read_text(path, inside=root).splitlines()
        except FileInputError as err:
            raise RunError(str(err)) from None
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    continue  # a torn last line
                raise RunError(f"{path} line {number} is not JSON") from None
            try:
                row = check_record(row, kind, f"{path} line {number}")
            except SchemaError as err:
                raise RunError(str(err)) from None
            records.setdefault(row["id"], row)
    return records


class JsonlWriter:
    """Appends records to one JSONL file, each line handed to the OS at once (so it survives the
    process being killed); a torn last line left by a killed run is cut off first. The file is
    never reached through a link."""

    def __init__(self, path: Path) -> None:
        try:
            safe_target(path.parent, path.name)
        except FileInputError as err:
            raise RunError(str(err)) from None
        if path.exists():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(path, "r+b") as handle:
                    handle.truncate(data.rfind(b"\n") + 1)
        self.path, self.lock = path, threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        with self.lock, os.fdopen(os.open(self.path, flags, 0o644), "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")


class BenchFolder:
    """The files of one run folder, as seen by one shard."""

    def __init__(self, root: str | os.PathLike, shard: Shard = Shard()) -> None:
        self.root, self.shard = Path(root), shard
        self.created: Path | None = None  # the first folder `start` made, if it made one

    def check(self) -> None:
        """Refuse a path that is not a directory, or a non-empty folder that is no run folder
        (a run writes only into its own folder)."""
        if self.root.exists() and not self.root.is_dir():
            raise RunError(f"{self.root} exists and is not a directory")
        if self.root.is_dir() and any(self.root.iterdir()) and not (self.root / RUN_FILE).is_file():
            raise RunError(
                f"{self.root} is not empty: it holds other files and no earlier run, "
                "choose a new or empty folder"
            )

    def start(self, settings: dict[str, Any]) -> None:
        """Create the folder and record `settings`, or check them against an earlier run's."""
        self.check()
        missing = [p for p in (self.root, *self.root.absolute().parents) if not p.exists()]
        self.created = missing[-1] if missing else None
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / RUN_FILE
        if path.is_file():
            earlier = with_sampler_defaults(self.settings())
            changed = sorted(
                k for k in settings.keys() | earlier.keys() if settings.get(k) != earlier.get(k)
            )
            if changed:
                raise RunError(
                    f"{self.root} holds a run with other {', '.join(changed)}: "
                    "use another --out or the same settings"
                )
        else:
            write_atomic(path, json.dumps(settings, indent=1) + "\n")

    @contextmanager
    def discarded_on_error(self) -> Iterator[None]:
        """Run the body; if it fails before anything was generated, remove the folder that
        `start` made (an error leaves no half-made run behind)."""
        try:
            yield
        except BaseException:
            if self.created is not None and not self.generated():
                shutil.rmtree(self.created, ignore_errors=True)
            raise

    def settings(self) -> dict[str, Any]:
        path = self.root / RUN_FILE
        if not path.is_file():
            raise RunError(f"{self.root} is not a run folder (no {RUN_FILE})")
        try:
            return record(json.loads(read_text(path, inside=self.root)), str(path))
        except (FileInputError, SchemaError, json.JSONDecodeError) as err:
            raise RunError(f"{path} is damaged: {err}") from None

    def files(self, kind: str) -> list[Path]:
        """Every shard's `kind` (generations or scores) files."""
        return sorted(self.root.glob(f"{kind}*.jsonl"))

    def own_file(self, kind: str) -> Path:
        return self.root / f"{kind}{self.shard.suffix}.jsonl"

    def answer_files(self, item_id: str) -> tuple[str, str]:
        """Where an answer's image and reasoning go, relative to the root."""
        name = file_name(item_id)
        return f"{OUTPUTS_DIR}/{name}.png", f"{OUTPUTS_DIR}/{name}.txt"

    def write_answer(self, item_id: str, text: str, image: Image.Image) -> str:
        """Write an answer's image and reasoning (never through a link); returns the image's
        path relative to the root."""
        image_file, text_file = self.answer_files(item_id)
        try:
            make_dirs(self.root, Path(image_file).parent)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            write_file_atomic(safe_target(self.root, image_file), buffer.getvalue())
            write_file_atomic(safe_target(self.root, text_file), text + "\n")
        except FileInputError as err:
            raise RunError(str(err)) from None
        return image_file

    def answer_image(self, record: dict[str, Any]) -> Path:
        """The output image a generation record names: a path inside the run folder."""
        path = self.root / record["image"]
        if Path(record["image"]).is_absolute() or ".." in Path(record["image"]).parts:
            raise RunError(f"{self.root}: the image of {record['id']!r} is outside the run folder")
        try:
            check_inside(path, self.root, f"the image of {record['id']!r}")
        except FileInputError as err:
            raise RunError(str(err)) from None
        return path

    def generated(self) -> dict[str, dict[str, Any]]:
        records = read_records(self.files(GENERATIONS), self.root, GENERATIONS)
        for row in records.values():
            self.answer_image(row)
        return records

    def scored(self) -> dict[str, dict[str, Any]]:
        return read_records(self.files(SCORES), self.root, SCORES)


def run_benchmark(
    folder: BenchFolder,
    items: list[BenchItem],
    answer: Answerer,
    score: Scorer | None,
    concurrency: int = 1,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Answer and score the shard's `items`, skipping what the folder already holds.

    Scoring runs in `concurrency` threads while generation goes on. Returns the score records of
    the shard's items in item order; with `score` None only generation runs and the generation
    records come back. An error stops the run after the scoring in flight is recorded; running
    again resumes.
    """
    items = folder.shard.select(items)
    generated, scored = folder.generated(), folder.scored()
    to_answer = [item for item in items if item.id not in generated]
    if score is None:
        bar = tqdm(total=len(items), initial=len(items) - len(to_answer), disable=not progress)
        with bar:
            for item, record in _answers(folder, to_answer, answer):
                generated[item.id] = record
                bar.update(1)
        return [generated[item.id] for item in items]
    scores = JsonlWriter(folder.own_file(SCORES))
    to_score = [item for item in items if item.id in generated and item.id not in scored]
    done = {"generate": len(items) - len(to_answer), "score": sum(i.id in scored for i in items)}
    bars = {
        name: tqdm(total=len(items), initial=count, desc=name, disable=not progress)
        for name, count in done.items()
    }

    def score_one(item: BenchItem, record: dict[str, Any]) -> None:
        metrics = score(item, record, folder.answer_image(record))
        result = {"id": item.id, "task": item.task, "category": item.category, **metrics}
        scores.append(result)
        scored[item.id] = result
        bars["score"].update(1)

    pending: list[Future] = []
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            try:
                for item in to_score:
                    pending.append(pool.submit(score_one, item, generated[item.id]))
                for item, record in _answers(folder, to_answer, answer):
                    generated[item.id] = record
                    bars["generate"].update(1)
                    # drop finished scorings (result() re-raises a failed one)
                    pending = [f for f in pending if not f.done() or f.result()]
                    pending.append(pool.submit(score_one, item, record))
                for future in pending:
                    future.result()
            except BaseException:
                for future in pending:
                    future.cancel()  # what is in flight finishes (the pool waits) and is recorded
                raise
    finally:
        for bar in bars.values():
            bar.close()
    return [scored[item.id] for item in items]


def _answers(
    folder: BenchFolder, items: list[BenchItem], answer: Answerer
) -> Iterator[tuple[BenchItem, dict[str, Any]]]:
    """Answer `items`, writing each answer's files, then its generation record (so a killed run
    leaves no record of a half-written answer)."""
    if not items:
        return
    writer = JsonlWriter(folder.own_file(GENERATIONS))
    for item, text, image, extra in answer(items):
        image_file = folder.write_answer(item.id, text, image)
        record = {
            "id": item.id,
            "task": item.task,
            "category": item.category,
            "instruction": item.instruction,
            "text": text,
            "image": image_file,
            **extra,
        }
        writer.append(record)
        yield item, record
