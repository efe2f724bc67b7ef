"""Batch inference (`paradiff edit|generate --batch`): one folder per id, batched sampling,
resume, shards, and the same answers as single requests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from paradiff.cli import main
from paradiff.pipeline import ParallelPipeline
from tests.tiny_pipeline import build_tiny_pipeline

# each request folder is published like a single run's --out: its files and their manifest
OUTPUT_FILES = {"image.png", "reasoning.txt", "meta.json", "trajectory.gif", ".paradiff.json"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny"), max_sequence_length=256)


@pytest.fixture
def requests(tmp_path):
    """An edit requests file: five requests, images beside it, one with its own seed and steps."""
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    rows = []
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
            tmp_path / "in" / f"{i}.png"
        )
        rows.append({"id": f"r{i}", "instruction": f"make it colour {i}", "image": f"in/{i}.png"})
    rows[3].update(seed=77, settings={"image_steps": 2})
    rows[4]["id"] = "a/b c"  # an id that is no file name
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def count_runs(monkeypatch) -> list[int]:
    """Batch sizes of every pipeline run."""
    sizes: list[int] = []
    original = ParallelPipeline.run

    def counting(pipe, task, requests, *args, **kwargs):
        sizes.append(len(requests))
        return original(pipe, task, requests, *args, **kwargs)

    monkeypatch.setattr(ParallelPipeline, "run", counting)
    return sizes


def test_edit_batch_writes_one_folder_per_id_batched_and_resumes(
    model_dir, requests, tmp_path, capsys, monkeypatch
):
    sizes = count_runs(monkeypatch)
    out = tmp_path / "out"
    argv = ("edit", "--batch", requests, "--out", out, "--model", model_dir, "--quiet")
    code, _, err = run(capsys, *argv, "--batch-size", 2)
    assert code == 0, err
    # r0, r1 | r2, a/b c | r3 alone (its own settings): three runs, never more than 2 rows
    assert sorted(sizes) == [1, 2, 2]
    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["a/b c", "r0", "r1", "r2", "r3"]
    for record in records:
        folder = (out / record["image"]).parent
        assert folder.parent == out and {p.name for p in folder.iterdir()} == OUTPUT_FILES
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["instruction"] == record["instruction"] and meta["task"] == "edit"
    mine = json.loads((out / "r3" / "meta.json").read_text())["settings"]
    assert (mine["seed"], mine["image_steps"]) == (77, 2)
    sizes.clear()
    assert run(capsys, *argv)[0] == 0  # a re-run finds every id finished
    assert sizes == []
    (out / "generations.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records if r["id"] != "r1")
    )
    assert run(capsys, *argv)[0] == 0  # only the unrecorded id is drawn again
    assert sizes == [1]


def test_a_batch_answer_equals_the_single_request_with_its_seed(
    model_dir, requests, tmp_path, capsys
):
    out = tmp_path / "out"
    assert (
        run(capsys, "edit", "--batch", requests, "--out", out, "--model", model_dir, "--quiet")[0]
        == 0
    )
    meta = json.loads((out / "r0" / "meta.json").read_text())
    single = tmp_path / "single"
    argv = ("edit", "--image", requests.parent / "in" / "0.png", "make it colour 0")
    code, _, _ = run(
        capsys,
        *argv,
        "--out",
        single,
        "--model",
        model_dir,
        "--seed",
        meta["settings"]["seed"],
        "--quiet",
    )
    assert code == 0
    assert (single / "reasoning.txt").read_text() == (out / "r0" / "reasoning.txt").read_text()
    a, b = Image.open(single / "image.png"), Image.open(out / "r0" / "image.png")
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_shards_split_the_requests_and_together_finish_them(
    model_dir, requests, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    argv = ("edit", "--batch", requests, "--out", out, "--model", model_dir, "--quiet")
    assert run(capsys, *argv, "--shard", "0/2")[0] == 0
    first = (out / "generations.shard-0-of-2.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in first] == ["r0", "r2", "a/b c"]  # items 0, 2, 4
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert run(capsys, *argv)[0] == 0  # accelerate's RANK of WORLD_SIZE
    second = (out / "generations.shard-1-of-2.jsonl").read_text().splitlines()
    ids = {json.loads(line)["id"] for line in first + second}
    assert ids == {"r0", "r1", "r2", "r3", "a/b c"} and len(first) + len(second) == 5


def test_generate_batch_takes_prompts(model_dir, tmp_path, capsys):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"id": 1, "prompt": "a red star"}\n{"id": 2, "prompt": "two moons"}\n')
    out = tmp_path / "out"
    assert run(capsys, "generate", "--batch", path, "--out", out, "--model", model_dir)[0] == 0
    assert {p.name for p in (out / "1").iterdir()} == OUTPUT_FILES
    assert json.loads((out / "2" / "meta.json").read_text())["instruction"] == "two moons"


@pytest.mark.parametrize(
    "lines, expected",
    [
        (['{"id": "x", "instruction": "a"}'], "needs an image path"),
        (['{"id": "x", "instruction": "a", "image": "absent.png"}'], "no image at"),
        (['{"instruction": "a", "image": "in/0.png"}'], "has no id"),
        (['{"id": "x", "image": "in/0.png"}'], "has no instruction"),
        (["not json"], "line 1 is not JSON"),
        (['{"id": "x", "instruction": "a", "image": "in/0.png"}'] * 2, "occurs twice"),
        (['{"id": "x", "instruction": "a", "image": "in/0.png", "seed": "s"}'], "seed"),
        (
            ['{"id": "x", "instruction": "a", "image": "in/0.png", "settings": {"steps": 3}}'],
            "steps",
        ),
        ([], "holds no requests"),
    ],
)
def test_bad_requests_are_one_line_exit_2_before_any_sampling(
    lines, expected, model_dir, requests, tmp_path, capsys
):
    bad = requests.parent / "bad.jsonl"
    bad.write_text("".join(line + "\n" for line in lines))
    out = tmp_path / "out"
    code, _, err = run(capsys, "edit", "--batch", bad, "--out", out, "--model", model_dir)
    assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err
    assert not out.exists()


def test_a_folder_of_other_files_is_refused_and_kept(model_dir, requests, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = run(capsys, "edit", "--batch", requests, "--out", out, "--model", model_dir)
    assert code == 2 and "other files" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_batch_and_a_single_request_do_not_mix(model_dir, requests, tmp_path, capsys):
    argv = ("edit", "--batch", requests, "--out", tmp_path / "o", "--model", model_dir)
    code, _, err = run(capsys, *argv, "make it red")
    assert code == 2 and "--batch" in err
    code, _, err = run(capsys, "edit", "make it red", "--out", tmp_path / "o")
    assert code == 2 and "--image" in err
