"""ParaBench end to end: local data, resumable sharded runs against a local judge, bad input."""

from __future__ import annotations

import json
import re
import socket
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from paradiff.bench import parabench
from paradiff.bench.items import BenchDataError, item_from_row, load_parabench, read_parquet
from paradiff.bench.llm_judge import png_bytes
from paradiff.cli import main
from paradiff.pipeline import ParallelPipeline
from paradiff.resumable import JsonlWriter, RunError, Shard, read_records
from paradiff.sampling.config import SPEED_PRESETS
from tests.bench_judge_server import JudgeServer
from tests.tiny_pipeline import build_tiny_pipeline

ROWS = [
    ("e0", "edit", "colour", "make the sky blue"),
    ("e1", "edit", "add", "add a small house"),
    ("e2", "edit", "colour", "paint the ground red"),
    ("g0", "generation", "count", "three apples on a table"),
    ("g1", "generation", "count", "two cats under a tree"),
]
JUDGE_CALLS = 3 * 6 + 2 * 5  # edits get all six metrics, generations all but consistency


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A 5-item ParaBench folder in the JSONL format, input images beside it."""
    folder = tmp_path_factory.mktemp("parabench")
    (folder / "images").mkdir()
    lines = []
    for n, (item_id, task, category, instruction) in enumerate(ROWS):
        row = {"id": item_id, "task": task, "category": category, "instruction": instruction}
        if task == "edit":
            Image.new("RGB", (16, 16), (60 * n, 120, 200)).save(folder / "images" / f"{n}.png")
            row["input_image"] = f"images/{n}.png"
        lines.append(json.dumps(row) + "\n")
    (folder / "parabench.jsonl").write_text("".join(lines))
    return folder


def command(model, data, out, url, *extra) -> list[str]:
    return [
        "bench", "parabench", "--model", str(model), "--data", str(data), "--out", str(out),
        "--judge-url", url, "--judge-model", "judge-x", "--judge-backoff", "0.01",
        "--device", "cpu", "--quiet", *extra,
    ]  # fmt: skip


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class CountingRuns:
    """Counts the instructions every ParallelPipeline.run draws (monkeypatched in)."""

    def __init__(self, monkeypatch) -> None:
        self.instructions: list[str] = []
        original = ParallelPipeline.run

        def run(pipe, task, requests, *args, **kwargs):
            self.instructions += [r.instruction for r in requests]
            return original(pipe, task, requests, *args, **kwargs)

        monkeypatch.setattr(ParallelPipeline, "run", run)


# -- data ---------------------------------------------------------------------------------------
def test_load_jsonl_with_filters(data):
    items = load_parabench(data)
    assert [i.id for i in items] == [row[0] for row in ROWS]
    assert items[0].image().size == (16, 16) and items[3].input_image is None
    assert [i.id for i in load_parabench(data, categories=["count", "add"])] == ["e1", "g0", "g1"]
    assert [i.id for i in load_parabench(data / "parabench.jsonl", limit=2)] == ["e0", "e1"]
    with pytest.raises(BenchDataError, match=r"unknown categories \['nope'\]"):
        load_parabench(data, categories=["nope"])


def test_parquet_rows_under_other_column_names(tmp_path):
    png = png_bytes(Image.new("RGB", (8, 8), "red"))
    rows = [
        {"idx": 7, "input_text": "make it red", "input_image_bytes": png, "category": "colour"},
        {"prompt": "a red ball", "image": None, "type": "objects"},
        {"instruction": "recolour", "image": {"bytes": None, "path": "pics/a.png"}},
    ]
    items = [
        item_from_row(row, f"row{n}", tmp_path, "b.parquet", tmp_path) for n, row in enumerate(rows)
    ]
    assert (items[0].id, items[0].task, items[0].category) == ("7", "edit", "colour")
    assert items[0].image().size == (8, 8) and items[0].instruction == "make it red"
    assert (items[1].id, items[1].task, items[1].category) == ("row1", "generation", "objects")
    assert items[2].task == "edit" and items[2].input_image == str(tmp_path / "pics/a.png")
    with pytest.raises(BenchDataError, match="no instruction column.*input_text, prompt"):
        item_from_row({"input_image": "a.png"}, "a", tmp_path, "bench.parquet", tmp_path)
    with pytest.raises(BenchDataError, match="unknown task 'inpaint'"):
        item_from_row({"task": "inpaint", "prompt": "x"}, "a", tmp_path, "bench.parquet", tmp_path)


def test_parquet_goes_through_pyarrow_when_present(tmp_path, monkeypatch):
    rows = [{"id": "a", "prompt": "a red ball"}, {"id": "b", "prompt": "a blue box"}]
    table = types.SimpleNamespace(to_pylist=lambda: rows)
    fake = types.ModuleType("pyarrow.parquet")
    fake.read_table = lambda path: table
    monkeypatch.setitem(sys.modules, "pyarrow", types.ModuleType("pyarrow"))
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", fake)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test-0.parquet").write_bytes(b"PAR1")
    assert [(i.id, i.task) for i in load_parabench(tmp_path)] == [
        ("a", "generation"),
        ("b", "generation"),
    ]
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # not installed: import fails
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(BenchDataError, match="parquet needs pyarrow"):
        read_parquet(tmp_path / "data" / "test-0.parquet", tmp_path / "data")


def test_shards():
    assert Shard.parse("1/3") == Shard(1, 3) and Shard.parse("0/1").suffix == ""
    assert Shard(1, 3).select(list("abcdefg")) == ["b", "e"]
    assert Shard.from_env({"RANK": "2", "WORLD_SIZE": "4"}) == Shard(2, 4)
    assert Shard.from_env({}) == Shard(0, 1)
    for spec in ("3/3", "1", "-1/2", "a/b"):
        with pytest.raises(RunError, match="bad --shard"):
            Shard.parse(spec)


def test_a_torn_last_line_is_skipped_then_cut_off(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text('{"id": "a", "x": 1}\n{"id": "b", "x"')  # killed in the middle of a line
    assert list(read_records([path])) == ["a"]
    JsonlWriter(path).append({"id": "c"})
    assert list(read_records([path])) == ["a", "c"]
    assert path.read_text().count("\n") == 2


def test_a_garbage_last_line_with_its_newline_is_refused_not_skipped(tmp_path):
    """Only a line without its newline is a torn write; a whole line of garbage names itself."""
    path = tmp_path / "scores.jsonl"
    path.write_text('{"id": "a", "x": 1}\ngarbage\n')
    with pytest.raises(RunError, match=f"^{re.escape(str(path))} line 2 is not JSON$"):
        read_records([path])


# -- runs ---------------------------------------------------------------------------------------
def test_end_to_end_and_rerun_does_nothing_again(tiny_model, data, tmp_path, monkeypatch, capsys):
    runs = CountingRuns(monkeypatch)
    out = tmp_path / "run"
    with JudgeServer(script=["429", "malformed"]) as server:
        assert main(command(tiny_model, data, out, server.url, "--batch-size", "2")) == 0
        assert len(server.requests) == JUDGE_CALLS + 2
        assert main(command(tiny_model, data, out, server.url, "--batch-size", "2")) == 0
        assert len(server.requests) == JUDGE_CALLS + 2
    assert sorted(runs.instructions) == sorted(row[3] for row in ROWS)
    table = capsys.readouterr().out
    assert "| overall | 5 |" in table and "70.0 [70.0, 70.0]" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 5 and summary["per_category"]["colour"]["count"] == 2
    assert "image_consistency" not in summary["per_task"]["generation"]["metrics"]
    assert summary["overall"]["metrics"]["image_consistency"]["n"] == 3
    generations = lines(out / "generations.jsonl")
    assert len(generations) == 5 and len(lines(out / "scores.jsonl")) == 5
    for record in generations:
        with Image.open(out / record["image"]) as image:
            assert image.size == (16, 16)
        assert (out / record["image"]).with_suffix(".txt").read_text() == record["text"] + "\n"
    settings = json.loads((out / "run.json").read_text())
    assert settings["sampler"]["text_steps"] == 8
    assert json.loads((out / "judge.json").read_text()) == {"judge_model": "judge-x"}
    with Image.open(out / "chart.png") as chart:
        assert chart.size[0] > 100 and (out / "summary.md").is_file()


def test_killed_run_resumes_without_repeating_work(tiny_model, data, tmp_path, monkeypatch, capsys):
    runs = CountingRuns(monkeypatch)
    answerer = parabench.pipeline_answerer

    def dies_after_two(*args, **kwargs):
        answer = answerer(*args, **kwargs)

        def answer_then_die(items):
            for n, answered in enumerate(answer(items)):
                yield answered
                if n == 1:
                    raise RuntimeError("killed")

        return answer_then_die

    out = tmp_path / "run"
    with JudgeServer() as server:
        monkeypatch.setattr(parabench, "pipeline_answerer", dies_after_two)
        with pytest.raises(RuntimeError, match="killed"):
            main(command(tiny_model, data, out, server.url, "--batch-size", "1"))
        assert len(lines(out / "generations.jsonl")) == 2
        asked_before = len(server.requests)
        assert 0 < asked_before <= 12  # the two answers' scoring in flight was finished
        monkeypatch.setattr(parabench, "pipeline_answerer", answerer)
        assert main(command(tiny_model, data, out, server.url, "--batch-size", "1")) == 0
        bodies = [json.dumps(r["messages"], sort_keys=True) for r in server.requests]
    assert sorted(runs.instructions) == sorted(row[3] for row in ROWS)
    assert len(bodies) == JUDGE_CALLS and len(set(bodies)) == JUDGE_CALLS
    assert [r["id"] for r in lines(out / "generations.jsonl")] == [row[0] for row in ROWS]
    assert sorted(r["id"] for r in lines(out / "scores.jsonl")) == sorted(r[0] for r in ROWS)


def test_shards_share_a_folder_and_the_last_writes_the_report(
    tiny_model, data, tmp_path, monkeypatch, capsys
):
    runs = CountingRuns(monkeypatch)
    out = tmp_path / "run"
    with JudgeServer() as server:
        assert main(command(tiny_model, data, out, server.url, "--shard", "0/2")) == 0
        assert "2 of 5 items wait for other shards" in capsys.readouterr().out
        assert not (out / "summary.json").exists()
        monkeypatch.setenv("RANK", "1")  # as under `accelerate launch`
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert main(command(tiny_model, data, out, server.url)) == 0
        monkeypatch.delenv("RANK")
        monkeypatch.delenv("WORLD_SIZE")
        assert main(command(tiny_model, data, out, server.url)) == 0  # unsharded: all done
        assert len(server.requests) == JUDGE_CALLS
    assert sorted(runs.instructions) == sorted(row[3] for row in ROWS)
    assert [r["id"] for r in lines(out / "generations.shard-0-of-2.jsonl")] == ["e0", "e2", "g1"]
    assert sorted(r["id"] for r in lines(out / "scores.shard-1-of-2.jsonl")) == ["e1", "g0"]
    assert json.loads((out / "summary.json").read_text())["count"] == 5
    (out / "summary.json").unlink()
    assert main(["bench", "report", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["count"] == 5


def test_no_judge_generates_then_a_judged_run_scores_without_loading_a_model(
    tiny_model, data, tmp_path, monkeypatch, capsys
):
    runs = CountingRuns(monkeypatch)
    out = tmp_path / "run"
    generate_only = command(tiny_model, data, out, "unused")
    generate_only = [a for a in generate_only if a not in ("--judge-url", "unused")]
    generate_only.remove("--judge-model")
    generate_only.remove("judge-x")
    assert main([*generate_only, "--no-judge"]) == 0
    assert len(lines(out / "generations.jsonl")) == 5 and not (out / "scores.jsonl").exists()
    assert sorted(runs.instructions) == sorted(row[3] for row in ROWS)

    def no_model(*args, **kwargs):
        raise AssertionError("the scoring half must not load a model")

    monkeypatch.setattr(ParallelPipeline, "from_pretrained", no_model)
    with JudgeServer() as server:
        assert main(command(tiny_model, data, out, server.url)) == 0
        assert len(server.requests) == JUDGE_CALLS
        capsys.readouterr()
        other_judge = command(tiny_model, data, out, server.url)
        other_judge[other_judge.index("judge-x")] = "judge-y"
        assert main(other_judge) == 2
    assert "scored by judge 'judge-x'" in capsys.readouterr().err
    assert len(runs.instructions) == 5 and len(lines(out / "scores.jsonl")) == 5
    assert json.loads((out / "summary.json").read_text())["count"] == 5


def test_a_run_needs_a_judge_or_no_judge(tiny_model, data, tmp_path, capsys):
    argv = command(tiny_model, data, tmp_path / "run", "unused")
    argv.remove("--judge-model")
    argv.remove("judge-x")
    assert main(argv) == 2
    assert "--no-judge" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_a_hub_dataset_id_resolves_through_the_downloader(data, monkeypatch):
    from paradiff import checkpoint

    asked = []

    def fake_download(repo_id, repo_type="model"):
        asked.append((repo_id, repo_type))
        return data

    monkeypatch.setattr(checkpoint, "download_snapshot", fake_download)
    items = load_parabench("tyfeld/ParaBench", limit=2)
    assert asked == [("tyfeld/ParaBench", "dataset")] and [i.id for i in items] == ["e0", "e1"]


def test_other_settings_refuse_to_resume(tiny_model, data, tmp_path, capsys):
    out = tmp_path / "run"
    with JudgeServer() as server:
        assert main(command(tiny_model, data, out, server.url, "--limit", "1")) == 0
        assert main(command(tiny_model, data, out, server.url, "--timesteps", "2")) == 2
    err = capsys.readouterr().err
    assert "holds a run with other sampler" in err and len(err.strip().splitlines()) == 1


def test_settings_given_with_a_preset_run_and_are_recorded(
    tiny_model, data, tmp_path, sampler_runs
):
    out = tmp_path / "run"
    flags = ("--no-judge", "--limit", "2", "--speed", "fast", "--image-recompute", "all")
    assert main(command(tiny_model, data, out, "unused", *flags)) == 0
    recorded = json.loads((out / "run.json").read_text())["sampler"]
    assert sampler_runs and all(c.to_dict() == recorded for c in sampler_runs)  # what ran
    assert (recorded["image_recompute"], recorded["cache_refresh"]) == (
        "all",
        SPEED_PRESETS["fast"]["cache_refresh"],
    )


# -- bad input ----------------------------------------------------------------------------------
def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"data": "missing"}, "no data at"),
        ({"data": "no-instruction"}, "no instruction column (looked for instruction, input_text"),
        ({"extra": ["--shard", "2/2"]}, "bad --shard '2/2'"),
        ({"url": "closed"}, "is unreachable"),
        ({"extra": ["--api-key-env", "PARADIFF_TEST_NO_SUCH_KEY"]}, "PARADIFF_TEST_NO_SUCH_KEY"),
        ({"extra": ["--concurrency", "0"]}, "--concurrency must be at least 1"),
        ({"model": "missing"}, "cannot load model"),
    ],
)
def test_bad_input_is_one_line_with_exit_2(change, message, tiny_model, data, tmp_path, capsys):
    folder = data
    if change.get("data") == "missing":
        folder = tmp_path / "nothing-here"
    elif change.get("data") == "no-instruction":
        folder = tmp_path / "bad"
        folder.mkdir()
        (folder / "bench.jsonl").write_text('{"id": "a", "task": "generation", "text": "x"}\n')
    model = tmp_path / "no-model" if change.get("model") else tiny_model
    with JudgeServer() as server:
        url = closed_port_url() if change.get("url") else server.url
        argv = command(model, folder, tmp_path / "run", url, *change.get("extra", []))
        assert main(argv) == 2
        assert server.requests == []
    err = capsys.readouterr().err
    assert err.startswith("paradiff bench parabench: ") and message in err
    assert len(err.strip().splitlines()) == 1
