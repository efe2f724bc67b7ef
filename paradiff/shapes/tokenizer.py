"""The shapes world's text tokenizer: a word-level `tokenizers.Tokenizer` trained on its corpus.

Pre-tokenization splits words and punctuation runs (`\\w+|[^\\w\\s]+`), each a single id, so the
vocabulary is a few hundred ids. The family's special tokens come first, at ids 0.. in
`SPECIAL_TOKENS` order. The corpus is deterministic: the world's word lists and templates plus
`CORPUS_SAMPLES_PER_CATEGORY` samples of every category drawn from a seed namespace of its own, so
the same tokenizer (same ids) is built on every run. Decoding joins words with spaces and removes
the space before punctuation, so `decode(encode(text)) == text` for the world's texts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from paradiff.shapes.language import (
    COLOUR_THINGS,
    CORNERS,
    DIRECTIONS,
    NUMBER_WORDS,
    PLURALS,
    SHAPE_FEATURES,
    TEMPLATES,
)
from paradiff.shapes.phrasing import vocabulary_lines
from paradiff.shapes.sample import SYSTEM_PROMPTS
from paradiff.shapes.scene import COLOUR_NAMES, SHAPES
from paradiff.shapes.tasks import CATEGORIES, derive_seed, make_sample

SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>",
    "<mask>",
    "<system>",
    "</system>",
    "<user>",
    "</user>",
    "<image>",
    "</image>",
    "<answer>",
    "</answer>",
    "<uncondition>",
    "<br>",
    "<unk>",
)
PAD, MASK, UNK = "<pad>", "<mask>", "<unk>"
CORPUS_SAMPLES_PER_CATEGORY = 300
TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"


def word_sheet() -> list[str]:
    """Every word list of the world and every template, so rare words still get an id."""
    lines = [" ".join(SHAPES), " ".join(PLURALS.values()), " ".join(COLOUR_NAMES)]
    lines += [" ".join(NUMBER_WORDS), " ".join(str(d) for d in range(10))]
    lines += [" ".join(things) for things in COLOUR_THINGS.values()]
    lines += [" ".join(pair) for pair in SHAPE_FEATURES.values()]
    lines += list(CORNERS) + list(DIRECTIONS)
    for _, texts in TEMPLATES.values():
        lines += [re.sub(r"\{[a-z]+\d?\}", " ", text) for text in texts]
    return lines + list(SYSTEM_PROMPTS.values()) + vocabulary_lines()


def corpus() -> Iterator[str]:
    """The training corpus: the word sheet, then instructions and reasoning of seeded samples."""
    yield from word_sheet()
    for categories in CATEGORIES.values():
        for category in categories:
            for index in range(CORPUS_SAMPLES_PER_CATEGORY):
                seed = derive_seed("vocabulary", category, index)
                sample = make_sample(category, seed, difficulty=1 + index % 3)
                yield sample.instruction
                yield sample.instruction.lower()  # people type lower case (phrasing.py)
                yield sample.reasoning


def build_text_tokenizer() -> Tokenizer:
    """Train the world's word-level tokenizer (deterministic ids)."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    trainer = trainers.WordLevelTrainer(
        vocab_size=100_000,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer)
    return tokenizer


def save_text_tokenizer(folder: str | os.PathLike, tokenizer: Tokenizer | None = None) -> Path:
    """Write `tokenizer.json` (and a special-tokens map naming the pad token) into `folder`."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (tokenizer or build_text_tokenizer()).save(str(path / TOKENIZER_FILE))
    names = {"pad_token": PAD, "mask_token": MASK, "unk_token": UNK}
    (path / SPECIAL_TOKENS_MAP_FILE).write_text(
        json.dumps(names, indent=1) + "\n", encoding="utf-8"
    )
    return path
