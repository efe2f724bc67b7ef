"""Pre-tokenization: training records -> shards of token ids, once, so training never runs a VQ.

A record is `{id, system_prompt, user_prompt, user_image, answer_text, answer_image}` (images as
paths relative to the records file; `user_image` null for generation). Each example keeps its
parts apart — prompt ids, input codes (h, w), output codes (h, w), reasoning ids — so training can
build the conditional sequence and its unconditional twin (CFG dropout) with the layout.

Output folder: `shard-00000.npz` … (every field concatenated, with per-example lengths),
`pretokenize.json` (the source, the shard size, records and shards done, skipped records and their reasons).
Re-running the same command resumes after the last finished shard.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from paradiff.checkpoint import load_tokenizers, read_config, resolve_checkpoint_dir
from paradiff.files import FileInputError, read_json_object
from paradiff.image_tokenizers.base import encode_image
from paradiff.layout import Layout, token_space_from_config
from paradiff.sampling.settings import read_sampler_settings
from paradiff.training.records import read_records, records_file_problem

STATE_FILE = "pretokenize.json"
SHARD_PATTERN = "shard-{:05d}.npz"
FIELDS = ("prompt", "input_codes", "output_codes", "text")
RECORD_KEYS = ("id", "system_prompt", "user_prompt", "answer_text", "answer_image")


class PretokenizeError(ValueError):
    """Options that make pre-tokenization impossible (missing records file, changed source)."""


class BadRecord(ValueError):
    """A record skipped with its reason."""


@dataclass
class Example:
    """One pre-tokenized record. input_codes is None for generation."""

    id: str
    prompt: np.ndarray  # (P,) prompt ids, instruction included
    input_codes: np.ndarray | None  # (h, w)
    output_codes: np.ndarray  # (h, w)
    text: np.ndarray  # (T,) reasoning ids, no end marker

    @property
    def task(self) -> str:
        return "generate" if self.input_codes is None else "edit"


class RecordEncoder:
    """Turns records into Examples with a checkpoint's tokenizers and layout."""

    def __init__(self, checkpoint: str | os.PathLike, root: Path) -> None:
        directory = resolve_checkpoint_dir(checkpoint)
        self.space = token_space_from_config(read_config(directory))
        self.layout = Layout(self.space)
        self.text, self.image = load_tokenizers(directory, self.space)
        settings = read_sampler_settings(directory)
        self.size = settings.get("image_size") if settings.get("fixed_size") else None
        self.root = root

    def encode(self, record: dict[str, Any]) -> Example:
        missing = [key for key in RECORD_KEYS if not record.get(key)]
        if missing:
            raise BadRecord(f"missing field {missing[0]}")
        input_codes = None
        if record.get("user_image"):
            input_codes = self._codes(record["user_image"], "user_image")
        output_codes = self._codes(record["answer_image"], "answer_image")
        if input_codes is not None and input_codes.shape != output_codes.shape:
            raise BadRecord("input and output images have different code grids")
        task = "edit" if input_codes is not None else "generate"
        prompt = self.layout.prompt_ids(
            task, record["user_prompt"], self.text, system_prompt=record["system_prompt"]
        )
        return Example(
            id=str(record["id"]),
            prompt=np.asarray(prompt, dtype=np.int32),
            input_codes=input_codes,
            output_codes=output_codes,
            text=np.asarray(self.text.encode(record["answer_text"]), dtype=np.int32),
        )

    def _codes(self, relative: str, name: str) -> np.ndarray:
        path = self.root / relative
        if not path.is_file():
            raise BadRecord(f"{name} missing")
        try:
            codes, _ = encode_image(self.image, path, self.size)
        except (OSError, ValueError) as err:
            raise BadRecord(f"{name} unreadable ({type(err).__name__})") from err
        return codes.numpy().astype(np.int32)


def write_shard(examples: list[Example], path: Path) -> None:
    """Concatenate every field with its lengths (codes flattened, grids kept) and write atomically."""
    arrays: dict[str, np.ndarray] = {}
    for name in FIELDS:
        parts = [getattr(e, name) for e in examples]
        flat = [np.zeros(0, np.int32) if p is None else p.reshape(-1) for p in parts]
        arrays[name] = np.concatenate(flat).astype(np.int32)
        arrays[f"{name}_len"] = np.asarray([len(f) for f in flat], dtype=np.int64)
    arrays["grid"] = np.asarray([e.output_codes.shape for e in examples], dtype=np.int32)
    arrays["ids"] = np.asarray([e.id for e in examples])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def read_shard(path: Path) -> list[Example]:
    data = np.load(path)
    split = {name: np.split(data[name], np.cumsum(data[f"{name}_len"])[:-1]) for name in FIELDS}
    examples = []
    for i, (h, w) in enumerate(data["grid"]):
        codes_in = split["input_codes"][i]
        examples.append(
            Example(
                id=str(data["ids"][i]),
                prompt=split["prompt"][i],
                input_codes=codes_in.reshape(h, w) if codes_in.size else None,
                output_codes=split["output_codes"][i].reshape(h, w),
                text=split["text"][i],
            )
        )
    return examples


def pretokenize(
    records: str | os.PathLike,
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    shard_size: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the shards for `records`; resumes an interrupted run. Returns the state summary."""
    records = Path(records)
    problem = records_file_problem(records)
    if problem:
        raise PretokenizeError(problem)
    if shard_size < 1:
        raise PretokenizeError(f"shard size must be at least 1, got {shard_size}")
    if not str(out).strip():
        raise PretokenizeError("--out is empty: name a new or empty folder")
    out = Path(out)
    source = {"records": str(records.resolve()), "shard_size": shard_size}
    state = earlier_state(out, source)
    encoder = RecordEncoder(checkpoint, records.parent)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    done = state["records_done"]
    skipped = Counter(state["skipped"])
    pending: list[Example] = []
    pending_skips: list[tuple[str, str]] = []

    def flush() -> None:
        name = SHARD_PATTERN.format(len(state["shards"]))
        if pending:
            write_shard(pending, out / name)
        state["shards"].append(name if pending else None)
        state["examples"] += len(pending)
        for where, reason in pending_skips:
            skipped[reason] += 1
            state["skipped_ids"].append(where)
        state["skipped"] = dict(skipped)
        state["records_done"] += len(pending) + len(pending_skips)
        tmp = out / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        os.replace(tmp, out / STATE_FILE)
        pending.clear()
        pending_skips.clear()

    bar = tqdm(desc="pretokenize", unit="rec", disable=not progress, initial=done)
    for index, (_, record) in enumerate(read_records(records)):
        if index < done:
            continue
        try:
            if isinstance(record, str):
                raise BadRecord(record)
            pending.append(encoder.encode(record))
        except BadRecord as err:
            where = record.get("id", index) if isinstance(record, dict) else index
            pending_skips.append((str(where), str(err)))
        bar.update(1)
        if len(pending) + len(pending_skips) == shard_size:
            flush()
    if pending or pending_skips:
        flush()
    bar.close()
    if not state["examples"]:
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "it is empty"
        if created:
            shutil.rmtree(out)
        raise PretokenizeError(f"no record of {records} could be used ({reasons})")
    return state


def earlier_state(out: Path, source: dict[str, Any]) -> dict[str, Any]:
    """The state of an interrupted run to resume in `out`, or a fresh one when `out` is new or
    empty; PretokenizeError for a folder that holds anything else, or another source's shards."""
    fresh = {**source, "records_done": 0, "shards": [], "examples": 0, "skipped": {}}
    if out.is_symlink() or out.exists() and not out.is_dir():
        raise PretokenizeError(f"{out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return {**fresh, "skipped_ids": []}
    path = out / STATE_FILE
    try:
        state = read_json_object(path, limit=1 << 26)
        if not all(
            isinstance(state.get(k), type(v)) for k, v in fresh.items() if k != "records_done"
        ):
            raise ValueError
    except (FileInputError, ValueError):
        raise PretokenizeError(
            f"{out} holds files that are not paradiff's pretokenized shards (no readable "
            f"{STATE_FILE}): choose a new or empty folder"
        ) from None
    state.setdefault("records_done", len(state["shards"]) * source["shard_size"])  # older runs
    state.setdefault("skipped_ids", [])
    if {k: state[k] for k in source} != source:
        raise PretokenizeError(f"{out} holds shards of another source or shard size")
    return state
