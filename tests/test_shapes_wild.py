"""ShapeBench-wild: the opt-in kinds and every category in held-out phrasings, fixed and seeded,
judged exactly (the oracle scores 100 and is exact); training never uses a held-out phrasing."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from paradiff.bench.items import METRICS
from paradiff.cli import main
from paradiff.shapes.bench import run_shapebench, select_samples
from paradiff.shapes.dataset import (
    WILD_PER_CATEGORY,
    WILD_PER_KIND,
    parse_weights,
    read_records,
    shapebench_keys,
    training_samples,
)
from paradiff.shapes.tasks import CATEGORIES, OPT_IN_CATEGORIES, derive_seed
from paradiff.shapes.tokenizer import UNK, build_text_tokenizer
from paradiff.shapes.wide_phrasing import (
    HELD_OUT,
    TRAINING,
    held_out_rephrase,
    training_rephrase,
    uses_held_out,
)
from tests.test_shapes_fingerprints import fingerprint

KINDS = OPT_IN_CATEGORIES["edit"]
EVERY = ",".join([c for names in CATEGORIES.values() for c in names] + list(KINDS))


@pytest.fixture(scope="module")
def wild():
    return select_samples(split="wild")


def test_the_wild_split_is_fixed_sized_and_disjoint_from_shapebench(wild):
    counts = Counter(s.category for s in wild)
    assert all(counts[kind] == WILD_PER_KIND for kind in KINDS)
    assert all(counts[c] == WILD_PER_CATEGORY for names in CATEGORIES.values() for c in names)
    assert len(wild) == 5 * 20 + 15 * 10 == 250
    assert len({s.id for s in wild}) == len({s.key() for s in wild}) == 250
    assert not {s.key() for s in wild} & shapebench_keys()
    # fixed and seeded: a change to the world that moves the wild split shows here
    assert fingerprint(wild) == "217a836431d84d23affee81b7e8bf2d306b8ea336e98435ce524dabb605cdc39"


def test_every_wild_instruction_uses_a_held_out_phrasing_the_tokenizer_knows(wild):
    tokenizer = build_text_tokenizer()
    unknown = tokenizer.token_to_id(UNK)
    used = Counter()
    for sample in wild:
        names = uses_held_out(sample.instruction)
        assert names, sample.instruction
        used.update(names)
        assert unknown not in tokenizer.encode(sample.instruction).ids, sample.instruction
    assert set(used) == {p.name for p in HELD_OUT}  # every held-out phrasing is measured


def test_training_never_uses_a_held_out_phrasing():
    weights = parse_weights(EVERY)
    for wide in (False, True):
        for sample in training_samples(800, seed=4, weights=weights, wide_phrasing=wide):
            assert not uses_held_out(sample.instruction), sample.instruction
    # and the detectors see what they are meant to: every rewrite and wrapper
    for sample in training_samples(300, seed=5, weights=weights, varied_phrasing=False):
        for index in range(3):
            rng = random.Random(derive_seed("test", sample.id, index))
            assert uses_held_out(held_out_rephrase(sample.instruction, rng))
            assert not uses_held_out(training_rephrase(sample.instruction, rng))


def test_the_two_phrasing_sets_are_disjoint_and_training_uses_its_own():
    assert not {p.name for p in TRAINING} & {p.name for p in HELD_OUT}
    weights = parse_weights(EVERY)
    seen = Counter()
    for sample in training_samples(600, seed=6, weights=weights, wide_phrasing=True):
        seen.update(p.name for p in TRAINING if p.used_in(sample.instruction))
    assert set(seen) == {p.name for p in TRAINING}


def test_the_oracle_scores_100_and_is_exact_on_the_wild_split(wild):
    report = run_shapebench(lambda s: (s.reasoning, s.scene_out), samples=wild, mode="oracle")
    assert report["count"] == 250
    means = {m: v["mean"] for m, v in report["overall"]["metrics"].items()}
    assert means == dict.fromkeys(METRICS, 100.0)
    assert report["exact"]["overall"] == 100.0 and report["exact"]["n"] == 200
    assert set(report["exact"]["per_category"]) >= set(KINDS)
    # copying the input is exact only where nothing should change: the absent kind
    copied = run_shapebench(lambda s: ("", s.base_scene), samples=wild[:100], mode="copy")
    assert copied["exact"]["per_category"]["absent"] == 100.0
    assert all(copied["exact"]["per_category"][k] == 0 for k in KINDS if k != "absent")


def test_the_cli_scores_the_wild_split(capsys):
    assert main(["bench", "shapebench", "--oracle", "--split", "wild", "--limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "exact" in out and "absent" in out


def test_make_dataset_draws_the_opt_in_kinds_by_name(tmp_path, capsys):
    folder = tmp_path / "data"
    argv = ["shapes", "make-dataset", "--n", "25", "--seed", "2", "--out", str(folder)]
    kinds = ["--categories", "absent,ambiguous,several,neighbour,cell", "--task", "edit"]
    assert main([*argv, *kinds, "--phrasing", "wide", "--quiet"]) == 0
    samples = read_records(folder)
    assert {s.category for s in samples} <= set(KINDS) and len(samples) == 25
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["phrasing"] == "wide" and set(meta["weights"]) == set(KINDS)
