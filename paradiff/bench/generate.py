"""Batched generation of benchmark items with a ParallelPipeline.

Items are grouped into batches of one task, one input size and one set of item settings (one
`pipe.run` each). Every item gets a fixed seed — its own, else `(base + crc32(id)) mod 2^31` —
so its output depends on neither the order, the batch nor the shard it was drawn in.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from paradiff.bench.items import BenchItem
from paradiff.pipeline import ParallelPipeline, Request, SampleResult

PIPELINE_TASKS = {"edit": "edit", "generation": "generate"}  # bench task -> pipeline task


def item_seed(item_id: str, base: int | None) -> int:
    """The fixed seed of one item."""
    return ((base or 0) + zlib.crc32(item_id.encode("utf-8"))) % 2**31


def sampler_settings(pipe: ParallelPipeline, overrides: dict[str, Any]) -> dict[str, Any]:
    """The sampler settings a run uses: the checkpoint's, with `overrides` applied."""
    return pipe.sampler_defaults.replace(**overrides).to_dict()


def batches(
    items: Iterable[BenchItem], batch_size: int, fixed_size: bool
) -> Iterator[list[BenchItem]]:
    """Groups of at most `batch_size` items of one task, one set of item settings and (editing,
    unless every output has one `fixed_size`) one input image size, in the order their last
    member arrives."""
    pending: dict[tuple, list[BenchItem]] = {}
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
    items: Iterable[BenchItem],
    batch_size: int = 8,
    overrides: dict[str, Any] | None = None,
    size: tuple[int, int] | None = None,
) -> Iterator[tuple[BenchItem, SampleResult]]:
    """Each item with its answer, batch by batch; `size` (width, height) fixes every output's."""
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


def pipeline_answerer(
    pipe: ParallelPipeline,
    batch_size: int = 8,
    overrides: dict[str, Any] | None = None,
    size: tuple[int, int] | None = None,
) -> Callable[[list[BenchItem]], Iterator[tuple[BenchItem, str, Any, dict[str, Any]]]]:
    """A run answerer (see `paradiff.bench.runner`): the pipeline's reasoning and image of each
    item, with the seed it was drawn with."""

    def answer(items: list[BenchItem]):
        for item, result in generate_answers(pipe, items, batch_size, overrides, size):
            yield item, result.text, result.image, {"seed": result.settings["seed"]}

    return answer
