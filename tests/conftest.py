"""Shared fixtures: the upstream reference folder and small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


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
