"""Find, load and save the image tokenizer that ships inside a checkpoint directory.

- `vqvae/` with a shapes `tokenizer_config.json`: the shapes world's quadrant codebook (family S);
- `vqvae/` with a diffusers `config.json`: aMUSEd's VQModel (family A);
- `magvit2/` with `model.safetensors`: MAGVIT-v2 (family M).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from paradiff.image_tokenizers.base import ImageTokenizer

VQVAE_DIR = "vqvae"
MAGVIT2_DIR = "magvit2"


class ImageTokenizerNotFound(ValueError):
    """A checkpoint directory with no image tokenizer paradiff recognises."""


def load_image_tokenizer(
    checkpoint_dir: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> ImageTokenizer:
    vqvae = checkpoint_dir / VQVAE_DIR
    from paradiff.image_tokenizers.shapes import CONFIG_FILE, TOKENIZER_CLASS

    shapes_config = vqvae / CONFIG_FILE
    if shapes_config.is_file():
        if json.loads(shapes_config.read_text()).get("tokenizer_class") == TOKENIZER_CLASS:
            from paradiff.image_tokenizers.shapes import ShapesImageTokenizer

            return ShapesImageTokenizer.from_dir(vqvae)
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
        f"(aMUSEd VQ or shapes codebook) or {MAGVIT2_DIR}/model.safetensors (MAGVIT-v2)"
    )


def save_image_tokenizer(tokenizer: ImageTokenizer, checkpoint_dir: Path) -> None:
    """Write `tokenizer` where `load_image_tokenizer` finds it."""
    from paradiff.image_tokenizers.shapes import ShapesImageTokenizer

    if isinstance(tokenizer, ShapesImageTokenizer):  # before importing diffusers (seconds)
        tokenizer.save(checkpoint_dir / VQVAE_DIR)
        return
    from paradiff.image_tokenizers.amused import AmusedTokenizer
    from paradiff.image_tokenizers.magvit2 import Magvit2Tokenizer

    if isinstance(tokenizer, AmusedTokenizer):
        tokenizer.vq_model.save_pretrained(checkpoint_dir / VQVAE_DIR)
    elif isinstance(tokenizer, Magvit2Tokenizer):
        tokenizer.save_pretrained(checkpoint_dir / MAGVIT2_DIR)
    else:
        raise TypeError(f"cannot save an image tokenizer of type {type(tokenizer).__name__}")
