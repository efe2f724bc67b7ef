"""Find, load and save the image tokenizer that ships inside a checkpoint directory.

- `vqvae/` with a `tokenizer_config.json` whose `tokenizer_class` is a registered one: that
  tokenizer (the shapes world's quadrant codebook registers itself this way, family S);
- `vqvae/` with a diffusers `config.json`: aMUSEd's VQModel (family A);
- `magvit2/` with `model.safetensors`: MAGVIT-v2 (family M).

Registered tokenizers come from `register_image_tokenizer` and from the `paradiff.image_tokenizers`
entry points of installed packages (paradiff's own pyproject.toml declares the shapes world's),
so this module names no tokenizer it does not ship.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import torch

from paradiff.image_tokenizers.base import ImageTokenizer

VQVAE_DIR = "vqvae"
MAGVIT2_DIR = "magvit2"
CONFIG_FILE = "tokenizer_config.json"  # a registered tokenizer's config in vqvae/
ENTRY_POINTS = "paradiff.image_tokenizers"


class ImageTokenizerNotFound(ValueError):
    """A checkpoint directory with no image tokenizer paradiff recognises."""


@dataclass(frozen=True)
class TokenizerKind:
    """A registered image tokenizer: `vqvae/tokenizer_config.json` names `tokenizer_class`;
    `load(folder)` reads one from a vqvae folder, `save(tokenizer, folder)` writes instances of
    `type` there."""

    tokenizer_class: str
    type: type
    load: Callable[[Path], ImageTokenizer]
    save: Callable[[ImageTokenizer, Path], None]


_KINDS: dict[str, TokenizerKind] = {}
_loaded_entry_points = False


def register_image_tokenizer(kind: TokenizerKind) -> None:
    _KINDS[kind.tokenizer_class] = kind


def registered_image_tokenizers() -> dict[str, TokenizerKind]:
    """The registered kinds by `tokenizer_class` (entry points read on first use)."""
    global _loaded_entry_points
    if not _loaded_entry_points:
        _loaded_entry_points = True
        for point in entry_points(group=ENTRY_POINTS):
            register_image_tokenizer(point.load())
    return _KINDS


def load_image_tokenizer(
    checkpoint_dir: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> ImageTokenizer:
    vqvae = checkpoint_dir / VQVAE_DIR
    if (vqvae / CONFIG_FILE).is_file():
        name = json.loads((vqvae / CONFIG_FILE).read_text()).get("tokenizer_class")
        kind = registered_image_tokenizers().get(name)
        if kind is None:
            raise ImageTokenizerNotFound(
                f"{vqvae / CONFIG_FILE} names tokenizer class {name!r}, which no installed "
                f"package registers (registered: {sorted(registered_image_tokenizers())}; "
                "reinstall paradiff if it should be one of its own)"
            )
        return kind.load(vqvae)
    if (vqvae / "config.json").is_file():
        from paradiff.image_tokenizers.amused import AmusedTokenizer

        return AmusedTokenizer.from_pretrained(vqvae, device=device, dtype=dtype)
    if (checkpoint_dir / MAGVIT2_DIR / "model.safetensors").is_file():
        from paradiff.image_tokenizers.magvit2 import Magvit2Tokenizer

        return Magvit2Tokenizer.from_pretrained(
            checkpoint_dir / MAGVIT2_DIR, device=device, dtype=dtype
        )
    raise ImageTokenizerNotFound(
        f"cannot tell the image tokenizer of {checkpoint_dir}: expected {VQVAE_DIR}/ "
        f"(aMUSEd VQ or a registered tokenizer's {CONFIG_FILE}) or "
        f"{MAGVIT2_DIR}/model.safetensors (MAGVIT-v2)"
    )


def save_image_tokenizer(tokenizer: ImageTokenizer, checkpoint_dir: Path) -> None:
    """Write `tokenizer` where `load_image_tokenizer` finds it."""
    for kind in registered_image_tokenizers().values():  # before importing diffusers (seconds)
        if isinstance(tokenizer, kind.type):
            kind.save(tokenizer, checkpoint_dir / VQVAE_DIR)
            return
    from paradiff.image_tokenizers.amused import AmusedTokenizer
    from paradiff.image_tokenizers.magvit2 import Magvit2Tokenizer

    if isinstance(tokenizer, AmusedTokenizer):
        tokenizer.vq_model.save_pretrained(checkpoint_dir / VQVAE_DIR)
    elif isinstance(tokenizer, Magvit2Tokenizer):
        tokenizer.save_pretrained(checkpoint_dir / MAGVIT2_DIR)
    else:
        raise TypeError(f"cannot save an image tokenizer of type {type(tokenizer).__name__}")
