"""Shared fixtures: the upstream reference folder and small helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_smoke_script(script: str, *args: str) -> subprocess.CompletedProcess:
    """`bash scripts/<script> args` from the project root with SMOKE=1 and this environment's
    `paradiff` and `python` first on PATH; its output captured."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "SMOKE": "1", "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    return subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / script), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def reference_dir() -> Path:
    """The reference folder: $PARADIFF_REFERENCE_DIR, else ../shared/reference beside the project.

    When the variable is set, a missing folder is an error (tests fail, never skip).
    """
    configured = os.environ.get("PARADIFF_REFERENCE_DIR")
    if configured:
        path = Path(configured)
        if not path.is_dir():
            raise FileNotFoundError(f"PARADIFF_REFERENCE_DIR={configured} is not a directory")
        return path
    path = PROJECT_ROOT.parent / "shared" / "reference"
    if not path.is_dir():
        pytest.skip(f"no reference data at {path} (set PARADIFF_REFERENCE_DIR)")
    return path


@pytest.fixture(scope="session")
def reference_root() -> Path:
    return reference_dir()


OTHER_REFERENCE_FOLDERS = {
    "seed1-gqa": dict(seed=1, d_model=48, n_layers=3, n_heads=4, n_kv_heads=2),
    "seed7-dtype-key": dict(
        seed=7,
        d_model=64,
        n_layers=1,
        n_heads=2,
        n_kv_heads=2,
        grid=(2, 2),
        config_dtype_key="dtype",
    ),
}


@pytest.fixture(scope="session", params=sorted(OTHER_REFERENCE_FOLDERS))
def other_reference_root(request, tmp_path_factory) -> Path:
    """Folders in the reference format built by tests/reference_data.py (other sizes and seeds)."""
    from tests.reference_data import write_llada_reference

    root = tmp_path_factory.mktemp(f"reference-{request.param}")
    return write_llada_reference(root, **OTHER_REFERENCE_FOLDERS[request.param])


@pytest.fixture(scope="session")
def tiny_shapes_model(tmp_path_factory) -> Path:
    """A randomly initialised one-layer shapes-world checkpoint (the start of SFT in tests)."""
    from paradiff.shapes.family import new_shapes_pipeline

    path = tmp_path_factory.mktemp("tiny-shapes") / "init"
    new_shapes_pipeline(
        seed=0, d_model=32, n_heads=2, n_layers=1, mlp_hidden_size=64
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def shapes_records(tmp_path_factory) -> Path:
    """40 shapes-world training records (`records.jsonl` and images)."""
    from paradiff.shapes.dataset import RECORDS_FILE, make_dataset

    folder = make_dataset(tmp_path_factory.mktemp("shapes") / "data", 40, seed=0, progress=False)
    return folder / RECORDS_FILE


@pytest.fixture(scope="session")
def pretokenized(tmp_path_factory, shapes_records, tiny_shapes_model) -> Path:
    """`shapes_records` pre-tokenized for `tiny_shapes_model`."""
    from paradiff.training.pretokenize import pretokenize

    out = tmp_path_factory.mktemp("pretokenized") / "tok"
    pretokenize(shapes_records, tiny_shapes_model, out, shard_size=16, progress=False)
    return out


@pytest.fixture
def sampler_runs(monkeypatch) -> list:
    """The settings each sampler the pipeline builds runs (its resolved SamplerConfig), in order."""
    from paradiff import pipeline
    from paradiff.sampling import ParallelSampler

    runs = []

    class Recording(ParallelSampler):
        def __init__(self, model, space, config) -> None:
            super().__init__(model, space, config)
            runs.append(self.config)

    monkeypatch.setattr(pipeline, "ParallelSampler", Recording)
    return runs
