"""Benchmark items (one instruction and, for editing, one input image) and ParaBench loading.

A local ParaBench copy is JSONL — one object per line with `id`, `task` (edit or generation),
`category`, `instruction` and, for edits, `input_image` (a path relative to the file) — or the
published dataset's parquet, whose columns go by other names (`input_text`/`prompt` for the
instruction, `input_image_bytes`/`image` for the image, as raw bytes or {"bytes", "path"}).
Without a task, a row with an input image is an edit; without a category, the task stands in.
A data argument that is no local path but a hub id (`tyfeld/ParaBench`) is the published data
set, fetched through huggingface_hub like a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from paradiff import checkpoint
from paradiff.files import FileInputError, ImageInputError, open_image, read_text
from paradiff.schema import check_kind

TASKS = ("edit", "generation")
# ParaBench's six metrics, each scored 0-100 per sample (by the LLM judge, or exactly by a world's
# own judge such as the shapes world's).
METRICS: tuple[str, ...] = (
    "text_quality",
    "text_alignment",
    "image_quality",
    "image_alignment",
    "image_consistency",
    "output_alignment",
)


class BenchDataError(ValueError):
    """A benchmark folder or record that cannot be read."""


@dataclass(frozen=True)
class BenchItem:
    """One benchmark prompt. `input_image` (editing only): a path, PNG/JPEG bytes or PIL image;
    `seed` and `settings` (SamplerConfig fields), where given, replace the run's for this item."""

    id: str
    task: str
    category: str
    instruction: str
    input_image: str | os.PathLike | bytes | Image.Image | None = None
    seed: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def image(self) -> Image.Image:
        """The input image as RGB (a regular file or bytes, its header checked before it is
        decoded; an error names the item)."""
        source: Any = self.input_image
        if source is None:
            raise BenchDataError(f"item {self.id} has no input image")
        if not isinstance(source, Image.Image):
            try:
                source = open_image(source)
            except ImageInputError as err:
                raise BenchDataError(f"item {self.id}: {err}") from None
        return source.convert("RGB")


# Accepted names of each field, first match wins (the published parquet varies them).
COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "idx", "index"),
    "task": ("task", "task_type"),
    "category": ("category", "type", "subtask"),
    "instruction": ("instruction", "input_text", "prompt"),
    "input_image": ("input_image", "input_image_bytes", "image"),
}
TASK_NAMES = {
    "edit": "edit",
    "editing": "edit",
    "generation": "generation",
    "generate": "generation",
}


def pick(row: dict[str, Any], field: str, where: str, required: bool = True) -> Any:
    """The value of `field` under the first of its accepted names present in `row`."""
    for name in COLUMNS[field]:
        if name in row:
            return row[name]
    if required:
        raise BenchDataError(
            f"{where} has no {field} column (looked for {', '.join(COLUMNS[field])})"
        )
    return None


def image_source(value: Any, base: Path, root: Path, where: str) -> str | bytes | None:
    """A path (relative to `base`), raw bytes, or a datasets-style {"bytes", "path"} struct.

    A path must lead (symlinks followed) to a file inside the data folder `root`: a record
    cannot make the benchmark read, and send to a judge, a file from elsewhere."""
    if isinstance(value, dict):
        value = value.get("bytes") or value.get("path")
    if value is None or isinstance(value, bytes):
        return value
    if not isinstance(value, str) or not value.strip():
        raise BenchDataError(f"{where}: input_image must be a path, got {value!r}")
    path = (base / value).resolve()
    if not path.is_relative_to(root.resolve()):
        raise BenchDataError(f"{where}: input_image {value!r} is outside the data folder {root}")
    return str(path)


def item_from_row(
    row: dict[str, Any], default_id: str, base: Path, where: str, root: Path
) -> BenchItem:
    """One benchmark item from a JSONL record or parquet row (`default_id` names id-less rows;
    image paths are relative to `base`, inside the data folder `root`)."""
    if not isinstance(row, dict):
        raise BenchDataError(f"{where}: not a JSON object")
    image = image_source(pick(row, "input_image", where, required=False), base, root, where)
    task = pick(row, "task", where, required=False) or (
        "edit" if image is not None else "generation"
    )
    if not isinstance(task, str) or task not in TASK_NAMES:
        raise BenchDataError(f"{where}: unknown task {task!r} (expected edit or generation)")
    task = TASK_NAMES[task]
    item_id = pick(row, "id", where, required=False)
    if item_id is not None and not check_kind(item_id, "id"):
        raise BenchDataError(f"{where}: id must be a non-empty string or a whole number")
    instruction = pick(row, "instruction", where)
    if not isinstance(instruction, str) or not instruction.strip():
        raise BenchDataError(f"{where}: the instruction is missing or empty ({instruction!r})")
    category = pick(row, "category", where, required=False)
    if category is not None and not check_kind(category, "text"):
        raise BenchDataError(f"{where}: category must be a non-empty string, got {category!r}")
    item = BenchItem(
        id=default_id if item_id is None else str(item_id),
        task=task,
        category=category or task,
        instruction=instruction,
        input_image=image if task == "edit" else None,
    )
    if task == "edit" and image is None:
        raise BenchDataError(f"{where}: editing item {item.id} has no input image")
    return item


def read_jsonl(path: Path, root: Path) -> list[BenchItem]:
    items = []
    try:
        text = read_text(path, inside=root)
    except FileInputError as err:
        raise BenchDataError(str(err)) from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise BenchDataError(f"{path.name} line {number}: not JSON ({err})") from None
        where = f"{path.name} line {number}"
        items.append(item_from_row(row, f"{path.stem}-{number}", path.parent, where, root))
    return items


def read_parquet(path: Path, root: Path) -> list[BenchItem]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BenchDataError(
            f"{path.name}: reading parquet needs pyarrow (pip install pyarrow)"
        ) from None
    rows = pq.read_table(path).to_pylist()
    return [
        item_from_row(row, f"{path.stem}-{n}", path.parent, f"{path.name} row {n}", root)
        for n, row in enumerate(rows)
    ]


def resolve_data(data: str | os.PathLike) -> Path:
    """A local file or folder as is; an `owner/name` hub id through the hub (a data set)."""
    root = Path(data).expanduser()
    if root.exists():
        return root
    if checkpoint.is_hub_id(str(data)):
        return checkpoint.download_snapshot(str(data), repo_type="dataset")
    raise BenchDataError(f"no data at {root}")


def load_parabench(
    data: str | os.PathLike, limit: int | None = None, categories: Sequence[str] | None = None
) -> list[BenchItem]:
    """The items of a ParaBench copy: a JSONL or parquet file, or a folder of them (every
    `*.jsonl` / `*.parquet` below it, sorted by path), then `categories` kept (all when None)
    and the first `limit` taken."""
    root = resolve_data(data)
    paths = (
        [root]
        if root.is_file()
        else sorted(
            p for p in root.rglob("*") if p.suffix in (".jsonl", ".parquet") and p.is_file()
        )
    )
    if not paths:
        raise BenchDataError(f"{root} holds no .jsonl or .parquet file")
    items: list[BenchItem] = []
    for path in paths:
        folder = root if root.is_dir() else root.parent
        items += (read_parquet if path.suffix == ".parquet" else read_jsonl)(path, folder)
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise BenchDataError(f"{root}: id {item.id!r} occurs twice")
        seen.add(item.id)
    if categories:
        known = {item.category for item in items}
        unknown = sorted(set(categories) - known)
        if unknown:
            raise BenchDataError(f"unknown categories {unknown} (the data has {sorted(known)})")
        items = [item for item in items if item.category in categories]
    if limit is not None:
        if limit < 1:
            raise BenchDataError(f"--limit must be at least 1, got {limit}")
        items = items[:limit]
    if not items:
        raise BenchDataError(f"{root} holds no benchmark items")
    return items


def check_inputs(items: Sequence[BenchItem]) -> None:
    """Open every input image's header (not its pixels): a missing, unreadable or oversized
    image is an error before a run starts, not half-way through it."""
    for item in items:
        if item.task != "edit" or isinstance(item.input_image, Image.Image):
            continue
        try:
            open_image(item.input_image, decode=False)  # a regular file; the header's size
        except ImageInputError as err:
            raise BenchDataError(f"item {item.id}: {err}") from None
