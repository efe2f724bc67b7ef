"""Recipe files: one YAML per run, merged over the recipe's defaults, with `key=value` overrides."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

from paradiff.files import FileInputError, read_text


class RecipeError(ValueError):
    """A recipe file or override that cannot be used."""


class RecipeLoader(yaml.SafeLoader):
    """Safe YAML that reads `1e-4` as a number too (YAML 1.1 wants `1.0e-4`)."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def merge(defaults: dict[str, Any], values: dict[str, Any], where: str = "") -> dict[str, Any]:
    """`values` over `defaults`, recursively; a key the defaults do not have is an error."""
    merged = copy.deepcopy(defaults)
    for key, value in values.items():
        name = f"{where}{key}"
        if key not in defaults:
            raise RecipeError(f"unknown recipe key {name!r}")
        if isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise RecipeError(f"recipe key {name!r} must be a mapping")
            merged[key] = merge(defaults[key], value, f"{name}.")
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """'train.lr=1e-4' -> {'train': {'lr': 0.0001}} (the value is read as YAML)."""
    if "=" not in text:
        raise RecipeError(f"override {text!r} is not key=value")
    key, raw = text.split("=", 1)
    value = yaml.load(raw, RecipeLoader) if raw else None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def load_recipe(
    path: str | os.PathLike | None, overrides: list[str], defaults: dict[str, Any]
) -> dict[str, Any]:
    """Defaults <- recipe file <- overrides, every key checked."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            values = yaml.load(read_text(path, what="recipe file"), RecipeLoader) or {}
        except FileInputError as err:
            raise RecipeError(str(err)) from None
        except yaml.YAMLError as err:
            raise RecipeError(f"recipe file {path} is not valid YAML ({err.problem})") from None
        if not isinstance(values, dict):
            raise RecipeError(f"recipe file {path} must hold a mapping")
    config = merge(defaults, values)
    for text in overrides:
        config = merge(config, parse_override(text))
    return config
