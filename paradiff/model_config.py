"""Model configuration: the LLaDA `config.json` keys paradiff reads, and size presets."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


class ConfigError(ValueError):
    """A config.json that paradiff cannot build a model from."""


_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "half": torch.float16,
}


def parse_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    """'bfloat16' / 'torch.bfloat16' / torch.bfloat16 -> torch.bfloat16; None stays None."""
    if value is None or isinstance(value, torch.dtype):
        return value
    name = str(value).removeprefix("torch.")
    if name not in _DTYPES:
        raise ConfigError(f"unknown dtype {value!r} (expected one of {sorted(_DTYPES)})")
    return _DTYPES[name]


@dataclass
class ModelConfig:
    """The transformer's hyper-parameters, named as in LLaDA's config.json.

    `embedding_size` is the number of rows of the embedding and output head (text ids, special
    ids and image codes together); `extra` keeps every other config.json key so that a saved
    checkpoint writes back what it read.
    """

    d_model: int = 4096
    n_heads: int = 32
    n_kv_heads: int | None = None
    n_layers: int = 32
    mlp_hidden_size: int | None = 12288
    mlp_ratio: int = 4
    embedding_size: int = 126464
    max_sequence_length: int = 4096
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_full_precision: bool = True
    weight_tying: bool = False
    block_type: str = "llama"
    activation_type: str = "silu"
    layer_norm_type: str = "rms"
    model_type: str = "llada"
    # paradiff's optional image-grid positions: learned row and column tables (this many rows
    # each) added to the input embedding of every image-span token; 0 (the released models) = off
    image_grid_size: int = 0
    dtype: str = "bfloat16"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.block_type != "llama":
            raise ConfigError(f"unsupported block_type {self.block_type!r} (paradiff runs 'llama')")
        if self.activation_type not in ("silu", "swiglu"):
            raise ConfigError(
                f"unsupported activation_type {self.activation_type!r} (expected 'silu')"
            )
        if self.layer_norm_type != "rms":
            raise ConfigError(
                f"unsupported layer_norm_type {self.layer_norm_type!r} (expected 'rms')"
            )
        sizes = dict(
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            embedding_size=self.embedding_size,
            max_sequence_length=self.max_sequence_length,
            mlp_hidden_size=self.mlp_hidden_size or 1,
            n_kv_heads=self.n_kv_heads or 1,
        )
        for name, value in sizes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
        for name in ("rope_theta", "rms_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a finite number above 0, got {value!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ConfigError(
                f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.kv_heads}"
            )
        parse_dtype(self.dtype)
        if self.image_grid_size < 0:
            raise ConfigError(f"image_grid_size must be >= 0, got {self.image_grid_size}")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def hidden_size(self) -> int:
        """Width of the SwiGLU MLP."""
        return self.mlp_hidden_size or self.mlp_ratio * self.d_model

    @property
    def torch_dtype(self) -> torch.dtype:
        return parse_dtype(self.dtype)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        """Read a LLaDA (`model_type` 'llada') or MMaDA (`model_type` 'mmada') config dict.

        The weight dtype may be under `torch_dtype` (transformers 4.x) or `dtype` (5.x). The
        embedding rows come from `embedding_size`, else `new_vocab_size` (MMaDA), else `vocab_size`.
        """
        raw = dict(raw)
        for flag in ("alibi", "include_bias", "include_qkv_bias", "attention_layer_norm"):
            if raw.get(flag):
                raise ConfigError(f"unsupported config option {flag}=true")
        if raw.get("rope") is False:
            raise ConfigError("unsupported config option rope=false (paradiff uses RoPE)")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "embedding_size", "dtype"}
        kwargs = {name: raw.pop(name) for name in names if name in raw}
        embedding_size = (
            raw.get("embedding_size") or raw.get("new_vocab_size") or raw.get("vocab_size")
        )
        if embedding_size is None:
            raise ConfigError("config has none of embedding_size, new_vocab_size, vocab_size")
        raw.pop("embedding_size", None)
        dtype = raw.pop("dtype", None) or raw.pop("torch_dtype", None) or "float32"
        raw.pop("torch_dtype", None)
        return cls(**kwargs, embedding_size=int(embedding_size), dtype=str(dtype), extra=raw)

    def to_dict(self) -> dict[str, Any]:
        """The config.json dict (`dtype` written under both transformers spellings)."""
        out = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name != "extra":
                out[f.name] = getattr(self, f.name)
        if not self.image_grid_size:  # off: the released models' config.json, unchanged
            del out["image_grid_size"]
        out.setdefault("vocab_size", self.embedding_size)
        out["torch_dtype"] = self.dtype
        return out

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        try:
            raw = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from None
        return cls.from_dict(raw)


def tiny_config(embedding_size: int, **overrides: Any) -> ModelConfig:
    """A small config for tests and the CPU-sized bundled model."""
    values: dict[str, Any] = dict(
        d_model=64,
        n_heads=4,
        n_layers=2,
        mlp_hidden_size=128,
        max_sequence_length=1024,
        embedding_size=embedding_size,
        dtype="float32",
    )
    values.update(overrides)
    return ModelConfig(**values)
