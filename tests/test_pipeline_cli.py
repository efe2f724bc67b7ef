"""The pipeline and the `paradiff generate` / `paradiff edit` commands end to end, on a tiny
random checkpoint with a tiny VQModel and BPE tokenizer built here; every bad input answered by
one line on stderr, exit status 2, and nothing written."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paradiff import __version__
from paradiff.cli import main
from paradiff.command_support import OUTPUT_MANIFEST
from paradiff.pipeline import ParallelPipeline
from paradiff.sampling.config import SAMPLER_FLAGS, SPEED_PRESETS
from paradiff.sampling.settings import SAMPLER_SETTINGS_NAME, read_sampler_settings
from tests.tiny_pipeline import SMALL_SAMPLER, build_tiny_pipeline

OUTPUT_FILES = {"image.png", "reasoning.txt", "meta.json", "trajectory.gif"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny"), max_sequence_length=256)


@pytest.fixture(scope="module")
def pipe(model_dir):
    return ParallelPipeline.from_pretrained(model_dir, device="cpu")


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A 16x16 RGB picture (the tiny pipeline's image size)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("img") / "in.png"
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


# -- the pipeline ---------------------------------------------------------------------------


def test_generate_returns_text_image_and_a_full_trajectory(pipe):
    result = pipe.generate("a red square", seed=5)
    steps = result.timings["steps"]
    assert isinstance(result.text, str) and result.image.size == (16, 16)
    assert result.trajectory.shape[0] == steps + 1
    mask = pipe.space.mask_id
    assert (result.trajectory[0] == mask).any() and not (result.trajectory[-1] == mask).any()
    assert result.settings["seed"] == 5 and result.settings["mode"] == "parallel"
    again = pipe.generate("a red square", seed=5)
    assert torch.equal(again.trajectory, result.trajectory) and again.text == result.text


def test_a_paint_mask_is_the_input_images_size_and_follows_its_resizing():
    from paradiff.pipeline import PipelineInputError, fit_paint_mask

    paint = np.zeros((100, 200), dtype=bool)  # (H, W) of a 200x100 input
    paint[:, 100:] = True  # its right half; 64x64 covers x 50..150 of it (128x64, centre crop)
    mask = fit_paint_mask(paint, (200, 100), (64, 64))
    assert mask.shape == (64, 64) and not mask[:, :30].any() and mask[:, 34:].all()
    assert fit_paint_mask(paint, (200, 100), (100, 200)).sum() == paint.sum()  # no resizing
    with pytest.raises(
        PipelineInputError, match="paint mask is 64x64 but the input image is 200x100"
    ):
        fit_paint_mask(np.ones((64, 64), dtype=bool), (200, 100), (64, 64))


def test_edit_paint_mask_keeps_the_unpainted_codes(pipe, photo):
    from paradiff.image_tokenizers.base import encode_image

    paint = np.zeros((16, 16), dtype=bool)
    paint[:, 8:] = True  # repaint the right half only
    result = pipe.edit(photo, "make it blue", paint_mask=paint, seed=1)
    input_codes, _ = encode_image(pipe.image_tokenizer, photo)  # (8, 8)
    space = pipe.space

    final = result.trajectory[-1]
    at = final >= space.image_offset  # the output image's positions, all revealed by the end
    first = (result.trajectory[0][at] - space.image_offset).view(8, 8)
    last = (final[at] - space.image_offset).view(8, 8)
    assert torch.equal(first[:, :4], input_codes[:, :4])  # fixed before the first step
    assert torch.equal(last[:, :4], input_codes[:, :4])
    assert (first[:, 4:] == space.mask_id - space.image_offset).all()  # the rest is repainted


def test_save_writes_the_four_files_and_one_gif_frame_per_state(pipe, tmp_path):
    result = pipe.generate("two circles", seed=2)
    result.save(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == OUTPUT_FILES
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["paradiff_version"] == __version__ and meta["settings"]["seed"] == 2
    assert set(meta["timings"]) >= {"sample_s", "steps"}
    assert (tmp_path / "reasoning.txt").read_text().strip() == result.text
    gif = Image.open(tmp_path / "trajectory.gif")
    assert gif.n_frames == result.timings["steps"] + 1
    assert "▒" in result.partial_texts()[0] and "▒" not in result.partial_texts()[-1]


def test_a_checkpoint_without_an_image_tokenizer_is_refused(model_dir, tmp_path):
    broken = tmp_path / "no_vq"
    shutil.copytree(model_dir, broken)
    for item in broken.iterdir():
        if item.is_dir():
            shutil.rmtree(item)
    with pytest.raises((OSError, ValueError), match=r"(?i)image tokenizer|vq|magvit"):
        ParallelPipeline.from_pretrained(broken, device="cpu")


# -- the command line -----------------------------------------------------------------------


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_command_writes_outputs_with_checkpoint_defaults(model_dir, tmp_path, capsys):
    out = tmp_path / "gen"
    code, stdout, _ = run_cli(capsys, "generate", "a blue star", "--model", model_dir, "--out", out)
    assert code == 0 and "reasoning:" in stdout
    assert {p.name for p in out.iterdir()} == OUTPUT_FILES | {OUTPUT_MANIFEST}
    settings = json.loads((out / "meta.json").read_text())["settings"]
    for name in ("text_steps", "image_steps", "text_gen_length", "cfg_image", "seed"):
        assert settings[name] == getattr(SMALL_SAMPLER, name)


def test_edit_command_flags_override_the_defaults(model_dir, photo, tmp_path, capsys):
    out = tmp_path / "edit"
    code, _, _ = run_cli(
        capsys,
        *("edit", "--model", model_dir, "--image", photo, "make it green", "--out", out),
        *("--timesteps", 3, "--text-steps", 4, "--cfg-img", 0, "--seed", 9, "--quiet"),
        *("--mode", "sequential", "--text-gen-length", 12, "--text-block-length", 6),
    )
    assert code == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["task"] == "edit" and meta["instruction"] == "make it green"
    settings = meta["settings"]
    assert (settings["image_steps"], settings["text_steps"], settings["seed"]) == (3, 4, 9)
    assert (settings["cfg_image"], settings["mode"], settings["text_gen_length"]) == (
        0.0,
        "sequential",
        12,
    )
    assert Image.open(out / "trajectory.gif").n_frames == meta["timings"]["steps"] + 1


# Under `--speed fast`, the fast settings that ran: the preset's, or the ones given explicitly
# (a cache turned off takes the preset's cache strategies with it).
FAST = {k: v for k, v in SPEED_PRESETS["fast"].items() if k != "step_fraction"}
EXPLICIT_UNDER_FAST = [
    ({}, FAST),
    ({"image_recompute": "all"}, {**FAST, "image_recompute": "all"}),
    ({"answer_refresh": 3}, {**FAST, "answer_refresh": 3}),
    (
        {"cache_refresh": 0},
        {"cache_refresh": 0, "image_recompute": "all", "uncond_recompute": "all"},
    ),
]


@pytest.mark.parametrize("explicit, ran", EXPLICIT_UNDER_FAST)
def test_edit_command_runs_and_records_the_settings_given_with_a_preset(
    explicit, ran, model_dir, photo, tmp_path, capsys, sampler_runs
):
    out = tmp_path / "edit"
    flags = [(f"--{k.replace('_', '-')}", v) for k, v in explicit.items()]
    code, _, _ = run_cli(
        capsys,
        *("edit", "--model", model_dir, "--image", photo, "make it green", "--out", out),
        *("--speed", "fast", "--quiet", *(a for flag in flags for a in flag)),
    )
    assert code == 0 and len(sampler_runs) == 1
    sampled = sampler_runs[0].to_dict()
    assert {k: sampled[k] for k in ran} == ran
    settings = json.loads((out / "meta.json").read_text())["settings"]
    assert {k: settings[k] for k in sampled} == sampled  # what ran, the preset applied
    assert settings["speed"] == "exact"


@pytest.mark.parametrize("explicit, ran", EXPLICIT_UNDER_FAST)
def test_the_python_api_runs_the_settings_given_with_a_preset(
    explicit, ran, pipe, photo, sampler_runs
):
    result = pipe.edit(photo, "make it green", speed="fast", **explicit)
    configs = [
        sampler_runs[0],
        pipe.sampler_config(speed="fast", **explicit),
        pipe.sampler_defaults.replace(speed="fast", **explicit).resolved(),
    ]
    for config in configs:
        assert {k: getattr(config, k) for k in ran} == ran
    assert {k: result.settings[k] for k in ran} == ran


def test_a_preset_with_its_cache_turned_off_edits_as_exact_mode(pipe, photo):
    exact = pipe.edit(photo, "make it green", seed=2)
    uncached = pipe.edit(photo, "make it green", seed=2, speed="fast", cache_refresh=0)
    assert torch.equal(uncached.trajectory, exact.trajectory) and uncached.text == exact.text


def test_a_checkpoint_saved_before_fast_settings_could_be_unset_leaves_them_to_the_preset(
    tmp_path,
):
    saved = {**SMALL_SAMPLER.to_dict(), "cache_refresh": 0, "guidance_reuse": 0, "compile": False}
    (tmp_path / SAMPLER_SETTINGS_NAME).write_text(json.dumps({"sampler": saved}))
    defaults = read_sampler_settings(tmp_path)["sampler_defaults"]
    assert defaults.replace(speed="fast").resolved().cache_refresh == FAST["cache_refresh"]
    assert defaults.resolved().cache_refresh == 0  # exact mode: their exact values


def test_help_explains_every_sampler_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["edit", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (*SAMPLER_FLAGS, "--height", "--width", "--image", "--paint-mask", "--out"):
        assert flag in text


def _bad_inputs(model_dir, photo, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a picture")
    empty_model = tmp_path / "empty_model"
    empty_model.mkdir()
    long_prompt = " ".join(["word"] * 400)
    gen = ("generate", "a cat", "--model", model_dir)
    edit = ("edit", "--model", model_dir, "--image", photo, "recolour it")
    return {
        "missing image": (
            ("edit", "--model", model_dir, "--image", tmp_path / "nope.png", "x"),
            "nope.png",
        ),
        "corrupt image": (("edit", "--model", model_dir, "--image", corrupt, "x"), "corrupt"),
        "unreadable model": (("generate", "a cat", "--model", empty_model), "cannot load model"),
        "missing model": (("generate", "a cat", "--model", tmp_path / "absent"), "cannot load"),
        "prompt too long": (("generate", long_prompt, "--model", model_dir), "maximum 256"),
        "zero text steps": ((*gen, "--text-steps", 0), "text_steps must be at least 1"),
        "zero image steps": ((*edit, "--timesteps", 0), "image_steps must be at least 1"),
        "block not dividing": ((*gen, "--text-block-length", 3), "block"),
        "bad mode": ((*gen, "--mode", "diagonal"), "mode"),
        "size off the grid": ((*gen, "--height", 15, "--width", 16), "multiple of 2"),
        "empty prompt": (("generate", "  ", "--model", model_dir), "empty"),
        "negative cache refresh": ((*gen, "--cache-refresh", -1), "cache_refresh must be"),
        "negative answer refresh": (
            (*gen, "--cache-refresh", 4, "--answer-refresh", -1),
            "answer_refresh must be at least 1 (0 turns it off)",
        ),
        "answer refresh without a cache": (
            (*edit, "--answer-refresh", 2),
            "answer_refresh 2 needs cache_refresh",
        ),
        "threshold above one": ((*edit, "--text-threshold", 1.5), "text_threshold must be in"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing image",
        "corrupt image",
        "unreadable model",
        "missing model",
        "prompt too long",
        "zero text steps",
        "zero image steps",
        "block not dividing",
        "bad mode",
        "size off the grid",
        "empty prompt",
        "negative cache refresh",
        "negative answer refresh",
        "answer refresh without a cache",
        "threshold above one",
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, model_dir, photo, tmp_path, capsys):
    argv, expected = _bad_inputs(model_dir, photo, tmp_path)[case]
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, *argv, "--out", out, "--quiet")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("paradiff ")
    assert expected.lower() in err.lower()
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".paradiff-")]


def test_an_unwritable_output_folder_is_refused_before_sampling(
    model_dir, tmp_path, capsys, monkeypatch
):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access  # permission bits do not bind root: the check is asked directly
    monkeypatch.setattr(os, "access", lambda p, m: p != locked and real_access(p, m))
    sampled = []
    monkeypatch.setattr(ParallelPipeline, "run", lambda *a, **k: sampled.append(1))
    code, _, err = run_cli(capsys, "generate", "a cat", "--model", model_dir, "--out", locked / "o")
    assert code == 2 and "not writable" in err and not sampled and not list(locked.iterdir())


def test_an_output_path_that_is_a_file_is_refused(model_dir, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    code, _, err = run_cli(capsys, "generate", "a cat", "--model", model_dir, "--out", target)
    assert code == 2 and "not a directory" in err and target.read_text() == "keep me"


def test_flag_to_setting_table_in_help_and_readme(capsys):
    from paradiff.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["edit", "--help"])
    help_text = capsys.readouterr().out
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for flag, (field, _, _) in SAMPLER_FLAGS.items():
        assert re.search(rf"^\s+{flag}\s+{field}$", help_text, re.M), flag
        assert f"`{flag}` | `{field}`" in readme, flag
