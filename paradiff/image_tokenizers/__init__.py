"""Image tokenizers: images <-> grids of discrete codes."""

from paradiff.image_tokenizers.base import (
    ImageInputError,
    ImageTokenizer,
    load_image,
    preprocess,
    to_pil,
)

__all__ = ["ImageInputError", "ImageTokenizer", "load_image", "preprocess", "to_pil"]
