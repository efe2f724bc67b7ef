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
