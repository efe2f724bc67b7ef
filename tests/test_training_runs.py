"""`paradiff train sft` end to end on a tiny model: a smoke run, exact resume after SIGKILL, and
2 processes (gloo on the CPU, through accelerate) against 1 with the same global batch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from paradiff import cli
from paradiff.pipeline import ParallelPipeline
from paradiff.training.recipe import RecipeError
from paradiff.training.runs import RUN_MARKER, RunFolder, lr_factor
from tests.conftest import PROJECT_ROOT

TINY_RECIPE = PROJECT_ROOT / "configs" / "tiny-sft.yaml"
WEIGHTS = "model.safetensors"


@pytest.fixture
def one_thread():
    """Runs in this process set torch's thread count (`train.threads`); put it back after."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def sft_argv(model: Path, data: Path, out: Path, *overrides: str) -> list[str]:
    paths = [f"model.init={model}", f"data.pretokenized={data}", f"output.dir={out}"]
    return ["train", "sft", "--config", str(TINY_RECIPE), *paths, *overrides, "--quiet"]


def subprocess_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT), **extra}


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def assert_same_weights(a: Path, b: Path, atol: float = 0.0) -> None:
    first, second = load_file(a / WEIGHTS), load_file(b / WEIGHTS)
    assert first.keys() == second.keys()
    for name in first:
        if atol:
            diff = (first[name] - second[name]).abs().max().item()
            assert diff <= atol, f"{name} differs by {diff}"
        else:
            assert torch.equal(first[name], second[name]), name


def test_smoke_run_writes_a_loadable_model_and_logs(
    tmp_path, tiny_shapes_model, pretokenized, capsys
):
    out = tmp_path / "run"
    assert cli.main(sft_argv(tiny_shapes_model, pretokenized, out)) == 0
    assert f"trained model written to {out / 'final'}" in capsys.readouterr().out

    trained = ParallelPipeline.from_pretrained(str(out / "final"))
    initial = ParallelPipeline.from_pretrained(str(tiny_shapes_model))
    assert type(trained.image_tokenizer) is type(initial.image_tokenizer)
    assert trained.sampler_defaults == initial.sampler_defaults
    before, after = initial.model.state_dict(), trained.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)

    lines = log_lines(out)
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5]
    for line in lines:
        assert line["text_ce"] > 0 and line["image_ce"] > 0 and line["tokens_per_s"] > 0
        assert line["lr"] == pytest.approx(1e-3 * lr_factor(line["step"] - 1, 2, 5, 0.1))
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [
        "checkpoint-000004",
        "checkpoint-000005",
    ]  # keep 2
    assert (out / "latest").read_text().strip() == "checkpoint-000005"

    (out / "final" / "README.md").write_text("my notes on this model")  # the user's file
    assert cli.main([*sft_argv(tiny_shapes_model, pretokenized, out), "--overwrite"]) == 2
    assert "README.md is no file of the run's checkpoints" in capsys.readouterr().err
    assert (out / "final" / "README.md").read_text() == "my notes on this model"
    (out / "final" / "README.md").unlink()
    assert cli.main([*sft_argv(tiny_shapes_model, pretokenized, out), "--overwrite"]) == 0


def test_a_bad_recipe_key_exits_2_with_one_line(tmp_path, tiny_shapes_model, pretokenized, capsys):
    argv = sft_argv(tiny_shapes_model, pretokenized, tmp_path / "run", "train.lrr=1")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == "paradiff train sft: unknown recipe key 'train.lrr'\n"


def test_resume_after_sigkill_gives_the_weights_of_a_straight_run(
    tmp_path, tiny_shapes_model, pretokenized, one_thread
):
    steps = 40  # enough that the run is still going when its first checkpoint appears
    settings = (f"train.steps={steps}", "output.save_every=2", "train.threads=1")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert cli.main(sft_argv(tiny_shapes_model, pretokenized, straight, *settings)) == 0

    argv = sft_argv(tiny_shapes_model, pretokenized, killed, *settings)
    process = subprocess.Popen(
        [sys.executable, "-m", "paradiff.cli", *argv],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while process.poll() is None and not (killed / "latest").is_file():
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    assert process.poll() is None, process.stderr.read().decode()  # still training
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    process.stderr.close()
    assert not (killed / "final").exists()
    resumed_from = int((killed / "latest").read_text().strip().split("-")[1])
    assert resumed_from < steps
    logged = len(log_lines(killed))

    assert cli.main([*argv, "--resume"]) == 0
    logged_after = [line["step"] for line in log_lines(killed)[logged:]]
    assert logged_after == list(range(resumed_from + 1, steps + 1))
    assert_same_weights(straight / "final", killed / "final")
    last = f"checkpoint-{steps:06d}"
    assert_same_weights(straight / last, killed / last)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_on_cpu(command: list[str]) -> str:
    """Run `command` on the CPU (gloo even where there are GPUs); returns its stdout."""
    env = subprocess_env(CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def accelerate_launch(processes: int) -> list[str]:
    """`--multi_gpu` picks accelerate's torchrun launcher (`--cpu` starts one process whatever
    `--num_processes` says); without a visible GPU the recipe joins the processes with gloo."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    command += ["--num_processes", str(processes), "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    return command + ["--main_process_port", str(free_port())]


def test_two_processes_train_like_one_with_the_same_global_batch(
    tmp_path, tiny_shapes_model, pretokenized
):
    settings = ("train.steps=3", "train.batch_size=8", "train.micro_batch_size=4")
    one, two = tmp_path / "one", tmp_path / "two"
    single_argv = sft_argv(tiny_shapes_model, pretokenized, one, *settings)
    single = run_on_cpu([sys.executable, "-m", "paradiff.cli", *single_argv])
    double_argv = sft_argv(tiny_shapes_model, pretokenized, two, *settings)
    double = run_on_cpu([*accelerate_launch(2), "-m", "paradiff.cli", *double_argv])
    assert single.count("trained model written") == 1
    assert double.count("trained model written") == 2  # both processes ran the recipe
    assert [line["step"] for line in log_lines(two)] == [1, 2, 3]  # one group: rank 0 logs
    assert_same_weights(one / "final", two / "final", atol=1e-5)
    assert [line["loss"] for line in log_lines(one)] == pytest.approx(
        [line["loss"] for line in log_lines(two)], rel=1e-5
    )


def test_a_second_process_accepts_a_folder_the_first_is_claiming_now(tmp_path):
    """The main process writes the marker through a temporary file; a process of the same run
    that looks at that moment sees a folder being claimed, not a folder of someone's files."""
    root = tmp_path / "run"
    root.mkdir()
    (root / f".{RUN_MARKER}.123.456.tmp").write_text("{}")
    assert RunFolder(root).start(resume=False, overwrite=False, main=False) is None
    (root / "notes.txt").write_text("mine")
    with pytest.raises(RecipeError, match="not a paradiff run"):
        RunFolder(root).start(resume=False, overwrite=False, main=False)
