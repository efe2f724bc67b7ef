"""Hostile input, as a new user (or a hostile file) would give it: every bad input through the CLI
ends in exit status 2, one line on stderr, no traceback, nothing written and nothing of the
user's changed. Below the table, one test per finding of the hostile review: outputs never
replace the user's files, training run folders keep their checkpoints, stale scratch folders go,
benchmark data stays inside its folder, typed marker strings stay text, sizes are bounded before
anything is allocated, and a silent judge gives up in time."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import shutil
import stat
import struct
import time
import tracemalloc
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from paradiff.bench.items import BenchDataError, load_parabench
from paradiff.bench.llm_judge import JudgeClient, JudgeError, MalformedAnswer, parse_score
from paradiff.cli import main
from paradiff.command_support import OUTPUT_MANIFEST, CommandError, publish
from paradiff.files import SAVE_TOKEN, SCRATCH_MARKER
from paradiff.layout import Layout
from paradiff.pipeline import ParallelPipeline, PipelineInputError
from paradiff.shapes.dataset import make_dataset
from paradiff.training.recipe import RecipeError
from paradiff.training.runs import LATEST_FILE, LOG_FILE, RUN_MARKER, RunFolder
from tests.bench_judge_server import JudgeServer
from tests.tiny_pipeline import build_tiny_pipeline


# -- the world of one hostile session -------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_shapes_model) -> dict[str, Path]:
    """Models, data and the user's own files, all under one folder (snapshotted by each case)."""
    root = tmp_path_factory.mktemp("hostile")
    model = build_tiny_pipeline(root / "tiny", max_sequence_length=256)
    photo = root / "photo.png"
    Image.new("RGB", (16, 16), (10, 200, 30)).save(photo)
    Image.new("1", (5000, 5000)).save(root / "huge.png")  # 25 M pixels, a small file
    (root / "not-an-image.png").write_text("hello")
    Image.new("L", (8, 8)).save(root / "small-mask.png")
    mine = root / "mine"  # the user's folder: a paradiff file name, a folder of that name
    (mine / "trajectory.gif").mkdir(parents=True)
    (mine / "reasoning.txt").write_text("my own notes\n")
    (mine / "trajectory.gif" / "keep.txt").write_text("mine too\n")
    (root / "letter.txt").write_text("dear paradiff\n")
    broken = {}
    for name, damage in DAMAGED_MODELS.items():
        broken[name] = shutil.copytree(model, root / f"model-{name}")
        damage(broken[name])
    shapes = shutil.copytree(tiny_shapes_model, root / "shapes")
    garbage = shutil.copytree(tiny_shapes_model, root / "shapes-garbage-codebook")
    for file in (garbage / "vqvae").glob("*.safetensors"):
        file.write_bytes(b"\x00garbage, not safetensors")
    listed = shutil.copytree(tiny_shapes_model, root / "shapes-listed-tokenizer")
    (listed / "vqvae" / "tokenizer_config.json").write_text("[]")
    data = bench_data(root / "bench")
    make_dataset(root / "dataset", 2, seed=0, progress=False)  # a dataset of the user's
    (root / "outside.png").write_bytes(photo.read_bytes())
    runs = root / "runs"
    run = runs / "sft"
    shutil.copytree(tiny_shapes_model, run / "checkpoint-000002")
    (run / "checkpoint-000002" / "training_state.pt").write_bytes(b"PK\x03\x04 truncated")
    (run / LATEST_FILE).write_text("checkpoint-000002\n")
    recipe = root / "sft.yaml"
    recipe.write_text(
        f"model: {{init: {shapes}}}\ndata: {{pretokenized: {root / 'pre'}}}\n"
        f"output: {{dir: {run}}}\ntrain: {{steps: 2, batch_size: 2}}\n"
    )
    hostile_files(root, photo)
    bench_runs(root)
    batch_files(root / "batch", photo)
    thesis = root / "thesis"  # the user's own folder named as a training output.dir
    (thesis / "final").mkdir(parents=True)
    (thesis / "log.jsonl").write_text('{"step": 5, "note": "my own log"}\n')
    (thesis / "final" / "thesis-final.pdf").write_bytes(b"%PDF-1.4 mine")
    (root / "thesis.yaml").write_text(recipe.read_text().replace(f"dir: {run}", f"dir: {thesis}"))
    return {
        "root": root, "model": model, "photo": photo, "mine": mine, "shapes": shapes,
        "garbage": garbage, "listed": listed, "data": data, "run": run, "recipe": recipe, **broken,
    }  # fmt: skip


def _nan_weight(model: Path) -> None:
    weights = load_file(model / "model.safetensors")
    name = next(k for k in weights if k.endswith("ff_out.weight"))
    weights[name][0, 0] = math.nan
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})


def _small_vocab(model: Path) -> None:
    config = json.loads((model / "config.json").read_text())
    config["paradiff_token_space"]["image_offset"] = config["embedding_size"] - 4
    (model / "config.json").write_text(json.dumps(config))


def _garbage_weights(model: Path) -> None:
    (model / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")


DAMAGED_MODELS = {"nan": _nan_weight, "vocab": _small_vocab, "garbage": _garbage_weights}


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (its pixel data is a stub: never decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"x") + chunk(b"IEND", b"")


def ico_embedding(png: bytes) -> bytes:
    """An ICO file whose directory says 16x16 but whose one image is `png`."""
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def hostile_files(root: Path, photo: Path) -> None:
    """FIFOs, folders, image bombs by their headers and images wider than the limit."""
    os.mkfifo(root / "fifo.png")
    (root / "a-folder.png").mkdir()
    (root / "bomb.ico").write_bytes(ico_embedding(png_header(13000, 13000)))
    (root / "12000.png").write_bytes(png_header(12000, 12000))
    (root / "100000.png").write_bytes(png_header(100000, 100000))
    (root / "8192x2048.png").write_bytes(png_header(8192, 2048))
    (root / "16384x1024.png").write_bytes(png_header(16384, 1024))
    data = photo.read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) - 30])


def bench_runs(root: Path) -> None:
    """Benchmark run folders with damaged or hostile records (each its own --out)."""
    runs = root / "bench-runs"
    record = {"id": "g", "task": "generation", "category": "generation", "text": "t"}
    lines = {
        "missing-id": [{"task": "generation", "text": "t", "image": "outputs/g.png"}],
        "absolute-image": [{**record, "image": str(root / "letter.txt")}],
        "linked-image": [{**record, "image": "outputs/g.png"}],
        "scores-x": [{"x": 1}],
        "scores-list": [[1, 2]],
        "scores-bool": [{**record, "text_quality": True}],
    }
    for name, rows in lines.items():
        folder = runs / name
        (folder / "outputs").mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"benchmark": "parabench", "model": "m"}))
        kind = "scores" if name.startswith("scores") else "generations"
        (folder / f"{kind}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (runs / "linked-image" / "outputs" / "g.png").symlink_to(root / "letter.txt")


BATCH_LINES = {
    "steps-string": {"settings": {"image_steps": "4"}},
    "steps-float": {"settings": {"image_steps": 1.5}},
    "steps-bool": {"settings": {"image_steps": True}},
    "cfg-string": {"settings": {"cfg_image": "2"}},
    "compile-string": {"settings": {"compile": "yes"}},
    "best-of-huge": {"settings": {"best_of": 100000, "image_temperature": 1.0}},
    "cfg-huge": {"settings": {"cfg_text": 1e308}},
    "settings-list": {"settings": [1]},
    "seed-string": {"seed": "abc"},
    "seed-huge": {"seed": 2**80},
    "seed-bool": {"seed": True},
    "id-bool": {"id": True},
    "id-list": {"id": ["a"]},
    "prompt-number": {"prompt": 7},
    "id-run-file": {"id": "run.json"},
    "id-generations-file": {"id": "generations.jsonl"},
    "id-very-long": {"id": "x" * 300},
}
BATCH_IMAGES = {"image-huge": "100000.png", "image-fifo": "fifo.png", "image-wide": "8192x2048.png"}


def batch_files(folder: Path, photo: Path) -> None:
    """A requests file per hostile row (generation ones, and edit ones naming images)."""
    folder.mkdir()
    for name, change in BATCH_LINES.items():
        row = {"id": "r", "prompt": "a cat", **change}
        (folder / f"{name}.jsonl").write_text(json.dumps(row) + "\n")
    for name, image in BATCH_IMAGES.items():
        row = {"id": "r", "instruction": "x", "image": f"../{image}"}
        (folder / f"{name}.jsonl").write_text(json.dumps(row) + "\n")
    corrupt = {"id": "corrupt-one", "instruction": "x", "image": "../truncated.png"}
    (folder / "image-corrupt.jsonl").write_text(json.dumps(corrupt) + "\n")
    (folder / "good.jsonl").write_text(json.dumps({"id": "r", "prompt": "a cat"}) + "\n")
    second_bad = [{"id": "a", "prompt": "a cat"}, {"id": "b", "prompt": "a dog"}]
    second_bad[1]["settings"] = {"text_steps": 4000}  # valid alone, more than the text to reveal
    (folder / "second-bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in second_bad))
    os.mkfifo(folder / "fifo.jsonl")


def bench_data(folder: Path) -> Path:
    """A ParaBench folder per hostile row: each file is one --data."""
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (16, 16)).save(folder / "images" / "ok.png")
    rows = {
        "absolute": {"id": "a", "task": "edit", "instruction": "x", "input_image": "/etc/hostname"},
        "dotdot": {"id": "b", "task": "edit", "instruction": "x", "input_image": "../outside.png"},
        "symlink": {"id": "c", "task": "edit", "instruction": "x", "input_image": "images/ln.png"},
        "null": {"id": "d", "task": "generation", "instruction": None},
        "missing-image": {"id": "e", "task": "edit", "instruction": "x", "input_image": "no.png"},
        "task-list": {"id": "f", "task": ["edit"], "instruction": "x"},
        "fifo-image": {"id": "h", "task": "edit", "instruction": "x", "input_image": "fifo.png"},
        "huge-image": {"id": "i", "task": "edit", "instruction": "x", "input_image": "big.png"},
        "id-bool": {"id": True, "task": "generation", "instruction": "x"},
    }
    os.mkfifo(folder / "fifo.png")
    (folder / "big.png").write_bytes(png_header(100000, 100000))
    (folder / "images" / "ln.png").symlink_to(folder.parent / "outside.png")
    for name, row in rows.items():
        (folder / f"{name}.jsonl").write_text(json.dumps(row) + "\n")
    (folder / "empty.jsonl").write_text("\n\n")
    (folder / "good.jsonl").write_text(json.dumps({"id": "g", "instruction": "a cat"}) + "\n")
    return folder


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with its content digest (folders and links marked)."""
    state = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            state[key] = "link:" + os.readlink(path)
        elif stat.S_ISFIFO(path.lstat().st_mode):
            state[key] = "fifo"
        elif path.is_dir():
            state[key] = "dir"
        else:
            state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


OUTPUT_FILES = ("image.png", "reasoning.txt", "meta.json", "trajectory.gif")


# -- the table ----------------------------------------------------------------------------------
def _cases() -> dict[str, tuple[tuple[str, ...], str]]:
    gen = ("generate", "a cat", "--model", "{model}", "--out", "{root}/out", "--quiet")
    edit = ("edit", "x", "--model", "{model}", "--out", "{root}/out", "--quiet")
    bench = (
        "bench", "parabench", "--model", "{model}", "--out", "{root}/bench-run",
        "--judge-url", "http://127.0.0.1:9", "--judge-model", "j", "--quiet",
    )  # fmt: skip
    good = ("--data", "{data}/good.jsonl")
    sft = ("train", "sft", "--config", "{recipe}", "--quiet")
    return {
        # sizes and steps beyond the model
        "a billion image steps": ((*gen, "--timesteps", "1000000000"), "image_steps"),
        "a huge output size": ((*gen, "--height", "100000", "--width", "100000"), "maximum side"),
        "an image the sequence cannot hold": ((*gen, "--height", "512", "--width", "512"), "fit"),
        "a huge text length": (
            (*gen, "--text-gen-length", "100000000", "--text-block-length", "100000000"),
            "at most 65536",
        ),
        "more text steps than tokens": ((*gen, "--text-steps", "1000"), "text tokens to reveal"),
        "a 25 M pixel input image": ((*edit, "--image", "{root}/huge.png"), "pixels"),
        "height without width": ((*gen, "--height", "16"), "both"),
        "a size off the grid": ((*gen, "--height", "17", "--width", "16"), "multiple"),
        # non-finite and out-of-range settings
        "nan temperature": ((*gen, "--temperature", "nan"), "image_temperature"),
        "inf image guidance": ((*gen, "--cfg-img", "inf"), "cfg_image"),
        "inf text temperature": ((*gen, "--text-temperature", "inf"), "text_temperature"),
        "negative text guidance": ((*gen, "--cfg-scale", "-1"), "cfg_text"),
        "zero text steps": ((*gen, "--text-steps", "0"), "text_steps"),
        "a block not dividing": ((*gen, "--text-block-length", "3"), "divide"),
        "an unknown mode": ((*gen, "--mode", "sideways"), "mode"),
        "an unknown profile": ((*gen, "--profile", "fast"), "profile"),
        "an unknown remasking": ((*gen, "--remasking", "all"), "remasking"),
        "a word for a number": ((*gen, "--timesteps", "many"), "invalid int"),
        "an unknown flag": ((*gen, "--colour", "red"), "unrecognized"),
        # devices and text
        "a device that is no device": ((*gen, "--device", "foo"), "not a device"),
        "a CUDA device this machine lacks": ((*gen, "--device", "cuda:99"), "CUDA device"),
        "an unknown dtype": ((*gen, "--dtype", "float13"), "float13"),
        "invalid UTF-8 in the prompt": (("generate", "a \udcff cat", *gen[2:]), "UTF-8"),
        "an empty prompt": (("generate", "   ", *gen[2:]), "empty"),
        # outputs that are not paradiff's to write
        "an empty --out": (("generate", "a cat", "--model", "{model}", "--out", ""), "empty"),
        "--out on the user's folder": ((*gen[:4], "--out", "{mine}"), "not empty"),
        "--out on the user's file": ((*gen[:4], "--out", "{root}/letter.txt"), "not a directory"),
        "--out below a file": ((*gen[:4], "--out", "{root}/letter.txt/x"), "not a directory"),
        "demo into the user's folder": (("demo", "--out", "{mine}"), "not empty"),
        # models that are not usable
        "a missing model": ((*gen[:3], "{root}/nothing", *gen[4:]), "cannot load model"),
        "weights that are not safetensors": ((*gen[:3], "{garbage}", *gen[4:]), "cannot load"),
        "NaN weights": ((*gen[:3], "{nan}", *gen[4:]), "NaN or inf"),
        "a model folder of the user's files (by absolute path)": (
            (*gen[:3], "{mine}", *gen[4:]),
            "no config.json",
        ),
        "train from an init whose tokenizer config is a list": (
            (
                "train",
                "sft",
                "--config",
                "{recipe}",
                "model.init={listed}",
                "output.dir={root}/new-run",
            ),
            "not a JSON object",
        ),  # fmt: skip
        "--dtype int8 (a quantization, not a dtype)": (
            (*gen, "--dtype", "int8"),
            "--dtype: unknown",
        ),
        "a tokenizer config that is a list": (
            (*gen[:3], "{listed}", *gen[4:]),
            "tokenizer_config.json is not a JSON object",
        ),
        "pretokenize with a tokenizer config that is a list": (
            (
                "pretokenize",
                "--records",
                "{root}/letter.txt",
                "--tokenizer",
                "{listed}",
                "--out",
                "{root}/pre-listed",
            ),
            "not a JSON object",
        ),  # fmt: skip
        "a vocabulary too small": ((*gen[:3], "{vocab}", *gen[4:]), "vocabulary"),
        "a garbage VQ codebook": (
            ("generate", "a red star", "--model", "{gbook}", "--out", "{root}/out"),
            "cannot load",
        ),  # fmt: skip
        "a size the fixed-grid model ignores": (
            (
                "generate",
                "a red star",
                "--model",
                "{shapes}",
                "--out",
                "{root}/out",
                "--height",
                "128",
                "--width",
                "128",
            ),
            "fixed size",
        ),  # fmt: skip
        # edit inputs
        "a missing input image": ((*edit, "--image", "{root}/nope.png"), "nope.png"),
        "a text file as image": ((*edit, "--image", "{root}/not-an-image.png"), "cannot read"),
        "a paint mask of another size": (
            (*edit, "--image", "{photo}", "--paint-mask", "{root}/small-mask.png"),
            "paint mask",
        ),
        # benchmarks
        "bench data outside (absolute)": ((*bench, "--data", "{data}/absolute.jsonl"), "outside"),
        "bench data outside (..)": ((*bench, "--data", "{data}/dotdot.jsonl"), "outside"),
        "bench data outside (symlink)": ((*bench, "--data", "{data}/symlink.jsonl"), "outside"),
        "bench instruction null": ((*bench, "--data", "{data}/null.jsonl"), "instruction"),
        "bench missing input image": ((*bench, "--data", "{data}/missing-image.jsonl"), "no.png"),
        "bench without items": ((*bench, "--data", "{data}/empty.jsonl"), "no benchmark items"),
        "bench negative retries": ((*bench, *good, "--judge-retries", "-1"), "judge-retries"),
        "bench zero timeout": ((*bench, *good, "--judge-timeout", "0"), "judge-timeout"),
        "bench nan deadline": ((*bench, *good, "--judge-deadline", "nan"), "judge-deadline"),
        "bench judge not http": ((*bench[:7], "ftp://x", *bench[8:], *good), "http"),
        "bench into the user's folder": (
            ("bench", "parabench", *bench[2:4], "--out", "{mine}", *bench[6:], *good),
            "not empty",
        ),
        "bench unreachable judge": ((*bench, *good), "unreachable"),
        "shapebench into the user's folder": (
            ("bench", "shapebench", "--oracle", "--out", "{mine}", "--limit", "2"),
            "not empty",
        ),
        "shapebench limit 0": (("bench", "shapebench", "--oracle", "--limit", "0"), "--limit"),
        "report of nothing": (("bench", "report", "{root}/nothing"), "nothing"),
        # training
        "a missing recipe": (("train", "sft", "--config", "{root}/none.yaml"), "no such file"),
        "a recipe that is a folder": (("train", "sft", "--config", "{root}"), "it is a folder"),
        "a recipe that is a device": (
            ("train", "pararl", "--config", "/dev/null"),
            "not a regular",
        ),
        "a run folder without --resume": (sft, "--resume"),
        "--resume and --overwrite": ((*sft, "--resume", "--overwrite"), "--overwrite"),
        "--resume from a truncated state": ((*sft, "--resume"), "training_state.pt"),
        "keep 0": ((*sft, "--overwrite", "output.keep=0"), "output.keep"),
        # bad recipe values stop before --overwrite touches the previous run
        "betas x": ((*sft, "--overwrite", "train.betas=x"), "train.betas"),
        "threads -1": ((*sft, "--overwrite", "train.threads=-1"), "train.threads"),
        "an eval.call that is no evaluation": (
            (*sft, "--overwrite", "eval.call=os:system", "eval.every=1"),
            "eval.call 'os:system'",
        ),
        "steps abc": ((*sft, "--overwrite", "train.steps=abc"), "train.steps"),
        "lr fast": ((*sft, "--overwrite", "train.lr=fast"), "train.lr"),
        "lr 0": ((*sft, "--overwrite", "train.lr=0"), "train.lr"),
        "min_lr_ratio -5": ((*sft, "--overwrite", "train.min_lr_ratio=-5"), "min_lr_ratio"),
        "grad_clip -1": ((*sft, "--overwrite", "train.grad_clip=-1"), "train.grad_clip"),
        "weight_decay -0.5": ((*sft, "--overwrite", "train.weight_decay=-0.5"), "weight_decay"),
        "precision fp8-ultra": ((*sft, "--overwrite", "train.precision=fp8-ultra"), "precision"),
        "micro_batch_size 0": ((*sft, "--overwrite", "train.micro_batch_size=0"), "micro_batch"),
        "batch_size true": ((*sft, "--overwrite", "train.batch_size=true"), "train.batch_size"),
        "log_with wandb": ((*sft, "--overwrite", "output.log_with=wandb"), "output.log_with"),
        "cond_dropout 1": ((*sft, "--overwrite", "data.cond_dropout=1"), "data.cond_dropout"),
        "pretokenize a missing file": (
            (
                "pretokenize",
                "--records",
                "{root}/none.jsonl",
                "--tokenizer",
                "{shapes}",
                "--out",
                "{root}/pre",
            ),
            "no such file",
        ),  # fmt: skip
        "pretokenize into the user's folder": (
            (
                "pretokenize",
                "--records",
                "{root}/letter.txt",
                "--tokenizer",
                "{shapes}",
                "--out",
                "{mine}",
            ),
            "not paradiff's pretokenized shards",
        ),  # fmt: skip
        "pretokenize a file of no records": (
            (
                "pretokenize",
                "--records",
                "{root}/letter.txt",
                "--tokenizer",
                "{shapes}",
                "--out",
                "{root}/pre-new",
                "--quiet",
            ),
            "no record of",
        ),  # fmt: skip
        # files that are no regular files, images beyond the limit by their header (every format)
        "a FIFO as --image": ((*edit, "--image", "{root}/fifo.png"), "not a regular file"),
        "a FIFO as --paint-mask": (
            (*edit, "--image", "{photo}", "--paint-mask", "{root}/fifo.png"),
            "--paint-mask: cannot read",
        ),
        "a text file as --paint-mask": (
            (*edit, "--image", "{photo}", "--paint-mask", "{root}/not-an-image.png"),
            "--paint-mask: cannot read image",
        ),
        "a folder as --image": ((*edit, "--image", "{root}/a-folder.png"), "it is a folder"),
        "an ICO hiding a 13000 px PNG": ((*edit, "--image", "{root}/bomb.ico"), "not a PNG"),
        "a 12000x12000 PNG": ((*edit, "--image", "{root}/12000.png"), "4096x4096"),
        "a 100000x100000 PNG": ((*edit, "--image", "{root}/100000.png"), "4096x4096"),
        "an 8192x2048 image": ((*edit, "--image", "{root}/8192x2048.png"), "4096x4096"),
        "a 16384x1024 image": ((*edit, "--image", "{root}/16384x1024.png"), "4096x4096"),
        "a truncated image": ((*edit, "--image", "{root}/truncated.png"), "truncated.png"),
        # numeric settings beyond their stated range, refused before sampling
        "text guidance 1e308": (
            (*gen, "--cfg-scale", "1e308"),
            "cfg_text must be a finite non-negative",
        ),
        "image guidance 1e308": (
            (*gen, "--cfg-img", "1e308"),
            "cfg_image must be a finite non-negative",
        ),
        "temperature 1e308": ((*gen, "--temperature", "1e308"), "image_temperature"),
        "best of 100000": ((*gen, "--best-of", "100000", "--temperature", "1"), "at most 16"),
        "a 20-digit seed": ((*gen, "--seed", "99999999999999999999"), "seed must be at most"),
        "a negative seed": ((*gen, "--seed", "-1"), "seed must be at least 0"),
        "a 20-digit cache refresh": (
            (*gen, "--cache-refresh", "99999999999999999999"),
            "cache_refresh must be at most",
        ),
        "a 20-digit guidance reuse": (
            (*gen, "--guidance-reuse", "99999999999999999999"),
            "guidance_reuse must be at most",
        ),
        "zero height and width": ((*gen, "--height", "0", "--width", "0"), "positive"),
        "batch size -5 without --batch": ((*gen, "--batch-size", "-5"), "--batch-size"),
        "--shard without --batch": ((*gen, "--shard", "0/2"), "--batch"),
        # batch requests: one strict schema, the same ranges, images checked by their header
        **{
            f"batch {name}": (
                ("generate", "--batch", f"{{root}}/batch/{name}.jsonl", *gen[2:]),
                expected,
            )
            for name, expected in {
                "steps-string": "image_steps must be a whole number",
                "steps-float": "image_steps must be a whole number",
                "steps-bool": "image_steps must be a whole number",
                "cfg-string": "cfg_image must be a number",
                "compile-string": "compile must be true or false",
                "best-of-huge": "best_of must be at most 16",
                "cfg-huge": "cfg_text must be a finite non-negative",
                "settings-list": "'settings' must be a JSON object",
                "seed-string": "'seed' must be a whole number",
                "seed-huge": "seed must be at most",
                "seed-bool": "'seed' must be a whole number",
                "id-bool": "'id' must be",
                "id-list": "'id' must be",
                "prompt-number": "'prompt' must be",
                "id-run-file": "like the run's own files",
                "id-generations-file": "like the run's own files",
                "id-very-long": "longer than 200",
                "second-bad": "request b: text_steps 4000 exceeds",
            }.items()
        },
        **{
            f"batch {name}": (("edit", "--batch", f"{{root}}/batch/{name}.jsonl", *edit[2:]), exp)
            for name, exp in {
                "image-huge": "4096x4096",
                "image-fifo": "not a regular file",
                "image-wide": "4096x4096",
                "image-corrupt": "item corrupt-one",
            }.items()
        },
        "batch file a FIFO": (
            ("generate", "--batch", "{root}/batch/fifo.jsonl", *gen[2:]),
            "not a regular file",
        ),
        "batch zero height and width": (
            (
                "generate",
                "--batch",
                "{root}/batch/good.jsonl",
                *gen[2:],
                "--height",
                "0",
                "--width",
                "0",
            ),
            "positive",
        ),  # fmt: skip
        "batch size 0": (
            ("generate", "--batch", "{root}/batch/good.jsonl", *gen[2:], "--batch-size", "0"),
            "--batch-size",
        ),
        # ParaBench records and run folders: the same schema; images only from inside
        "bench task a list": ((*bench, "--data", "{data}/task-list.jsonl"), "unknown task"),
        "bench id a bool": ((*bench, "--data", "{data}/id-bool.jsonl"), "id must be"),
        "bench FIFO input image": (
            (*bench, "--data", "{data}/fifo-image.jsonl"),
            "not a regular file",
        ),
        "bench huge input image": ((*bench, "--data", "{data}/huge-image.jsonl"), "4096x4096"),
        "bench concurrency 10**6": ((*bench, *good, "--concurrency", "1000000"), "at most 64"),
        "bench rerun, generation without id": (
            (*bench[:4], "--out", "{root}/bench-runs/missing-id", "--no-judge", *good),
            "has no id",
        ),
        "bench scoring an absolute image": (
            (*bench[:4], "--out", "{root}/bench-runs/absolute-image", "--no-judge", *good),
            "outside the run folder",
        ),
        "bench scoring a linked image": (
            (*bench[:4], "--out", "{root}/bench-runs/linked-image", "--no-judge", *good),
            "outside the folder",
        ),
        "report of a scores line without id": (
            ("bench", "report", "{root}/bench-runs/scores-x"),
            "has no id",
        ),
        "report of a scores line that is a list": (
            ("bench", "report", "{root}/bench-runs/scores-list"),
            "not a JSON object",
        ),
        "report of a score true": (
            ("bench", "report", "{root}/bench-runs/scores-bool"),
            "'text_quality' must be a finite number",
        ),
        # training and model folders that hold the user's files
        "train into the user's folder": (
            ("train", "sft", "--config", "{root}/thesis.yaml"),
            "not a paradiff run",
        ),
        "train --overwrite of the user's folder": (
            ("train", "sft", "--config", "{root}/thesis.yaml", "--overwrite"),
            "not a paradiff run",
        ),
        "train --resume in the user's folder": (
            ("train", "sft", "--config", "{root}/thesis.yaml", "--resume"),
            "not a paradiff run",
        ),
        "init-model over the user's folder": (
            ("shapes", "init-model", "--out", "{mine}"),
            "not empty",
        ),
        "init-model with d_model -8": (
            ("shapes", "init-model", "--out", "{root}/new-model", "--d-model", "-8"),
            "d_model must be a whole number of at least 1",
        ),
        "init-model with no heads": (
            ("shapes", "init-model", "--out", "{root}/new-model", "--n-heads", "0"),
            "n_heads must be",
        ),
        "init-model with no layers": (
            ("shapes", "init-model", "--out", "{root}/new-model", "--n-layers", "0"),
            "n_layers must be",
        ),
        "init-model a million wide": (
            ("shapes", "init-model", "--out", "{root}/new-model", "--d-model", "1000000"),
            "too large",
        ),
        "init-model with RoPE theta nan": (
            ("shapes", "init-model", "--out", "{root}/new-model", "--rope-theta", "nan"),
            "rope_theta must be a finite number",
        ),
        "save-tokenizers over the user's folder": (
            ("shapes", "save-tokenizers", "--out", "{mine}"),
            "not empty",
        ),
        "save-tokenizers to an empty path": (("shapes", "save-tokenizers", "--out", ""), "empty"),
        "save-tokenizers with cells of 0 px": (
            ("shapes", "save-tokenizers", "--out", "{root}/new-tokenizers", "--cell-px", "0"),
            "cell size 0 px",
        ),
        "train-clip over the user's folder": (
            ("shapes", "train-clip", "--out", "{mine}", "--steps", "1"),
            "not empty",
        ),
        "train-clip at lr inf": (
            ("shapes", "train-clip", "--out", "{root}/new-clip", "--lr", "inf"),
            "--lr must be a finite number",
        ),
        "make-dataset --overwrite of the user's folder": (
            ("shapes", "make-dataset", "--n", "2", "--out", "{mine}", "--overwrite", "--quiet"),
            "not a paradiff dataset",
        ),
        "make-dataset --overwrite of a dataset with a sparse share of 2": (
            (
                "shapes",
                "make-dataset",
                "--n",
                "2",
                "--out",
                "{root}/dataset",
                "--overwrite",
                "--sparse-share",
                "2",
                "--quiet",
            ),
            "sparse share must be in [0, 1]",
        ),
        "make-dataset with cells of 100000 px": (
            (
                "shapes",
                "make-dataset",
                "--n",
                "2",
                "--out",
                "{root}/new-data",
                "--cell-px",
                "100000",
            ),
            "at most 512",
        ),
        "make-dataset of a trillion samples": (
            ("shapes", "make-dataset", "--n", "1000000000000", "--out", "{root}/new-data"),
            "GB free",
        ),
        "app on port 0": (("app", "--port", "0"), "--port"),
        "app on a device that is no device": (("app", "--device", "gpu!"), "not a device"),
        "app on a host that does not resolve": (("app", "--host", "256.1.1.1"), "not an address"),
        "app on another machine's address": (("app", "--host", "192.0.2.1"), "cannot serve"),
    }


CASES = _cases()


def test_the_table_holds_at_least_a_hundred_hostile_inputs():
    assert len(CASES) >= 100


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_one_line_exit_2_and_changes_nothing(name, world, capsys):
    argv, expected = CASES[name]
    names = {**{k: str(v) for k, v in world.items()}, "gbook": str(world["garbage"])}
    argv = [part.format(**names) for part in argv]
    before = snapshot(world["root"])
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("paradiff"), err
    assert expected.lower() in err.lower(), err
    assert snapshot(world["root"]) == before


# -- 1: outputs never replace what the user owns ------------------------------------------------
def _writer(names: dict[str, str]):
    def write(tmp: Path) -> None:
        for name, text in names.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)

    return write


def test_publish_replaces_only_its_own_unchanged_files(tmp_path):
    out = tmp_path / "out"
    publish(_writer({"image.png": "1", "sub/meta.json": "1"}), out)
    (out / "notes.txt").write_text("the user's")
    publish(_writer({"image.png": "2", "sub/meta.json": "2"}), out)  # a re-run: replaced
    assert (out / "image.png").read_text() == "2" and (
        out / "notes.txt"
    ).read_text() == "the user's"
    (out / "image.png").write_text("edited by the user")
    with pytest.raises(CommandError, match="changed after paradiff wrote it"):
        publish(_writer({"image.png": "3"}), out)
    assert (out / "image.png").read_text() == "edited by the user"
    (out / "image.png").unlink()
    with pytest.raises(CommandError, match="not written by paradiff"):
        publish(_writer({"notes.txt": "mine now"}), out)
    assert (out / "notes.txt").read_text() == "the user's"


def test_generate_refuses_a_folder_of_the_users_files_and_reruns_into_its_own(world, capsys):
    out = world["root"] / "gen-out"
    argv = ["generate", "a cat", "--model", str(world["model"]), "--out", str(out), "--quiet"]
    assert main(argv) == 0 and main(argv) == 0
    assert json.loads((out / OUTPUT_MANIFEST).read_text())["files"].keys() == {
        "image.png", "reasoning.txt", "meta.json", "trajectory.gif"
    }  # fmt: skip
    shutil.rmtree(out)
    mine = world["mine"]
    before = snapshot(mine)
    assert main([*argv[:4], "--out", str(mine)]) == 2
    assert "not empty and holds no paradiff output" in capsys.readouterr().err
    assert snapshot(mine) == before


def test_an_edit_never_replaces_its_own_input_image(world, capsys):
    out = world["root"] / "own-input"
    model = ("--model", str(world["model"]), "--out", str(out), "--quiet")
    assert main(["generate", "a cat", *model]) == 0
    before = (out / "image.png").read_bytes()
    capsys.readouterr()
    assert main(["edit", "make it blue", "--image", str(out / "image.png"), *model]) == 2
    assert "this edit would replace" in capsys.readouterr().err
    assert (out / "image.png").read_bytes() == before
    shutil.rmtree(out)


# -- 2: a training rerun never loses a run ------------------------------------------------------
@pytest.fixture
def pipe(tiny_shapes_model):
    return ParallelPipeline.from_pretrained(tiny_shapes_model, device="cpu")


def test_pruning_keeps_the_new_checkpoint_and_latest_names_one_that_exists(tmp_path, pipe):
    folder = RunFolder(tmp_path / "run")
    assert folder.start(resume=False, overwrite=False) is None
    for step in (1, 2, 3):
        folder.write_checkpoint(pipe, step, {"step": step}, keep=2)
    names = sorted(p.name for p in folder.checkpoints())
    assert names == ["checkpoint-000002", "checkpoint-000003"]
    assert (folder.root / LATEST_FILE).read_text().strip() == "checkpoint-000003"
    # a rerun must say what it wants; --overwrite starts over with the new run's checkpoints
    with pytest.raises(RecipeError, match="--resume"):
        folder.start(resume=False, overwrite=False)
    assert folder.start(resume=False, overwrite=True) is None and folder.checkpoints() == []
    folder.write_checkpoint(pipe, 1, {"step": 1}, keep=1)
    assert [p.name for p in folder.checkpoints()] == ["checkpoint-000001"]


def test_resume_falls_back_to_the_newest_complete_checkpoint(tmp_path, pipe):
    folder = RunFolder(tmp_path / "run")
    for step in (1, 2):
        folder.write_checkpoint(pipe, step, {"step": step}, keep=3)
    (folder.root / LATEST_FILE).write_text("checkpoint-000009\n")  # killed: latest points nowhere
    (folder.root / "checkpoint-000003").mkdir()  # and a checkpoint without its state
    with open(folder.root / LOG_FILE, "w") as log:
        log.writelines(json.dumps({"step": s}) + "\n" for s in (1, 2, 3))
    assert folder.start(resume=True, overwrite=False).name == "checkpoint-000002"
    steps = [json.loads(line)["step"] for line in (folder.root / LOG_FILE).read_text().splitlines()]
    assert steps == [1, 2]  # the killed run's later lines go: the resumed run repeats them


def test_a_truncated_training_state_is_a_one_line_error(tmp_path, pipe):
    folder = RunFolder(tmp_path / "run")
    path = folder.write_checkpoint(pipe, 1, {"step": 1}, keep=1)
    data = (path / "training_state.pt").read_bytes()
    (path / "training_state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(RecipeError, match="damaged or truncated"):
        folder.load_state(path)


# -- 3: scratch folders of killed runs are removed at the next run, and nothing else ----------
DEAD_PID = 2**22 + 12345  # above any pid this machine hands out (pid_max is at most 2^22)


def _killed_scratch(folder: Path, name: str, token: str) -> Path:
    path = folder / name
    path.mkdir()
    (path / SCRATCH_MARKER).write_text(json.dumps({"token": token, "pid": DEAD_PID}))
    (path / "image.png").write_text("half written")
    return path


def test_only_the_scratch_folders_paradiff_made_and_listed_are_removed(tmp_path):
    out = tmp_path / "out"
    publish(_writer({"a.txt": "a"}), out)
    killed = _killed_scratch(out, f".paradiff-{DEAD_PID}-abc", "tok")
    manifest = json.loads((out / OUTPUT_MANIFEST).read_text())
    (out / OUTPUT_MANIFEST).write_text(json.dumps({**manifest, "scratch": {killed.name: "tok"}}))
    # the user's own: beside --out, inside it (unlisted, or listed with another token), and in
    # the nearest existing folder above a deep new --out
    (tmp_path / ".paradiff-config").mkdir()
    (tmp_path / ".paradiff-config" / "settings.ini").write_text("mine")
    (out / ".paradiff-backup").mkdir()
    (out / ".paradiff-backup" / "old.png").write_text("mine")
    for old in (tmp_path / ".paradiff-config", out / ".paradiff-backup"):
        os.utime(old, (1e9, 1e9))  # older than any age a clean-up could go by
    unlisted = _killed_scratch(out, f".paradiff-{DEAD_PID}-def", "tok")
    (tmp_path / "deep").mkdir()
    _killed_scratch(tmp_path / "deep", f".paradiff-{DEAD_PID}-ghi", "tok")
    before = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(f"out/{killed.name}")}
    before.pop("out/" + OUTPUT_MANIFEST)
    publish(_writer({"a.txt": "a"}), out)  # a re-run
    publish(_writer({"b.txt": "b"}), tmp_path / "deep" / "a" / "b" / "new")
    after = snapshot(tmp_path)
    assert not killed.exists() and unlisted.exists()
    assert json.loads((out / OUTPUT_MANIFEST).read_text())["scratch"] == {}
    assert {k: after[k] for k in before} == before  # every other file byte for byte


def test_an_empty_out_and_a_link_to_one_take_the_output(tmp_path, world, capsys):
    argv = ["generate", "a cat", "--model", str(world["model"]), "--quiet", "--out"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    (tmp_path / "target").mkdir()
    assert main([*argv, str(empty)]) == 0, capsys.readouterr().err
    assert main([*argv, str(tmp_path / "link")]) == 0, capsys.readouterr().err
    for folder in (empty, tmp_path / "target"):
        names = sorted(p.name for p in folder.iterdir())
        assert names == sorted([OUTPUT_MANIFEST, *OUTPUT_FILES]), names
    assert (tmp_path / "link").is_symlink()


def test_a_failed_run_leaves_no_folder_and_no_scratch(tmp_path):
    def fail(tmp: Path) -> None:
        (tmp / "image.png").write_text("x")
        raise CommandError("sampling failed")

    with pytest.raises(CommandError):
        publish(fail, tmp_path / "a" / "b" / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError):
        publish(fail, tmp_path / "empty")
    assert snapshot(tmp_path) == {"empty": "dir"}


def test_training_scratch_folders_are_removed_only_with_their_marker(tmp_path, pipe):
    run = tmp_path / "run"
    folder = RunFolder(run)
    folder.start(resume=False, overwrite=False)
    folder.write_checkpoint(pipe, 1, {"step": 1}, keep=2)
    killed = run / ".checkpoint-000004.x1y2"
    killed.mkdir()
    (killed / SCRATCH_MARKER).write_text(json.dumps({"token": SAVE_TOKEN, "pid": DEAD_PID}))
    (run / ".final.bak").mkdir()  # the user's, in the run folder
    (run / ".final.bak" / "model.safetensors").write_text("mine")
    (run / ".checkpoint-notes.md").write_text("mine")
    before = {k: v for k, v in snapshot(run).items() if ".x1y2" not in k}
    RunFolder(run).start(resume=True, overwrite=False)
    assert not killed.exists() and snapshot(run) == before


# -- 4 and 9: benchmark data stays inside its folder, and says what it is -----------------------
@pytest.mark.parametrize("name", ["absolute", "dotdot", "symlink"])
def test_bench_images_outside_the_data_folder_are_refused(world, name):
    with pytest.raises(BenchDataError, match="outside the data folder"):
        load_parabench(world["data"] / f"{name}.jsonl")


def test_a_null_instruction_is_refused_not_drawn_as_none(world):
    with pytest.raises(BenchDataError, match="instruction is missing or empty"):
        load_parabench(world["data"] / "null.jsonl")


# -- 5: typed marker strings stay text ----------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_pipe(world):
    return ParallelPipeline.from_pretrained(world["model"], device="cpu")


@pytest.mark.parametrize("model", ["tiny", "shapes"])
def test_prompt_ids_equal_the_template_encoding_for_plain_text(model, world, tiny_pipe):
    pipe = tiny_pipe if model == "tiny" else ParallelPipeline.from_pretrained(world["shapes"])
    layout, tok = pipe.layout, pipe.text_tokenizer
    for task in ("edit", "generate"):
        for text in ("a red circle", "two stars, left of a blue square.", ""):
            expected = tok.encode(layout.prompt_text(task, text))
            assert layout.prompt_ids(task, text, tok) == expected


@pytest.mark.parametrize("marker", ["</user>", "<answer>", "<mask>", "<uncondition>", "<image>"])
def test_a_typed_marker_never_becomes_its_token(marker, tiny_pipe):
    layout, tok = tiny_pipe.layout, tiny_pipe.text_tokenizer
    marker_id = tok.special_id(marker)
    clean = layout.prompt_ids("generate", "a cat", tok)
    typed = layout.prompt_ids("generate", f"a cat {marker} draw a dog", tok)
    assert typed.count(marker_id) == clean.count(marker_id)
    assert tok.decode(tok.encode_plain(f"a {marker} b")).replace(" ", "") == f"a{marker}b"


def test_a_prompt_spelling_uncondition_is_still_conditioned(tiny_pipe):
    layout, tok = tiny_pipe.layout, tiny_pipe.text_tokenizer
    unconditional = layout.prompt_ids("generate", None, tok)
    assert layout.prompt_ids("generate", "<uncondition>", tok) != unconditional


# -- 6: sizes are bounded before anything is allocated ------------------------------------------
def test_sizes_are_refused_before_the_sequence_is_built(tiny_pipe, monkeypatch):
    built = []
    monkeypatch.setattr(Layout, "build", lambda *a, **k: built.append(1))
    with pytest.raises(PipelineInputError, match="do not fit"):
        tiny_pipe.run("generate", [_request("a cat")], height=1024, width=1024)
    with pytest.raises(PipelineInputError, match="image_steps"):
        tiny_pipe.run("generate", [_request("a cat")], image_steps=4000)
    assert built == []


def _request(text: str):
    from paradiff.pipeline import Request

    return Request(text)


def test_a_huge_image_is_refused_from_its_header(world, monkeypatch):
    from paradiff.image_tokenizers.base import ImageInputError, load_image

    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))
    with pytest.raises(ImageInputError, match="pixels"):
        load_image(world["root"] / "huge.png")
    assert decoded == []


# -- 7: a judge that never answers gives up within its deadline ---------------------------------
def test_a_silent_judge_gives_up_within_the_deadline_and_says_so():
    now = [0.0]
    timeouts, retries = [], []

    def never_answers(body, timeout):
        timeouts.append(timeout)
        now[0] += timeout
        raise TimeoutError("timed out")

    client = JudgeClient(
        "http://judge", "j", timeout=60, retries=10, backoff=2, deadline=150,
        on_retry=retries.append, sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )  # fmt: skip
    client._post = never_answers
    with pytest.raises(JudgeError, match="failed 3 times"):
        client.score([{"role": "user", "content": "x"}])
    assert now[0] <= 150 and timeouts == [60, 60, 150 - 60 - 2 - 60 - 4]
    assert len(retries) == 2 and "attempt 2 of 11" in retries[0]


# -- 8: a device that is not there is refused ---------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it_is_one_line(world, capsys):
    argv = ["generate", "a cat", "--model", str(world["model"]), "--out", str(world["root"] / "o")]
    assert main([*argv, "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


# -- 10: batch output keeps the rules of single runs ---------------------------------------------
def _batch(world, requests: Path, out: Path, *extra: str) -> list[str]:
    model = str(world["model"])
    return ["generate", "--batch", str(requests), "--model", model, "--out", str(out), "--quiet", *extra]  # fmt: skip


def _two_requests(folder: Path) -> Path:
    requests = folder / "requests.jsonl"
    requests.write_text("".join(json.dumps({"id": i, "prompt": "a cat"}) + "\n" for i in "ab"))
    return requests


def test_a_batch_rerun_never_replaces_a_users_file_in_a_request_folder(world, tmp_path, capsys):
    requests, out = _two_requests(tmp_path), tmp_path / "out"
    assert main(_batch(world, requests, out, "--shard", "0/2")) == 0  # request a only
    (out / "b").mkdir()
    (out / "b" / "image.png").write_bytes(b"the user's own picture")
    before = snapshot(tmp_path)
    assert main(_batch(world, requests, out)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "holds no paradiff output" in err, err
    assert snapshot(tmp_path) == before
    (out / "b" / "image.png").unlink()  # the user moves it away: the re-run completes
    assert main(_batch(world, requests, out)) == 0
    assert json.loads((out / "b" / OUTPUT_MANIFEST).read_text())["files"].keys() == set(
        OUTPUT_FILES
    )


def test_a_batch_never_writes_through_a_planted_link(world, tmp_path, capsys):
    requests, out = _two_requests(tmp_path), tmp_path / "out"
    assert main(_batch(world, requests, out, "--shard", "0/2")) == 0
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("mine")
    (out / "b").symlink_to("../outside")
    before = snapshot(tmp_path)
    assert main(_batch(world, requests, out)) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


# -- 11: a training folder holds a paradiff run, or it is refused --------------------------------
def test_a_training_folder_of_the_users_files_is_refused_whatever_the_flags(tmp_path):
    root = tmp_path / "thesis"
    (root / "final").mkdir(parents=True)
    (root / LOG_FILE).write_text('{"step": 9}\n{"step": 12, "note": "mine"}\n')
    (root / "final" / "thesis-final.pdf").write_bytes(b"%PDF mine")
    before = snapshot(tmp_path)
    for resume, overwrite in ((False, False), (True, False), (False, True)):
        with pytest.raises(RecipeError, match="not a paradiff run"):
            RunFolder(root).start(resume=resume, overwrite=overwrite)
    assert snapshot(tmp_path) == before


def test_overwrite_removes_the_whole_old_run_and_nothing_else(tmp_path, pipe):
    run = tmp_path / "run"
    folder = RunFolder(run)
    folder.start(resume=False, overwrite=False)
    folder.write_checkpoint(pipe, 1, {"step": 1}, keep=2)
    folder.log({"step": 1})
    (run / "tensorboard" / "sft").mkdir(parents=True)
    (run / "tensorboard" / "sft" / "events.out").write_bytes(b"old run")
    (run / "notes.md").write_text("the user's notes in the run folder")
    RunFolder(run).start(resume=False, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == [RUN_MARKER, "notes.md"]
    assert (run / "notes.md").read_text() == "the user's notes in the run folder"


# -- 12: a judge sees only images from inside the run folder, and answers in time --------------
def test_a_score_that_is_no_number_is_no_score():
    assert parse_score('{"score": 7}') == 70.0
    for answer in ('{"score": true}', '{"score": "7"}', '{"score": null}', '{"score": [7]}'):
        with pytest.raises(MalformedAnswer):
            parse_score(answer)


MESSAGES = [{"role": "system", "content": "Metric: text_quality"}, {"role": "user", "content": "x"}]


def test_a_judge_sending_a_byte_at_a_time_gives_up_at_the_deadline():
    with JudgeServer(script=["drip"] * 4, slow_s=0.05) as server:
        client = JudgeClient(server.url, "j", timeout=0.5, retries=1, backoff=0, deadline=0.8)
        started = time.monotonic()
        with pytest.raises(JudgeError, match="within"):
            client.score(MESSAGES)
        assert time.monotonic() - started < 1.5  # the reply would take about 5 s per attempt


def test_a_huge_judge_reply_is_refused_unread():
    with JudgeServer(script=["huge"] * 2) as server:
        client = JudgeClient(server.url, "j", retries=0, max_reply_bytes=1 << 20)
        tracemalloc.start()
        with pytest.raises(JudgeError, match="over"):
            client.score(MESSAGES)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 8 << 20  # the server streams 64 MiB


@pytest.fixture(scope="module")
def generated_run(world, tmp_path_factory) -> Path:
    """A --no-judge ParaBench run of one item (outputs/g.png), to be scored later."""
    out = tmp_path_factory.mktemp("scored") / "run"
    argv = [
        "bench", "parabench", "--model", str(world["model"]), "--out", str(out), "--no-judge",
        "--data", str(world["data"] / "good.jsonl"), "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.mark.parametrize("damage", ["link", "absolute", "text"])
def test_scoring_sends_the_judge_only_images_of_the_run_folder(
    damage, generated_run, world, tmp_path, capsys
):
    run = Path(shutil.copytree(generated_run, tmp_path / "run", symlinks=True))
    secret = tmp_path / "secret.txt"
    secret.write_text("a secret that must stay here")
    if damage == "link":
        (run / "outputs" / "g.png").unlink()
        (run / "outputs" / "g.png").symlink_to(secret)
    elif damage == "absolute":
        line = json.loads((run / "generations.jsonl").read_text())
        (run / "generations.jsonl").write_text(json.dumps({**line, "image": str(secret)}) + "\n")
    else:  # inside, a regular file, but no image
        (run / "outputs" / "g.png").write_text("a secret that must stay here")
    before = snapshot(tmp_path)
    with JudgeServer() as server:
        argv = [
            "bench", "parabench", "--out", str(run), "--judge-url", server.url,
            "--judge-model", "j", "--data", str(world["data"] / "good.jsonl"), "--quiet",
            "--judge-retries", "0",
        ]  # fmt: skip
        code = main(argv)
        sent = json.dumps(server.requests)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert base64.b64encode(secret.read_bytes()).decode() not in sent and "secret" not in sent
    assert {k: v for k, v in snapshot(tmp_path).items() if "judge" not in k} == {
        k: v for k, v in before.items() if "judge" not in k
    }


# -- 13: image headers of every format are checked before decoding, without warnings -----------
@pytest.mark.parametrize("name", ["bomb.ico", "12000.png", "100000.png", "8192x2048.png"])
def test_an_image_beyond_the_limit_is_refused_undecoded_and_silently(name, world, monkeypatch):
    from paradiff.image_tokenizers.base import ImageInputError, load_image

    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageInputError):
            load_image(world["root"] / name)
    assert decoded == [] and caught == []


def test_a_fifo_is_refused_at_once(world):
    from paradiff.files import FileInputError, read_text

    started = time.monotonic()
    for path in (world["root"] / "fifo.png", world["root"] / "batch" / "fifo.jsonl"):
        with pytest.raises(FileInputError, match="not a regular file"):
            read_text(path)
    assert time.monotonic() - started < 1
