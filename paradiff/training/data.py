"""The training dataset over pre-tokenized shards: length-bucketed batches and sequence building."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from paradiff.layout import Layout, Sequence1D
from paradiff.training.pretokenize import STATE_FILE, Example, read_shard


class DatasetError(ValueError):
    """A pre-tokenized folder that cannot be trained on."""


class PretokenizedDataset:
    """Every example of a pre-tokenized folder whose reasoning fits `text_length` positions
    (one is kept for the end marker when the template has one)."""

    def __init__(self, folder: str | os.PathLike, text_length: int) -> None:
        folder = Path(folder)
        state_file = folder / STATE_FILE
        if not state_file.is_file():
            raise DatasetError(f"{folder} is not a pre-tokenized folder (no {STATE_FILE})")
        shards = [name for name in json.loads(state_file.read_text())["shards"] if name]
        examples = [e for name in shards for e in read_shard(folder / name)]
        self.examples = [e for e in examples if len(e.text) < text_length]
        self.too_long = len(examples) - len(self.examples)
        if not self.examples:
            raise DatasetError(f"{folder} holds no example whose text fits {text_length} tokens")

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]

    def length(self, index: int) -> int:
        """Tokens of the conditional sequence without its answer (what varies between rows)."""
        e = self.examples[index]
        return len(e.prompt) + (0 if e.input_codes is None else e.input_codes.size)


def epoch_batches(
    dataset: PretokenizedDataset, batch_size: int, seed: int, epoch: int, bucket: int = 64
) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch): shuffle, group by output grid,
    sort windows of `bucket` batches by length (little padding), shuffle the batches.

    Incomplete batches at the end of a grid group are dropped so every batch has `batch_size`."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(dataset))
    by_grid: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index in order:
        by_grid[dataset[int(index)].output_codes.shape].append(int(index))
    batches = []
    for grid in sorted(by_grid):
        indices = by_grid[grid]
        window = batch_size * bucket
        for start in range(0, len(indices), window):
            chunk = sorted(indices[start : start + window], key=dataset.length)
            batches += [
                chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)
            ]
    return [batches[i] for i in rng.permutation(len(batches))]


def training_sequence(
    layout: Layout,
    example: Example,
    text_length: int,
    answer_end_ids: list[int],
    unconditional_prompt: list[int] | None = None,
) -> Sequence1D:
    """The clean sequence of one example: reasoning then `text_fill_id` up to `text_length`.

    With `unconditional_prompt` the condition is dropped (CFG training): that prompt replaces
    the instruction and the input image is removed."""
    fill = text_length - len(example.text)
    text = (
        torch.as_tensor(example.text, dtype=torch.long).tolist()
        + [layout.space.text_fill_id] * fill
    )
    dropped = unconditional_prompt is not None
    return layout.build(
        unconditional_prompt if dropped else example.prompt.tolist(),
        tuple(example.output_codes.shape),
        text_length,
        input_codes=None
        if dropped or example.input_codes is None
        else torch.as_tensor(example.input_codes),
        answer_end_ids=answer_end_ids,
        output_codes=torch.as_tensor(example.output_codes),
        text_ids=text,
    )
