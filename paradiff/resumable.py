"""Resumable, shardable generation in one folder: what the benchmark runner
(`paradiff.bench.runner`) and batch inference (`paradiff.batch`) share.

A folder holds

- `run.json`: the settings of the run (model, sampler, …); a re-run must match them;
- `generations<shard>.jsonl`: one record per answered item (id, task, category, instruction,
  text, the path of its image inside the folder, …), written once the item's files are;
- any other kind of record file its user keeps the same way (the runner's `scores<shard>.jsonl`);

where `<shard>` is empty for an unsharded run and `.shard-i-of-n` otherwise. Every process
appends to its own files only and reads everyone's, so a re-run (sharded differently or not)
skips what any earlier run finished.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from paradiff.files import FileInputError, check_inside, read_text, safe_target, write_atomic
from paradiff.sampling.config import SamplerConfig, SamplerConfigError, unset_exact_values
from paradiff.schema import SchemaError, record, take

RUN_FILE = "run.json"
GENERATIONS = "generations"


class RunError(ValueError):
    """A run folder that does not fit the command (other settings, bad shard)."""


class Identified(Protocol):
    id: str


T = TypeVar("T")
ItemT = TypeVar("ItemT", bound=Identified)
Answered = tuple[Any, dict[str, Any]]  # an item and its generation record
# A record check maps (JSON value, where it was read) to the record, or raises SchemaError.
RecordCheck = Callable[[Any, str], dict[str, Any]]


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

    def select(self, items: list[T]) -> list[T]:
        return items[self.index :: self.count]


def with_sampler_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with its sampler settings as they ran: completed by the defaults of the settings
    added since they were written (a run recorded before a new setting existed ran with its
    default), and resolved (`SamplerConfig.resolved`; a run recorded before fast settings could
    be unset ran the speed preset's value of each one at its exact value)."""
    sampler = settings.get("sampler")
    if not isinstance(sampler, dict):
        return settings
    try:
        config = SamplerConfig.from_dict(unset_exact_values(sampler))
    except (SamplerConfigError, TypeError):  # a setting since removed: compared as it is
        return settings
    return {**settings, "sampler": config.resolved().to_dict()}


def file_name(item_id: str) -> str:
    """A file name for an id: unsafe characters replaced, plus a checksum when any were."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)
    if safe != item_id or safe.startswith("."):
        safe = f"{safe}-{zlib.crc32(item_id.encode('utf-8')):08x}"
    return safe


def check_record(row: Any, where: str) -> dict[str, Any]:
    """A record with an id, its task and category text where it has them."""
    row = record(row, where)
    take(row, "id", "text", where)
    for name in ("task", "category"):
        take(row, name, "text", where, default=None)
    return row


def check_generation(row: Any, where: str) -> dict[str, Any]:
    """A generation record: an id, the image's path and the reasoning text."""
    row = check_record(row, where)
    take(row, "image", "text", where)
    take(row, "text", "str", where, default="")
    return row


def read_records(
    paths: Iterable[Path], root: Path | None = None, check: RecordCheck = check_record
) -> dict[str, dict[str, Any]]:
    """id -> record of JSONL files, first occurrence kept; a torn last line (one without its
    newline: a killed write, or another process mid-write) is skipped; any other line must pass
    `check`, else RunError naming the file and line."""
    records: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            text = read_text(path, inside=root)
        except FileInputError as err:
            raise RunError(str(err)) from None
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines) and not text.endswith("\n"):
                    continue  # a torn last line: its newline was never written
                raise RunError(f"{path} line {number} is not JSON") from None
            try:
                row = check(row, f"{path} line {number}")
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


class ResumableFolder:
    """The files of one resumable run folder, as seen by one shard."""

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
            recorded = self.settings()
            earlier = with_sampler_defaults(recorded)
            changed = sorted(
                k for k in settings.keys() | earlier.keys() if settings.get(k) != earlier.get(k)
            )
            if changed:
                raise RunError(
                    f"{self.root} holds a run with other {', '.join(changed)}: "
                    "use another --out or the same settings"
                )
            if recorded == settings:
                return
        # a new run's settings, or an earlier run's written in an older form: as they ran
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
        """Every shard's `kind` (generations, …) files."""
        return sorted(self.root.glob(f"{kind}*.jsonl"))

    def own_file(self, kind: str) -> Path:
        return self.root / f"{kind}{self.shard.suffix}.jsonl"

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
        records = read_records(self.files(GENERATIONS), self.root, check_generation)
        for row in records.values():
            self.answer_image(row)
        return records

    def record_answers(
        self, todo: list[ItemT], answer: Callable[[list[ItemT]], Iterable[Answered]]
    ) -> Iterator[Answered]:
        """Answer `todo` (`answer` writes each item's files and yields the item with its generation
        record), appending each record to this shard's generations file as it comes: a killed run
        leaves no record of a half-written answer."""
        if not todo:
            return
        writer = JsonlWriter(self.own_file(GENERATIONS))
        for item, row in answer(todo):
            writer.append(row)
            yield item, row

    def generate(
        self,
        items: list[ItemT],
        answer: Callable[[list[ItemT]], Iterable[Answered]],
        progress: bool = False,
    ) -> list[dict[str, Any]]:
        """Answer the shard's `items` that no run generated yet (`record_answers`); returns the
        generation records of the shard's items, earlier runs' included, in item order."""
        items = self.shard.select(items)
        generated = self.generated()
        todo = [item for item in items if item.id not in generated]
        with tqdm(total=len(items), initial=len(items) - len(todo), disable=not progress) as bar:
            for item, row in self.record_answers(todo, answer):
                generated[item.id] = row
                bar.update(1)
        return [generated[item.id] for item in items]
