"""`output.log_with: tensorboard`: the JSONL log's numbers also reach TensorBoard event files."""

from __future__ import annotations

import json
import struct

import pytest

from paradiff import cli
from tests.test_training_runs import log_lines, sft_argv

event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")


def scalars(folder) -> dict[str, dict[int, float]]:
    """tag -> step -> value of every event file below `folder` (TFRecord framing: length,
    its CRC, the Event bytes, their CRC)."""
    found: dict[str, dict[int, float]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found.setdefault(value.tag, {})[event.step] = value.simple_value
    return found


def test_sft_logs_to_tensorboard_what_it_logs_to_jsonl(
    tmp_path, tiny_shapes_model, pretokenized, capsys
):
    out = tmp_path / "run"
    argv = sft_argv(tiny_shapes_model, pretokenized, out, "output.log_with=tensorboard")
    assert cli.main(argv) == 0
    board = scalars(out / "tensorboard" / "sft")
    for line in log_lines(out):
        for key in ("loss", "text_ce", "image_ce", "lr"):
            assert board[key][line["step"]] == pytest.approx(line[key], rel=1e-6)
    assert json.loads((out / "log.jsonl").read_text().splitlines()[0])["step"] == 1


def test_an_unknown_tracker_is_refused(tmp_path, tiny_shapes_model, pretokenized, capsys):
    argv = sft_argv(tiny_shapes_model, pretokenized, tmp_path / "run", "output.log_with=wandb")
    assert cli.main(argv) == 2
    assert "output.log_with must be null or one of ('tensorboard',)" in capsys.readouterr().err
