"""Benchmark items answered by a ParallelPipeline: batched, each with its fixed seed
(`paradiff.batch.generate_answers`, the batch inference of `paradiff generate --batch`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from paradiff.batch import generate_answers
from paradiff.bench.items import BenchItem
from paradiff.pipeline import ParallelPipeline


def sampler_settings(pipe: ParallelPipeline, overrides: dict[str, Any]) -> dict[str, Any]:
    """The sampler settings a run uses: the checkpoint's, with `overrides` applied."""
    return pipe.sampler_config(**overrides).to_dict()


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
