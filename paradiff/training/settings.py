"""Typed recipe settings: every section of a recipe (model, data, train, eval, output, ...) is a
frozen dataclass whose fields are the section's keys, with their defaults and their checks.

A recipe's YAML and its `key=value` overrides are merged over the defaults first
(`recipe.load_recipe`, which refuses an unknown key); `RecipeSettings.from_config` then builds
the sections and checks every value (type and range), so a bad recipe stops with one line
naming the key before any folder is touched. Runs read `settings.train.lr`, never the dict.

A field's check is a function (dotted name, raw value) -> the setting's value, given with
`setting(default, check)`; a subclass that only changes a default redeclares the field
plainly and keeps the check (`TrainSettings`: the keys SFT and RL share, with the defaults of
each recipe in its own subclass).
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar, get_type_hints

from paradiff.training.recipe import RecipeError, load_recipe
from paradiff.training.trackers import check_log_with

Check = Callable[[str, Any], Any]
S = TypeVar("S", bound="Section")
R = TypeVar("R", bound="RecipeSettings")


def setting(default: Any, check: Check) -> Any:
    """A section field: its default and its check."""
    return field(default=default, metadata={"check": check})


# -- checks --------------------------------------------------------------------------------------
def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def whole(least: int) -> Check:
    """A whole number >= `least`."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise RecipeError(f"{name} must be a whole number of at least {least}, got {value!r}")
        return value

    return check


def number_in(low: float, high: float) -> Check:
    """A finite number in [low, high]."""

    def check(name: str, value: Any) -> float:
        if not is_number(value) or not math.isfinite(value) or not low <= value <= high:
            raise RecipeError(f"{name} must be a number in [{low:g}, {high:g}], got {value!r}")
        return float(value)

    return check


def below_one(name: str, value: Any) -> float:
    """A number in [0, 1)."""
    if not number_in(0, 1)(name, value) < 1:
        raise RecipeError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def positive(name: str, value: Any) -> float:
    if not is_number(value) or not 0 < value < math.inf:
        raise RecipeError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def non_negative(name: str, value: Any) -> float:
    if not is_number(value) or not 0 <= value < math.inf:
        raise RecipeError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def number(name: str, value: Any) -> float:
    """A finite number, or text `float` reads as one (its range is checked where it is
    used)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise RecipeError(f"{name} must be a number, got {value!r}")
    return number


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise RecipeError(f"{name} must be true or false, got {value!r}")
    return value


def one_of(choices: tuple[str, ...]) -> Check:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise RecipeError(f"{name} must be one of {choices}, got {value!r}")
        return value

    return check


def required(hint: str) -> Check:
    """A path or name that must be given (`hint` says what it is)."""

    def check(name: str, value: Any) -> str:
        if value is None or not str(value).strip():
            raise RecipeError(f"{name} is not set ({hint})")
        return str(value)

    return check


def optional(check: Check) -> Check:
    """None, or what `check` accepts."""
    return lambda name, value: None if value is None else check(name, value)


def learning_rate(name: str, value: Any) -> float:
    """A number in (0, 1]."""
    if not number_in(0, 1)(name, value) > 0:
        raise RecipeError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def adam_betas(name: str, value: Any) -> tuple[float, float]:
    """[beta1, beta2], each in [0, 1)."""
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(is_number(v) and 0 <= v < 1 for v in value)
    ):
        raise RecipeError(f"{name} must be [beta1, beta2] in [0, 1), got {value!r}")
    return float(value[0]), float(value[1])


def evaluation_function(spec: str) -> Callable[..., Any]:
    """'package.module:function' -> the function (RecipeError when it cannot be imported)."""
    module, _, name = str(spec).partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise RecipeError(f"eval.call {spec!r} is not an importable 'module:function'") from None
    if not callable(function):
        raise RecipeError(f"eval.call {spec!r} is not callable")
    return function


def evaluation_call(name: str, spec: Any) -> str | None:
    """`eval.call`: null, or a function callable as function(pipeline, limit=N)."""
    if not spec:
        return None
    function = evaluation_function(spec)
    try:
        inspect.signature(function).bind(None, limit=1)
    except TypeError:
        raise RecipeError(
            f"{name} {spec!r} cannot be called as function(pipeline, limit=N)"
        ) from None
    except ValueError:  # a builtin without a signature: not an evaluation function
        raise RecipeError(f"{name} {spec!r} is not a Python function") from None
    return str(spec)


def non_empty(name: str, value: Any) -> str:
    if not str(value or "").strip():
        raise RecipeError(f"{name} is empty")
    return str(value)


# -- sections ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    """One section of a recipe; `SECTION` is its name in the YAML."""

    SECTION: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for item in fields(self):
            check = self._check_of(item.name)
            if check is not None:
                value = check(f"{self.SECTION}.{item.name}", getattr(self, item.name))
                object.__setattr__(self, item.name, value)
        self.check()

    @classmethod
    def _check_of(cls, name: str) -> Check | None:
        """The field's check, from the class that declared it (a subclass may redeclare a
        field to change its default)."""
        for klass in cls.__mro__:
            declared = getattr(klass, "__dataclass_fields__", {}).get(name)
            if declared is not None and "check" in declared.metadata:
                return declared.metadata["check"]
        return None

    def check(self) -> None:
        """Checks across the section's keys, after each key's own."""

    @classmethod
    def refuse_unknown(cls, values: Any) -> None:
        """RecipeError, as `recipe.merge` words it, unless `values` is a mapping of the
        section's keys."""
        if not isinstance(values, Mapping):
            raise RecipeError(f"recipe key {cls.SECTION!r} must be a mapping")
        known = cls.defaults()
        for key in values:
            if key not in known:
                raise RecipeError(f"unknown recipe key '{cls.SECTION}.{key}'")

    @classmethod
    def from_mapping(cls: type[S], values: Mapping[str, Any]) -> S:
        """The section from its keys (missing ones take their defaults), each checked."""
        cls.refuse_unknown(values)
        return cls(**values)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The section's keys and defaults, as a recipe file would write them."""
        out = {}
        for item in fields(cls):
            default = item.default_factory() if item.default is MISSING else item.default
            out[item.name] = plain(default)
        return out

    def to_mapping(self) -> dict[str, Any]:
        """The section as a recipe file would write it (what a checkpoint records)."""
        return {item.name: plain(getattr(self, item.name)) for item in fields(self)}


def plain(value: Any) -> Any:
    """Tuples as lists, mappings as dicts: the YAML form."""
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class TrainSettings(Section):
    """The `train` keys every recipe has: steps, the learning rate and its warmup-cosine
    schedule, AdamW, clipping, the seed and CPU threads (SFT's defaults). Each recipe's
    subclass adds its keys; ParaRL's gives its own defaults."""

    SECTION: ClassVar[str] = "train"

    steps: int = setting(1000, whole(1))
    lr: float = setting(3e-4, learning_rate)
    min_lr_ratio: float = setting(0.1, number_in(0, 1))
    warmup_steps: int = setting(100, whole(0))
    weight_decay: float = setting(0.01, number_in(0, 1))  # on matrices only (loop.adamw)
    betas: tuple[float, float] = setting((0.9, 0.95), adam_betas)
    grad_clip: float = setting(1.0, number_in(0, 1e6))  # 0: no clipping
    seed: int = setting(0, whole(0))
    threads: int | None = setting(None, optional(whole(1)))  # torch.set_num_threads


@dataclass(frozen=True)
class EvalSettings(Section):
    """`call`: "module:function" called as function(pipeline, limit=limit) -> dict (held-out
    scores, e.g. paradiff.shapes.probe's training_evaluation or development_evaluation), logged
    as {"step", "eval"} every `every` steps (0: never) and at the end."""

    SECTION: ClassVar[str] = "eval"

    call: str | None = setting(None, evaluation_call)
    every: int = setting(0, whole(0))
    limit: int = setting(60, whole(1))

    @property
    def function(self) -> Callable[..., Any] | None:
        return evaluation_function(self.call) if self.call else None


@dataclass(frozen=True)
class OutputSettings(Section):
    """The run folder (`paradiff.training.runs`), its checkpoints and its log (SFT's defaults;
    ParaRL's in its subclass)."""

    SECTION: ClassVar[str] = "output"

    dir: str = setting("runs/sft", non_empty)
    save_every: int = setting(500, whole(1))
    log_every: int = setting(10, whole(1))
    keep: int = setting(2, whole(1))  # checkpoints kept besides the final one
    # tensorboard: the log's numbers to TensorBoard too
    log_with: str | None = setting(None, lambda name, value: check_log_with(value))


# -- recipes -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecipeSettings:
    """A whole recipe: one field per section, each a `Section` subclass, in the order a recipe
    file lists them; every recipe has `train` (a `TrainSettings`), `eval` and `output`."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Checks across sections, after every section's own."""

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        hints = get_type_hints(cls)
        return {item.name: hints[item.name] for item in fields(cls)}

    @classmethod
    def defaults(cls) -> dict[str, dict[str, Any]]:
        """The recipe's keys and defaults (what `recipe.load_recipe` merges a file over)."""
        return {name: section.defaults() for name, section in cls.sections().items()}

    @classmethod
    def from_config(cls: type[R], config: Mapping[str, Any]) -> R:
        """The settings of a merged recipe (`recipe.load_recipe`), every value checked."""
        sections = cls.sections()
        for name in config:
            if name not in sections:
                raise RecipeError(f"unknown recipe key {name!r}")
        for name, section in sections.items():  # every key known before any value is checked
            section.refuse_unknown(config.get(name, {}))
        return cls(
            **{
                name: section.from_mapping(config.get(name, {}))
                for name, section in sections.items()
            }
        )

    @classmethod
    def of(cls: type[R], recipe: R | Mapping[str, Any]) -> R:
        """`recipe` itself, or the settings of a merged recipe dict."""
        return recipe if isinstance(recipe, cls) else cls.from_config(recipe)

    @classmethod
    def load(cls: type[R], path: str | os.PathLike | None, overrides: list[str]) -> R:
        """A recipe file (None: the defaults) with `key=value` overrides, checked."""
        return cls.from_config(load_recipe(path, overrides, cls.defaults()))

    def to_config(self) -> dict[str, dict[str, Any]]:
        """The recipe as a merged dict (what a checkpoint and the tracker record)."""
        return {item.name: getattr(self, item.name).to_mapping() for item in fields(self)}


def recorded(config: Mapping[str, Any], name: str) -> Any:
    """The value of dotted `name` in a recorded recipe (a checkpoint's), None where absent."""
    value: Any = config
    for part in name.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value
