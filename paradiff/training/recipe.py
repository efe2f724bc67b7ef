"""Recipe files: one YAML per run, merged over the recipe's defaults, with `key=value` overrides."""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml


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
        if not path.is_file():
            raise RecipeError(f"recipe file {path} does not exist")
        try:
            values = yaml.load(path.read_text(), RecipeLoader) or {}
        except yaml.YAMLError as err:
            raise RecipeError(f"recipe file {path} is not valid YAML ({err.problem})") from None
        if not isinstance(values, dict):
            raise RecipeError(f"recipe file {path} must hold a mapping")
    config = merge(defaults, values)
    for text in overrides:
        config = merge(config, parse_override(text))
    return config


def evaluation_function(spec: str):
    """'package.module:function' -> the function (RecipeError when it cannot be imported)."""
    module, _, name = str(spec).partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise RecipeError(f"eval.call {spec!r} is not an importable 'module:function'") from None
    if not callable(function):
        raise RecipeError(f"eval.call {spec!r} is not callable")
    return function


def check_eval_settings(evaluation: dict[str, Any]) -> None:
    """A recipe's `eval` section: `call` importable and callable as function(pipeline,
    limit=N) (when set), `every` >= 0, `limit` >= 1."""
    if not evaluation["call"]:
        return
    function = evaluation_function(evaluation["call"])
    try:
        inspect.signature(function).bind(None, limit=1)
    except TypeError:
        raise RecipeError(
            f"eval.call {evaluation['call']!r} cannot be called as function(pipeline, limit=N)"
        ) from None
    except ValueError:  # a builtin without a signature: not an evaluation function
        raise RecipeError(f"eval.call {evaluation['call']!r} is not a Python function") from None
    for key, least in (("every", 0), ("limit", 1)):
        value = evaluation[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise RecipeError(f"eval.{key} must be a whole number >= {least}, got {value!r}")


def whole_number(section: str, key: str, value: Any, least: int) -> int:
    """`value` as a whole number >= `least` (RecipeError naming `section.key` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise RecipeError(
            f"{section}.{key} must be a whole number of at least {least}, got {value!r}"
        )
    return value


def number_in(section: str, key: str, value: Any, low: float, high: float) -> float:
    """`value` as a finite number in [low, high] (RecipeError naming `section.key` otherwise)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise RecipeError(f"{section}.{key} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def check_optimizer_settings(train: dict[str, Any]) -> None:
    """The `train` keys SFT and RL share — steps, learning rate and its schedule, AdamW, clipping,
    seed, threads — each with its range, so a bad value stops before any folder is touched."""
    whole_number("train", "steps", train["steps"], 1)
    whole_number("train", "warmup_steps", train["warmup_steps"], 0)
    whole_number("train", "seed", train["seed"], 0)
    if not number_in("train", "lr", train["lr"], 0, 1) > 0:
        raise RecipeError(f"train.lr must be a positive number, got {train['lr']!r}")
    number_in("train", "min_lr_ratio", train["min_lr_ratio"], 0, 1)
    number_in("train", "weight_decay", train["weight_decay"], 0, 1)
    number_in("train", "grad_clip", train["grad_clip"], 0, 1e6)  # 0: no clipping
    betas = train["betas"]
    if not isinstance(betas, list | tuple) or len(betas) != 2:
        raise RecipeError(f"train.betas must be [beta1, beta2] in [0, 1), got {betas!r}")
    for value in betas:
        if not number_in("train", "betas", value, 0, 1) < 1:
            raise RecipeError(f"train.betas must be [beta1, beta2] in [0, 1), got {betas!r}")
    if train["threads"] is not None:
        whole_number("train", "threads", train["threads"], 1)
