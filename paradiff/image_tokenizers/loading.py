"""Find, load and save the image tokenizer that ships inside a checkpoint directory.

Every image tokenizer is a registered `TokenizerKind`, the built-ins too:
- `vqvae/` with a `tokenizer_config.json` whose `tokenizer_class` is a registered one: that
  tokenizer (the shapes world's quadrant codebook registers itself this way, family S);
- `vqvae/` with a diffusers `config.json`: aMUSEd's VQModel (family A, built in);
- `magvit2/` with `model.safetensors`: MAGVIT-v2 (family M, built in).

Kinds come from the built-ins, `register_image_tokenizer` and the `paradiff.image_tokenizers`
entry points of installed packages (`paradiff.registry`; paradiff's own pyproject.toml declares
the shapes world's), so this module names no tokenizer it does not ship.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from paradiff.files import FileInputError, read_json_object
from paradiff.image_tokenizers.base import ImageTokenizer
from paradiff.registry import Registry

VQVAE_DIR = "vqvae"
MAGVIT2_DIR = "magvit2"
CONFIG_FILE = "tokenizer_config.json"  # a registered tokenizer's config in vqvae/
ENTRY_POINTS = "paradiff.image_tokenizers"


class ImageTokenizerNotFound(ValueError):
    """A checkpoint directory with no image tokenizer paradiff recognises."""


@dataclass(frozen=True)
class TokenizerKind:
    """An image tokenizer a checkpoint may carry in its `folder`: `load(folder_path, device,
    dtype)` reads one, `save(tokenizer, folder_path)` writes an instance of `type` there.

    A checkpoint holds this kind when its `folder` has the `marker` file, or without a marker
    when `vqvae/tokenizer_config.json` names `tokenizer_class`. `type` may be 'module:Class',
    imported only when needed (aMUSEd's needs diffusers, seconds to import)."""

    tokenizer_class: str
    type: type | str
    load: Callable[[Path, torch.device | str, torch.dtype], ImageTokenizer]
    save: Callable[[ImageTokenizer, Path], None]
    folder: str = VQVAE_DIR
    marker: str | None = None

    def holds(self, tokenizer: ImageTokenizer) -> bool:
        """Whether `tokenizer` is of this kind (a class never imported has no instances)."""
        cls = self.type
        if isinstance(cls, str):
            module, name = cls.split(":")
            if module not in sys.modules:
                return False
            cls = getattr(sys.modules[module], name)
        return isinstance(tokenizer, cls)


def _load_amused(folder: Path, device, dtype) -> ImageTokenizer:
    from paradiff.image_tokenizers.amused import AmusedTokenizer

    return AmusedTokenizer.from_pretrained(folder, device=device, dtype=dtype)


def _load_magvit2(folder: Path, device, dtype) -> ImageTokenizer:
    from paradiff.image_tokenizers.magvit2 import Magvit2Tokenizer

    return Magvit2Tokenizer.from_pretrained(folder, device=device, dtype=dtype)


AMUSED = TokenizerKind(
    "AmusedTokenizer",
    "paradiff.image_tokenizers.amused:AmusedTokenizer",
    _load_amused,
    lambda tokenizer, folder: tokenizer.vq_model.save_pretrained(folder),
    marker="config.json",  # diffusers' VQModel config
)
MAGVIT2 = TokenizerKind(
    "Magvit2Tokenizer",
    "paradiff.image_tokenizers.magvit2:Magvit2Tokenizer",
    _load_magvit2,
    lambda tokenizer, folder: tokenizer.save_pretrained(folder),
    folder=MAGVIT2_DIR,
    marker="model.safetensors",
)
IMAGE_TOKENIZERS: Registry[TokenizerKind] = Registry(
    ENTRY_POINTS,
    {kind.tokenizer_class: kind for kind in (AMUSED, MAGVIT2)},
    key=lambda _name, kind: kind.tokenizer_class,
)


def register_image_tokenizer(kind: TokenizerKind) -> None:
    IMAGE_TOKENIZERS.register(kind.tokenizer_class, kind)


def registered_image_tokenizers() -> dict[str, TokenizerKind]:
    """The registered kinds by `tokenizer_class` (entry points read on first use)."""
    return IMAGE_TOKENIZERS.entries()


def load_image_tokenizer(
    checkpoint_dir: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> ImageTokenizer:
    kinds = registered_image_tokenizers()
    named = checkpoint_dir / VQVAE_DIR / CONFIG_FILE
    if named.is_file():
        try:
            name = read_json_object(named).get("tokenizer_class")
        except FileInputError as err:
            raise ImageTokenizerNotFound(str(err)) from None
        if name not in kinds:
            raise ImageTokenizerNotFound(
                f"{named} names tokenizer class {name!r}, which no installed package registers "
                f"(registered: {sorted(kinds)}; reinstall paradiff if it should be one of its own)"
            )
        return kinds[name].load(checkpoint_dir / kinds[name].folder, device, dtype)
    for kind in kinds.values():
        if kind.marker is not None and (checkpoint_dir / kind.folder / kind.marker).is_file():
            return kind.load(checkpoint_dir / kind.folder, device, dtype)
    raise ImageTokenizerNotFound(
        f"cannot tell the image tokenizer of {checkpoint_dir}: expected {VQVAE_DIR}/ "
        f"(aMUSEd VQ or a registered tokenizer's {CONFIG_FILE}) or "
        f"{MAGVIT2_DIR}/model.safetensors (MAGVIT-v2)"
    )


def save_image_tokenizer(tokenizer: ImageTokenizer, checkpoint_dir: Path) -> None:
    """Write `tokenizer` where `load_image_tokenizer` finds it."""
    for kind in registered_image_tokenizers().values():
        if kind.holds(tokenizer):
            kind.save(tokenizer, checkpoint_dir / kind.folder)
            return
    raise TypeError(f"cannot save an image tokenizer of type {type(tokenizer).__name__}")
