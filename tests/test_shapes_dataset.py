"""Shapes world: make-dataset records and files, curriculum options, ShapeBench disjointness."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import pytest
import torch

from paradiff.shapes import dataset
from paradiff.shapes.commands import register
from paradiff.shapes.dataset import (
    DEVELOPMENT_PER_CATEGORY,
    DatasetError,
    confirmation_samples,
    development_samples,
    make_dataset,
    parse_weights,
    read_records,
    shapebench_keys,
    shapebench_samples,
    training_samples,
)
from paradiff.shapes.image_tokenizer import ShapesImageTokenizer, shapes_tokenizer
from paradiff.shapes.tasks import EDIT_CATEGORIES, GENERATION_CATEGORIES

RECORD_KEYS = {
    "id",
    "system_prompt",
    "user_prompt",
    "user_image",
    "answer_text",
    "answer_image",
    "task",
    "category",
    "scene_in",
    "scene_out",
    "constraints",
}


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="paradiff")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["shapes", *argv])


def test_make_dataset_writes_records_images_and_tokenizers(tmp_path, capsys):
    out = tmp_path / "data"
    args = cli("make-dataset", "--n", "45", "--seed", "3", "--out", str(out), "--quiet")
    assert args.func(args) == 0
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 45
    tokenizer = shapes_tokenizer()
    tasks = Counter()
    for line, sample in zip(lines, read_records(out), strict=True):
        record = json.loads(line)
        assert RECORD_KEYS <= set(record)
        tasks[record["task"]] += 1
        if record["task"] == "edit":
            codes = tokenizer.image_to_codes(out / record["user_image"], 4, 4)
            assert tokenizer.codes_to_scene(codes)[0] == sample.scene_in
        else:
            assert record["user_image"] is None and record["constraints"]
        codes = tokenizer.image_to_codes(out / record["answer_image"], 4, 4)
        assert tokenizer.codes_to_scene(codes)[0] == sample.scene_out
    assert tasks["edit"] > tasks["generation"] > 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["n"] == 45 and sum(meta["counts"].values()) == 45
    assert (out / "text_tokenizer" / "tokenizer.json").is_file()
    loaded = ShapesImageTokenizer.from_dir(out / "vqvae")
    assert torch.equal(loaded.codebook, tokenizer.codebook)


def test_make_dataset_is_deterministic_and_refuses_a_full_folder(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        args = cli("make-dataset", "--n", "12", "--out", str(folder), "--quiet")
        assert args.func(args) == 0
    assert (first / "records.jsonl").read_bytes() == (second / "records.jsonl").read_bytes()
    capsys.readouterr()
    args = cli("make-dataset", "--n", "5", "--out", str(first), "--quiet")
    assert args.func(args) == 2
    error = capsys.readouterr().err
    assert "holds a dataset" in error and "--overwrite" in error and error.count("\n") == 1
    args = cli("make-dataset", "--n", "5", "--out", str(first), "--quiet", "--overwrite")
    assert args.func(args) == 0
    assert len((first / "records.jsonl").read_text().splitlines()) == 5
    assert len(list((first / "images").iterdir())) <= 10
    (second / ".paradiff-dataset").unlink()  # a dataset made before the marker is one too
    args = cli("make-dataset", "--n", "3", "--out", str(second), "--quiet", "--overwrite")
    assert args.func(args) == 0 and (second / ".paradiff-dataset").is_file()


def test_overwrite_never_deletes_a_folder_of_someone_elses_files(tmp_path, capsys):
    """--overwrite replaces a dataset paradiff wrote, not a folder that merely holds files
    with a dataset's names (a user's records.jsonl, images/)."""
    user = tmp_path / "user"
    (user / "images").mkdir(parents=True)
    (user / "images" / "cat.jpg").write_bytes(b"cat")
    (user / "records.jsonl").write_text("mine\n")
    args = cli("make-dataset", "--n", "2", "--out", str(user), "--quiet", "--overwrite")
    assert args.func(args) == 2
    error = capsys.readouterr().err
    assert "not a paradiff dataset" in error and error.count("\n") == 1
    assert (user / "images" / "cat.jpg").read_bytes() == b"cat"
    assert (user / "records.jsonl").read_text() == "mine\n"


@pytest.mark.parametrize(
    "option", [("--cell-px", "0"), ("--cell-px", "3"), ("--cell-px", "100000"), ("--grid", "0")]
)
def test_bad_sizes_stop_before_anything_is_written(tmp_path, capsys, option):
    out = tmp_path / "data"
    args = cli("make-dataset", "--n", "2", "--out", str(out), "--quiet", *option)
    assert args.func(args) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not out.exists()


def test_a_failure_part_way_leaves_nothing_written(tmp_path, monkeypatch):
    def broken(*args):
        raise OSError("disk full")

    out, user = tmp_path / "new", tmp_path / "user"
    user.mkdir()
    monkeypatch.setattr("paradiff.shapes.dataset.write_images", broken)
    with pytest.raises(OSError, match="disk full"):
        make_dataset(out, 3, progress=False)
    assert not out.exists()
    (user / ".paradiff-dataset").write_text("{}")
    (user / "notes.txt").write_text("kept")
    with pytest.raises(OSError, match="disk full"):
        make_dataset(user, 3, progress=False, overwrite=True)
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]


def test_curriculum_options(tmp_path):
    samples = list(training_samples(60, weights=parse_weights("swap:3,add"), difficulty=1))
    counts = Counter(s.category for s in samples)
    assert set(counts) == {"swap", "add"} and counts["swap"] > counts["add"]
    assert {s.difficulty for s in samples} == {1}
    assert set(parse_weights(task="generation")) == set(GENERATION_CATEGORIES)
    assert set(parse_weights()) == set(EDIT_CATEGORIES + GENERATION_CATEGORIES)
    with pytest.raises(DatasetError, match="unknown category"):
        parse_weights("juggle:2")
    with pytest.raises(DatasetError, match="not a generation category"):
        parse_weights("add", task="generation")
    with pytest.raises(DatasetError, match="zero"):
        parse_weights("add:0")
    args = cli("make-dataset", "--n", "3", "--out", str(tmp_path / "x"), "--categories", "nope")
    assert args.func(args) == 2


def test_shapebench_split():
    samples = shapebench_samples()
    assert len(samples) == 300 and len({s.id for s in samples}) == 300
    tasks = Counter(s.task for s in samples)
    assert tasks == {"edit": 200, "generation": 100}
    assert set(Counter(s.category for s in samples).values()) == {20}
    assert len(shapebench_keys()) == 300
    assert [s.to_json() for s in samples[:5]] == [
        s.to_json() for s in shapebench_samples.__wrapped__()[:5]
    ]


def test_shapebench_never_occurs_in_training_data():
    bench = shapebench_samples()
    bench_seeds = {s.seed for s in bench}
    train = list(training_samples(3000, seed=0))
    assert not {s.key() for s in train} & shapebench_keys()
    assert not {s.seed for s in train} & bench_seeds


def test_training_skips_a_prompt_that_is_in_shapebench(monkeypatch):
    """If a training draw reproduces a ShapeBench prompt, it is drawn again."""
    bench_sample = shapebench_samples()[0]
    real_make_sample = dataset.make_sample
    calls = []

    def first_call_hits_the_bench(category, seed, difficulty, grid, sample_id):
        calls.append(seed)
        if len(calls) == 1:
            return bench_sample
        return real_make_sample(category, seed, difficulty, grid, sample_id)

    monkeypatch.setattr(dataset, "make_sample", first_call_hits_the_bench)
    (sample,) = training_samples(1, seed=9)
    assert len(calls) == 2 and sample.key() != bench_sample.key()


def test_the_development_split_has_every_category_and_no_shapebench_prompt(monkeypatch):
    samples = development_samples(3)
    assert Counter(s.category for s in samples) == {
        c: 3 for c in (*EDIT_CATEGORIES, *GENERATION_CATEGORIES)
    }
    keys = [s.key() for s in samples]
    assert len(set(keys)) == len(keys) and not set(keys) & shapebench_keys()
    assert [s.to_json() for s in development_samples(3)] == [s.to_json() for s in samples]
    # a draw that reproduces a ShapeBench prompt is drawn again
    bench_sample = shapebench_samples()[0]
    real_make_sample = dataset.make_sample
    calls = []

    def first_call_hits_the_bench(category, seed, difficulty, grid, sample_id):
        calls.append(seed)
        return (
            bench_sample
            if len(calls) == 1
            else real_make_sample(category, seed, difficulty, grid, sample_id)
        )

    monkeypatch.setattr(dataset, "make_sample", first_call_hits_the_bench)
    first = development_samples(1)[0]
    assert len(calls) == 16 and first.key() != bench_sample.key()
    assert calls[1] != calls[0]  # the redraw comes from another seed


def test_the_confirmation_split_avoids_shapebench_and_the_development_split():
    samples = confirmation_samples(2)
    assert Counter(s.category for s in samples) == {
        c: 2 for c in (*EDIT_CATEGORIES, *GENERATION_CATEGORIES)
    }
    keys = {s.key() for s in samples}
    assert len(keys) == len(samples)
    development = {s.key() for s in development_samples(DEVELOPMENT_PER_CATEGORY)}
    assert not keys & shapebench_keys() and not keys & development
    assert [s.to_json() for s in confirmation_samples(2)] == [s.to_json() for s in samples]
