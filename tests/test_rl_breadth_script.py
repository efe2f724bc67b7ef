"""scripts/rl_breadth.sh end to end with everything tiny (SMOKE=1): the prompt pool, the
fail-fast run, one seed trained and its log and latest model packed into OUT; then
scripts/read_rl_breadth.sh on that OUT: bench runs, a table per split and the curves."""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from paradiff.pipeline import ParallelPipeline
from tests.conftest import run_smoke_script


def test_the_breadth_script_packs_each_seeds_curve_and_model(tmp_path):
    out = tmp_path / "out"
    done = run_smoke_script("rl_breadth.sh", str(out), "10", "3")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "seed 3: checkpoint-000003, 3 steps" in done.stdout
    lines = [json.loads(line) for line in (out / "seed3.log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "loss" in line] == [1, 2, 3]
    assert {line["step"] for line in lines if "eval" in line} == {0, 2, 3}  # the held-out curve
    with tarfile.open(out / "seed3.tar.gz") as packed:
        names = packed.getnames()
        assert "reward_stats.json" in names
        assert not any(name.endswith("training_state.pt") for name in names)
        packed.extractall(tmp_path / "unpacked", filter="data")
    ParallelPipeline.from_pretrained(str(tmp_path / "unpacked" / "checkpoint-000003"))

    work = tmp_path / "read"
    read = run_smoke_script("read_rl_breadth.sh", str(out), str(work))
    assert read.returncode == 0, read.stdout[-2000:] + read.stderr[-2000:]
    for split in ("development", "confirmation"):
        assert f"## {split} split" in read.stdout
        for run in ("sft", "seed3"):
            assert (work / split / run / "summary.json").is_file()
    assert read.stdout.count("| breadth | overall | 1 | 6 |") == 2
    assert (work / "reward.png").is_file() and (work / "held_out.png").is_file()


@pytest.mark.parametrize(
    "args, problem",
    [
        ((), "usage"),
        (("{out}", "0"), "MINUTES must be a positive number"),
        (("{out}", "7", "1,2"), "SEEDS must be whole numbers"),
        (("{taken}",), "is not an empty folder"),
    ],
)
def test_bad_arguments_stop_with_one_line_and_touch_nothing(tmp_path, args, problem):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    paths = {"out": tmp_path / "out", "taken": taken}
    done = run_smoke_script("rl_breadth.sh", *(arg.format(**paths) for arg in args))
    assert done.returncode == 2
    assert problem in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not paths["out"].exists() and os.listdir(taken) == ["mine.txt"]


@pytest.mark.parametrize(
    "pack, problem",
    [
        (None, "holds no seedN.tar.gz"),
        (b"not a tar", "cannot be unpacked"),
        ("no checkpoint", "holds no checkpoint-NNNNNN folder"),
    ],
)
def test_reading_a_folder_without_usable_packs_stops_with_one_line(tmp_path, pack, problem):
    out = tmp_path / "out"
    out.mkdir()
    if pack == "no checkpoint":
        (tmp_path / "notes.txt").write_text("no model here")
        with tarfile.open(out / "seed0.tar.gz", "w:gz") as packed:
            packed.add(tmp_path / "notes.txt", arcname="notes.txt")
    elif pack is not None:
        (out / "seed0.tar.gz").write_bytes(pack)
    if pack is not None:
        (out / "seed0.log.jsonl").write_text("{}\n")
    done = run_smoke_script("read_rl_breadth.sh", str(out), str(tmp_path / "work"))
    assert done.returncode == 2 and problem in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "work").exists()
