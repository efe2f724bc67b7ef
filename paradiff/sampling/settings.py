"""The sampler settings a checkpoint directory carries beside its config.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from paradiff.sampling.config import SamplerConfig, unset_exact_values

SAMPLER_SETTINGS_NAME = "sampler_config.json"


def read_sampler_settings(directory: Path) -> dict[str, Any]:
    """The pipeline keyword arguments saved beside a checkpoint's config.json (empty if none):
    sampler_defaults, image_size (width, height), fixed_size. A fast setting saved at its exact
    value reads as unset (`unset_exact_values`): a speed preset asked for applies to it."""
    path = directory / SAMPLER_SETTINGS_NAME
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text())
    size = raw.get("image_size")
    return {
        "sampler_defaults": SamplerConfig.from_dict(unset_exact_values(raw.get("sampler", {}))),
        "image_size": tuple(size) if size else None,
        "fixed_size": bool(raw.get("fixed_size", False)),
    }


def write_sampler_settings(
    directory: Path, config: SamplerConfig, image_size: tuple[int, int], fixed_size: bool
) -> None:
    raw = {"sampler": config.to_dict(), "image_size": list(image_size), "fixed_size": fixed_size}
    (directory / SAMPLER_SETTINGS_NAME).write_text(json.dumps(raw, indent=2) + "\n")
