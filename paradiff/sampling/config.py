"""SamplerConfig: every knob of the parallel sampler, validated in one place."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any


class SamplerConfigError(ValueError):
    """A sampler setting out of range."""


# The allowed values of the settings that take one of a few names.
SETTING_CHOICES: dict[str, tuple[str, ...]] = {
    "remasking": ("low_confidence", "random"),
    "mode": ("parallel", "sequential"),
    "profile": ("default", "reference"),
    "speed": ("exact", "fast", "fastest"),
    "image_recompute": ("all", "active"),
    "uncond_recompute": ("all", "guided"),
    "image_order": ("confidence", "halton"),
}

# The range of every numeric setting (checked with its type before anything is sampled; the
# pipeline also bounds steps and lengths by the tokens a model's sequence holds).
MAX_STEPS = 4096  # text_steps, image_steps; cache_refresh, answer_refresh, guidance_reuse too
MAX_TEXT_LENGTH = 65536  # text_gen_length, text_block_length
MAX_BEST_OF = 16  # best_of: K candidates cost K sampler runs
MAX_TEMPERATURE = 100.0  # text_temperature, image_temperature
MAX_GUIDANCE = 100.0  # cfg_text, cfg_image (beyond it logits overflow)
MAX_SEED = 2**63 - 1  # seeds are 0 .. MAX_SEED
INT_RANGES: dict[str, tuple[int, int]] = {
    "text_steps": (1, MAX_STEPS),
    "image_steps": (1, MAX_STEPS),
    "text_gen_length": (1, MAX_TEXT_LENGTH),
    "text_block_length": (1, MAX_TEXT_LENGTH),
    "best_of": (1, MAX_BEST_OF),
    "cache_refresh": (0, MAX_STEPS),
    "answer_refresh": (0, MAX_STEPS),
    "guidance_reuse": (0, MAX_STEPS),
    "seed": (0, MAX_SEED),
}
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "text_temperature": (0.0, MAX_TEMPERATURE),
    "image_temperature": (0.0, MAX_TEMPERATURE),
    "cfg_text": (0.0, MAX_GUIDANCE),
    "cfg_image": (0.0, MAX_GUIDANCE),
}


def check_setting(name: str, value: Any) -> None:
    """Refuse a value of the wrong type (a bool is no number, a string no number nor bool) or
    out of its stated range, for one SamplerConfig field; SamplerConfigError names it."""
    if name in OPTIONAL_SETTINGS and value is None:
        return
    if name in INT_RANGES:
        low, high = INT_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise SamplerConfigError(f"{name} must be a whole number, got {value!r}")
        if value < 0 and name in ("cache_refresh", "answer_refresh", "guidance_reuse"):
            raise SamplerConfigError(f"{name} must be at least 1 (0 turns it off), got {value}")
        if value < low:
            raise SamplerConfigError(f"{name} must be at least {low}, got {value}")
        if value > high:
            raise SamplerConfigError(f"{name} must be at most {high}, got {value}")
    elif name in FLOAT_RANGES:
        low, high = FLOAT_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise SamplerConfigError(f"{name} must be a number, got {value!r}")
        if not (math.isfinite(value) and low <= value <= high):  # NaN fails both comparisons
            raise SamplerConfigError(
                f"{name} must be a finite non-negative number at most {high:g}, got {value}"
            )
    elif name == "text_threshold":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise SamplerConfigError(f"{name} must be a number in [0, 1], got {value!r}")
        if not 0 <= value <= 1:  # NaN fails both comparisons
            raise SamplerConfigError(
                f"text_threshold must be in [0, 1] (0 turns it off), got {value}"
            )
    elif name == "compile":
        if not isinstance(value, bool):
            raise SamplerConfigError(f"compile must be true or false, got {value!r}")
    elif name in SETTING_CHOICES:
        if not isinstance(value, str) or value not in SETTING_CHOICES[name]:
            raise SamplerConfigError(
                f"{name} must be one of {SETTING_CHOICES[name]}, got {value!r}"
            )


# The fast settings and their exact-mode values (each is approximate when on). A fast setting
# left unset (None) takes the speed preset's value, this one in exact mode; one that is set keeps
# its value under any preset, whatever the value (`SamplerConfig.resolved`).
EXACT_FAST_SETTINGS: dict[str, Any] = {
    "cache_refresh": 0,
    "answer_refresh": 0,
    "guidance_reuse": 0,
    "text_threshold": 0.0,
    "image_recompute": "all",
    "uncond_recompute": "all",
    "compile": False,
}

# The fast settings that act only between the full forwards of `cache_refresh`.
CACHE_STRATEGIES = ("answer_refresh", "image_recompute", "uncond_recompute")


# Command-line flag -> (SamplerConfig field, type, help), shared by the CLI, the benchmarks and
# the app's advanced settings. Names follow the upstream scripts.
SAMPLER_FLAGS: dict[str, tuple[str, type, str]] = {
    "--timesteps": ("image_steps", int, "image decoding steps (upstream `timesteps`)"),
    "--text-steps": ("text_steps", int, "text decoding steps"),
    "--text-gen-length": ("text_gen_length", int, "masked text tokens in the answer"),
    "--text-block-length": (
        "text_block_length",
        int,
        "semi-autoregressive text block size (must divide --text-gen-length)",
    ),
    "--cfg-scale": ("cfg_text", float, "text classifier-free guidance weight (0 = off)"),
    "--cfg-img": ("cfg_image", float, "image classifier-free guidance weight (0 = off)"),
    "--temperature": ("image_temperature", float, "image sampling temperature (0 = greedy)"),
    "--text-temperature": ("text_temperature", float, "text sampling temperature (0 = greedy)"),
    "--remasking": ("remasking", str, "text reveal order: low_confidence or random"),
    "--image-order": (
        "image_order",
        str,
        "image reveal order: confidence (MaskGIT) or halton (spread over the grid)",
    ),
    "--mode": ("mode", str, "parallel (one timeline) or sequential (text, then image)"),
    "--profile": ("profile", str, "default, or reference (upstream's rules step for step)"),
    "--seed": ("seed", int, "random seed (same seed, same output)"),
    "--best-of": (
        "best_of",
        int,
        "sample K answers per prompt (seeds seed..seed+K-1) and keep the one whose image the "
        "model finds likeliest given its reasoning (needs a temperature above 0; 1 = off)",
    ),
    "--speed": (
        "speed",
        str,
        "exact (default), fast or fastest: presets of the approximate settings below (each one "
        "given explicitly keeps its value) and of the steps (fastest: half the steps as set)",
    ),
    "--cache-refresh": (
        "cache_refresh",
        int,
        "approximate: a full forward every r steps, cached partial forwards between (0 = off)",
    ),
    "--answer-refresh": (
        "answer_refresh",
        int,
        "approximate, with a cache: every a-th step between full forwards recomputes the whole "
        "answer (text and output image) against the cached prefix (0 = off)",
    ),
    "--guidance-reuse": (
        "guidance_reuse",
        int,
        "approximate: unconditional rows every k-th guided step, their residual reused (0 = off)",
    ),
    "--text-threshold": (
        "text_threshold",
        float,
        "approximate: also reveal text tokens whose confidence is at least tau in (0, 1] (0 = off)",
    ),
    "--image-recompute": (
        "image_recompute",
        str,
        "approximate, with a cache: image steps compute every output-image position (all) or "
        "only those still masked or just revealed (active)",
    ),
    "--uncond-recompute": (
        "uncond_recompute",
        str,
        "approximate, with a cache: unconditional rows compute what the conditional rows do "
        "(all) or only the positions they guide (guided)",
    ),
}


def flag_table() -> str:
    """The flag <-> setting table: each command-line flag and the SamplerConfig field it sets
    (the name batch `settings`, `sampler_config.json` and Python use), for `--help`."""
    width = max(map(len, SAMPLER_FLAGS))
    rows = [f"  {flag:<{width}}  {field}" for flag, (field, _, _) in SAMPLER_FLAGS.items()]
    return "\n".join(["sampler flag -> setting (batch settings, sampler_config.json):", *rows])


# The settings whose empty value means something: no seed draws a random one, a fast setting
# left empty takes the speed preset's value.
OPTIONAL_SETTINGS: dict[str, str] = {
    "seed": "draws a random one",
    **dict.fromkeys(EXACT_FAST_SETTINGS, "takes the speed preset's (exact: off)"),
}


def unset_exact_values(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` (SamplerConfig fields) with every fast setting at its exact value unset, as the
    files written before fast settings could be unset meant it (a checkpoint's
    sampler_config.json, a run folder's run.json): the speed preset's value then ran."""
    return {
        k: None if k in EXACT_FAST_SETTINGS and v == EXACT_FAST_SETTINGS[k] else v
        for k, v in settings.items()
    }


@dataclass(frozen=True)
class SamplerConfig:
    """Settings of one sampling run (defaults: the upstream README's recommended settings).

    text_steps / image_steps: steps each modality decodes over; the shared timeline has
        max(text_steps, image_steps) steps in parallel mode, their sum in sequential mode.
    text_gen_length: masked text tokens in the answer; text_block_length: semi-autoregressive
        block size (must divide text_gen_length).
    text_temperature / image_temperature: 0 is greedy; the image temperature also scales the
        Gumbel noise on MaskGIT confidences, annealed by (1 - progress).
    cfg_text / cfg_image: guidance weight w in  l = l_u + (1 + w)(l_c - l_u); 0 turns it off.
    remasking: 'low_confidence' reveals the most confident text tokens, 'random' random ones.
    image_order: which masked image positions a step reveals, as many as the schedule says: the
        most confident ('confidence', MaskGIT), or the next ones of a 2-D Halton sequence over the
        code grid ('halton': spread out whatever the confidences; the Halton scheduler).
    mode: 'parallel' (one shared timeline) or 'sequential' (all text, then the image).
    profile: 'default' or 'reference' (upstream generate_ti2ti's rules, step for step).
    best_of K: sample every prompt K times (candidate k with seed + k) and keep the answer whose
        output image the model scores likeliest given its own reasoning (`sampling.best_of`);
        1 is off. Needs a temperature above 0 (greedy candidates would all be the same).
    speed: 'exact' (these settings as they are), 'fast' or 'fastest': presets of the settings
        below and of fewer steps, applied by `resolved()` (see `SPEED_PRESETS`): the fast
        settings left unset (None) take the preset's values, those set keep theirs; the preset's
        step fraction scales text_steps and image_steps as set.
    The fast settings (default profile only; unset: the preset's value, off in exact mode):
    cache_refresh r: a full forward every r steps; the steps between compute only the open text
        block and the output image against cached keys/values of the rest (0: full every step).
    answer_refresh a (with cache_refresh): every a-th step between the full forwards (step s
        with s mod r a multiple of a) computes every answer position (the text and the output
        image) against the cached prefix, refreshing their keys/values (0: off).
    guidance_reuse k: the unconditional rows run on every k-th guided step only; between, the
        guidance residual h_c - h_u of the last one is reused (0: every guided step).
    text_threshold tau in (0, 1]: a text step reveals, beyond its scheduled count, every masked
        token of the open block whose confidence is at least tau (0: off).
    image_recompute (with cache_refresh): 'all' output-image positions on an image step between
        full forwards, or only the 'active' ones: still masked, or revealed by the previous image
        step (their cached keys/values are still the mask token's).
    uncond_recompute (with cache_refresh): the unconditional rows' partial forwards compute
        'all' the conditional rows' positions, or only those of the modalities they 'guided'.
    compile: run the forward through torch.compile (CUDA only; ignored elsewhere).
    """

    text_steps: int = 128
    image_steps: int = 64
    text_gen_length: int = 256
    text_block_length: int = 32
    text_temperature: float = 0.0
    image_temperature: float = 1.0
    cfg_text: float = 0.0
    cfg_image: float = 4.0
    remasking: str = "low_confidence"
    image_order: str = "confidence"
    mode: str = "parallel"
    profile: str = "default"
    seed: int | None = 42
    best_of: int = 1
    speed: str = "exact"
    cache_refresh: int | None = None
    answer_refresh: int | None = None
    guidance_reuse: int | None = None
    text_threshold: float | None = None
    image_recompute: str | None = None
    uncond_recompute: str | None = None
    compile: bool | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every setting's type and range, then the settings that need one another (checked on
        the settings that run: `resolved()`, the speed preset's included)."""
        for field in dataclasses.fields(self):
            check_setting(field.name, getattr(self, field.name))
        if self.profile == "default" and self.text_gen_length % self.text_block_length:
            raise SamplerConfigError(
                f"text_block_length {self.text_block_length} does not divide "
                f"text_gen_length {self.text_gen_length}"
            )
        if self.profile == "default" and self.text_steps < self.n_blocks:
            raise SamplerConfigError(
                f"text_steps {self.text_steps} is fewer than the {self.n_blocks} text blocks"
            )
        for name in ("text_temperature", "image_temperature", "cfg_text", "cfg_image"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):  # NaN fails both comparisons
                raise SamplerConfigError(
                    f"{name} must be a finite non-negative number, got {getattr(self, name)}"
                )
        if int(self.best_of) < 1:
            raise SamplerConfigError(f"best_of must be at least 1, got {self.best_of}")
        if self.best_of > 1 and not (self.text_temperature > 0 or self.image_temperature > 0):
            raise SamplerConfigError(
                f"best_of {self.best_of} needs a text or image temperature above 0 "
                "(greedy candidates are all the same: set best_of to 1)"
            )
        if self.resolved() is self:  # (else the resolved settings checked themselves)
            self._validate_combinations()

    def _validate_combinations(self) -> None:
        """The settings that need one another, of resolved settings (every fast setting set)."""
        if self.text_threshold and self.remasking != "low_confidence":
            raise SamplerConfigError("text_threshold needs remasking 'low_confidence'")
        for name in CACHE_STRATEGIES:
            on = getattr(self, name) != EXACT_FAST_SETTINGS[name]
            if on and not self.cache_refresh:
                raise SamplerConfigError(
                    f"{name} {getattr(self, name)!r} needs cache_refresh (at least 1)"
                )
        if self.profile != "default" and self.image_order != "confidence":
            raise SamplerConfigError(f"image_order {self.image_order!r} needs the default profile")
        if self.profile != "default" and self.fast:
            raise SamplerConfigError(
                f"the fast settings and speed presets need the default profile, not {self.profile!r}"
            )

    @property
    def fast(self) -> bool:
        """Whether any fast setting runs on (the sampler then runs without host syncs)."""
        resolved = self.resolved()
        return any(getattr(resolved, k) != v for k, v in EXACT_FAST_SETTINGS.items())

    def resolved(self) -> SamplerConfig:
        """The settings the sampler runs, speed 'exact' (nothing left to apply). A fast setting
        that is set keeps its value, whatever it is; one left unset takes the speed preset's
        value (its exact value in exact mode, and for the cache strategies when cache_refresh is
        0: they act on a cache only). The preset's step fraction scales the steps as set (at
        least one text step per block)."""
        preset = {**EXACT_FAST_SETTINGS, **SPEED_PRESETS.get(self.speed, {})}
        changes = {k: preset[k] for k in EXACT_FAST_SETTINGS if getattr(self, k) is None}
        if not changes.get("cache_refresh", self.cache_refresh):
            changes.update({k: EXACT_FAST_SETTINGS[k] for k in CACHE_STRATEGIES if k in changes})
        if self.speed == "exact":
            return self.replace(**changes) if changes else self
        fraction = preset["step_fraction"]
        changes["text_steps"] = max(self.n_blocks, round(self.text_steps * fraction))
        changes["image_steps"] = max(1, round(self.image_steps * fraction))
        return self.replace(speed="exact", **changes)

    @property
    def n_blocks(self) -> int:
        return max(1, self.text_gen_length // self.text_block_length)

    def replace(self, **changes: Any) -> SamplerConfig:
        """A copy with `changes` applied (unknown names are an error)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise SamplerConfigError(f"unknown sampler setting {unknown[0]!r}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SamplerConfig:
        return cls().replace(**raw)


# The speed presets: a fraction of the steps of each modality, and fast settings (measured in
# docs/speed.md: `fast` keeps every step and caches, within about a point of exact mode on
# ShapeBench; `fastest` also halves the steps and trades quality for speed).
SPEED_PRESETS: dict[str, dict[str, Any]] = {
    "fast": {  # r 2: the only interval within about a point of exact mode on the shipped
        # model (docs/speed.md; r 4 lost 3.6 points of text alignment)
        "step_fraction": 1.0,
        "cache_refresh": 2,
        "image_recompute": "active",
        "uncond_recompute": "guided",
    },
    "fastest": {
        "step_fraction": 0.5,
        "cache_refresh": 8,
        "image_recompute": "active",
        "uncond_recompute": "guided",
        "guidance_reuse": 2,
        "text_threshold": 0.9,
    },
}
