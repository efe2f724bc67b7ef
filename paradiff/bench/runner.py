"""Resumable benchmark runs: generate every item once, score every answer once.

A run folder is a resumable folder (`paradiff.resumable`: `run.json`, `generations<shard>.jsonl`,
one file of each kind per shard) that also holds

- `outputs/<name>.png` and `outputs/<name>.txt`: each answer's image and reasoning;
- `scores<shard>.jsonl`: one line per scored item (id, task, category, the metrics);

so a re-run (sharded differently or not) skips what any earlier run finished: no item is generated
twice, no answer scored twice. A run without a scorer only generates; a later run with one scores
the saved answers without generating again."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from paradiff.bench.items import METRICS, BenchItem
from paradiff.files import FileInputError, make_dirs, safe_target
from paradiff.files import write_atomic as write_file_atomic
from paradiff.resumable import (
    JsonlWriter,
    ResumableFolder,
    RunError,
    check_record,
    file_name,
    read_records,
)
from paradiff.schema import take

OUTPUTS_DIR = "outputs"
SCORES = "scores"

# An answerer turns items into (item, reasoning text, image, extra fields to record).
Answer = tuple[BenchItem, str, Image.Image, dict[str, Any]]
Answerer = Callable[[list[BenchItem]], Iterable[Answer]]
# A scorer maps (item, generation record, output image path) to the metrics (None = not scored).
Scorer = Callable[[BenchItem, dict[str, Any], Path], dict[str, Any]]


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file (readers never see half of it; a link
    at `path` is replaced, never followed)."""
    write_file_atomic(path, text)


def check_score(row: Any, where: str) -> dict[str, Any]:
    """A scores record: an id and the metrics, each a number or null."""
    row = check_record(row, where)
    for metric in METRICS:
        take(row, metric, "number", where, default=None, nullable=True)
    return row


class BenchFolder(ResumableFolder):
    """The files of one benchmark run folder, as seen by one shard: each answer's files, its
    generation record and its scores record."""

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

    def scored(self) -> dict[str, dict[str, Any]]:
        return read_records(self.files(SCORES), self.root, check_score)


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
    if score is None:
        folder.scored()  # a damaged scores file stops a run that only generates too
        return folder.generate(items, partial(_answered, folder, answer), progress)
    items = folder.shard.select(items)
    generated, scored = folder.generated(), folder.scored()
    to_answer = [item for item in items if item.id not in generated]
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
                answered = partial(_answered, folder, answer)
                for item, record in folder.record_answers(to_answer, answered):
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


def _answered(
    folder: BenchFolder, answer: Answerer, items: list[BenchItem]
) -> Iterator[tuple[BenchItem, dict[str, Any]]]:
    """Answer `items`, writing each answer's files; yields each item with its generation
    record."""
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
        yield item, record
