"""Comparability: ShapeBench, the development split, the default training draws and the text
tokenizer's ids stay byte-identical when the world grows (new kinds are opt-in by name).

The digests were computed on the code before the opt-in kinds and the wild split existed
(commit b7b8a1c); a change here means old numbers and new numbers measure different things.
"""

from __future__ import annotations

import hashlib
import json

from paradiff.shapes.dataset import (
    DEVELOPMENT_PER_CATEGORY,
    development_samples,
    shapebench_samples,
    training_samples,
)
from paradiff.shapes.tokenizer import build_text_tokenizer


def fingerprint(samples) -> str:
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(json.dumps(sample.to_json(), sort_keys=True).encode() + b"\n")
    return digest.hexdigest()


def test_shapebench_is_unchanged():
    assert fingerprint(shapebench_samples()) == (
        "7d26577dbc4ef77fc0d8759b24fb1555fdb1c5fcff0717800b759d57484c1879"
    )


def test_the_development_split_is_unchanged():
    assert fingerprint(development_samples(DEVELOPMENT_PER_CATEGORY)) == (
        "52f6b0da399f6074c05e9703acad72108f7071f38a2c10322bcb5acbb419b8bf"
    )


def test_default_training_draws_are_unchanged():
    assert fingerprint(training_samples(300, seed=0)) == (
        "8e112bf3debb5d882f9db9bb04078133ffe35680d09eb8316a5d9050ffd2e64a"
    )
    assert fingerprint(training_samples(200, seed=7, varied_phrasing=False)) == (
        "75b1d17768a47e9573b768a91ef0c362f401297dbb241dd676013c7fd0c9514d"
    )


def test_the_text_tokenizer_keeps_its_ids():
    # the shipped model's embedding rows follow these ids; new texts must use words it knows
    vocab = sorted(build_text_tokenizer().get_vocab().items(), key=lambda item: item[1])
    assert hashlib.sha256(json.dumps(vocab).encode()).hexdigest() == (
        "4e0b72d42f4bc76c920b87f0c7895baf2f32890e2899765b883aa97bce40e51f"
    )
