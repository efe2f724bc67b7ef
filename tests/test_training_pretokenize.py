"""Pre-tokenization: bad records skipped with their reasons, resume, the CLI's errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from paradiff import cli
from paradiff.training import pretokenize as pretokenize_module
from paradiff.training.data import PretokenizedDataset
from paradiff.training.pretokenize import STATE_FILE, PretokenizeError, pretokenize, read_shard


def good_lines(records: Path, n: int) -> list[str]:
    """The first `n` records with absolute image paths (so they can move to another folder)."""
    lines = []
    for line in records.read_text().splitlines()[:n]:
        record = json.loads(line)
        for key in ("user_image", "answer_image"):
            if record[key]:
                record[key] = str(records.parent / record[key])
        lines.append(json.dumps(record))
    return lines


def shard_contents(folder: Path) -> list[list[tuple]]:
    state = json.loads((folder / STATE_FILE).read_text())
    return [
        [
            (e.id, e.prompt.tolist(), None if e.input_codes is None else e.input_codes.tolist())
            + (e.output_codes.tolist(), e.text.tolist())
            for e in read_shard(folder / name)
        ]
        if name
        else None
        for name in state["shards"]
    ]


def test_bad_records_are_skipped_and_counted_with_their_reason(
    tmp_path, shapes_records, tiny_shapes_model, capsys
):
    good = good_lines(shapes_records, 6)
    missing_field = json.loads(good[0])
    del missing_field["answer_text"]
    missing_image = {**json.loads(good[1]), "id": "gone", "user_image": str(tmp_path / "no.png")}
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(64)))
    corrupt_image = {**json.loads(good[2]), "id": "broken", "answer_image": str(corrupt)}
    bad = ["{not json", "[1, 2]", json.dumps(missing_field), json.dumps(missing_image)]
    lines = bad + good[:3] + ["", json.dumps(corrupt_image)] + good[3:]
    records = tmp_path / "records.jsonl"
    records.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "\xd0"}\n')
    out = tmp_path / "tok"
    argv = ["pretokenize", "--records", str(records), "--tokenizer", str(tiny_shapes_model)]
    assert cli.main([*argv, "--out", str(out), "--shard-size", "4", "--quiet"]) == 0

    state = json.loads((out / STATE_FILE).read_text())
    assert state["examples"] == len(good)
    assert state["skipped"] == {
        "not valid JSON": 1,
        "not a JSON object": 1,
        "not UTF-8 text": 1,
        "missing field answer_text": 1,
        "user_image missing": 1,
        "answer_image unreadable (ImageInputError)": 1,
    }
    assert state["shards"][0] is None  # the first four records are all bad
    assert {"gone", "broken"} <= set(state["skipped_ids"])
    ids = [e.id for name in state["shards"] if name for e in read_shard(out / name)]
    assert ids == [json.loads(line)["id"] for line in good]
    assert len(PretokenizedDataset(out, text_length=48)) == len(good)
    printed = capsys.readouterr().out
    assert f"{len(good)} examples in 3 shards" in printed
    assert "skipped 6 records: " in printed and "1 not valid JSON" in printed


@pytest.fixture
def records_with_bad_lines(tmp_path, shapes_records) -> Path:
    """20 good records with an invalid line in the first and the last shard of 8."""
    lines = good_lines(shapes_records, 20)
    lines.insert(2, "{")
    lines.insert(19, "{")
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_interrupted_run_resumes_after_its_finished_shards(
    tmp_path, records_with_bad_lines, tiny_shapes_model, monkeypatch
):
    straight = pretokenize(records_with_bad_lines, tiny_shapes_model, tmp_path / "a", 8, False)
    assert straight["skipped"] == {"not valid JSON": 2}

    written = []
    write_shard = pretokenize_module.write_shard

    def crash_after_the_first_shard(examples, path):
        if written:
            raise KeyboardInterrupt
        written.append(path.name)
        write_shard(examples, path)

    out = tmp_path / "b"
    monkeypatch.setattr(pretokenize_module, "write_shard", crash_after_the_first_shard)
    with pytest.raises(KeyboardInterrupt):
        pretokenize(records_with_bad_lines, tiny_shapes_model, out, 8, False)
    assert json.loads((out / STATE_FILE).read_text())["shards"] == written == ["shard-00000.npz"]
    first_shard = (out / written[0]).stat().st_mtime_ns

    def record(examples, path):
        written.append(path.name)
        write_shard(examples, path)

    monkeypatch.setattr(pretokenize_module, "write_shard", record)
    resumed = pretokenize(records_with_bad_lines, tiny_shapes_model, out, 8, False)
    assert written == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    assert (out / written[0]).stat().st_mtime_ns == first_shard
    assert resumed == {**straight, "records": resumed["records"]}
    assert shard_contents(out) == shard_contents(tmp_path / "a")

    # a finished folder: running again writes nothing
    assert pretokenize(records_with_bad_lines, tiny_shapes_model, out, 8, False) == resumed
    assert len(written) == 3


def test_records_appended_after_a_partial_last_shard_are_all_encoded(
    tmp_path, shapes_records, tiny_shapes_model
):
    lines = good_lines(shapes_records, 20)
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(lines[:13]) + "\n")  # shards of 8 and 5
    pretokenize(records, tiny_shapes_model, tmp_path / "tok", 8, False)
    records.write_text("\n".join(lines) + "\n")
    state = pretokenize(records, tiny_shapes_model, tmp_path / "tok", 8, False)
    ids = [e.id for name in state["shards"] for e in read_shard(tmp_path / "tok" / name)]
    assert ids == [json.loads(line)["id"] for line in lines]
    assert state["examples"] == state["records_done"] == len(lines)


def test_another_shard_size_on_resume_is_an_error(tmp_path, shapes_records, tiny_shapes_model):
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(good_lines(shapes_records, 3)) + "\n")
    pretokenize(records, tiny_shapes_model, tmp_path / "tok", 2, False)
    with pytest.raises(PretokenizeError, match="shard size"):
        pretokenize(records, tiny_shapes_model, tmp_path / "tok", 3, False)


def test_cli_reports_a_missing_records_file_in_one_line(tmp_path, tiny_shapes_model, capsys):
    missing = tmp_path / "none.jsonl"
    argv = ["pretokenize", "--records", str(missing), "--tokenizer", str(tiny_shapes_model)]
    assert cli.main([*argv, "--out", str(tmp_path / "tok"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("paradiff pretokenize: ") and str(missing) in err
    assert not (tmp_path / "tok").exists()


def test_shards_round_trip_generation_and_edit_examples(pretokenized):
    examples = [e for name in sorted(pretokenized.glob("shard-*.npz")) for e in read_shard(name)]
    assert len(examples) == 40
    tasks = {e.task for e in examples}
    assert tasks == {"edit", "generate"}
    for e in examples:
        assert e.output_codes.ndim == 2 and e.prompt.dtype == np.int32
        assert e.input_codes is None or e.input_codes.shape == e.output_codes.shape
