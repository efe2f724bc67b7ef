"""The image-tokenizer protocol and the image preprocessing every tokenizer shares."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image


@runtime_checkable
class ImageTokenizer(Protocol):
    """Maps images to grids of discrete codes and back.

    `encode` takes a float tensor (B, 3, H, W) in [0, 1] with H and W multiples of `downsample`
    and returns codes (B, H // downsample, W // downsample) in [0, codebook_size).
    `decode` takes such codes and returns images (B, 3, H, W) in [0, 1].
    """

    downsample: int
    codebook_size: int

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...


class ImageInputError(ValueError):
    """An input image that cannot be used (unreadable, too large, too elongated)."""


def load_image(source: str | Image.Image) -> Image.Image:
    """Open an image from a path (or take a PIL image) and convert it to RGB.

    RGBA and LA images are composited on white; P, L, CMYK … are converted.
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        try:
            image = Image.open(source)
            image.load()
        except (OSError, ValueError) as err:
            raise ImageInputError(f"cannot read image {source!s}: {err}") from None
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def target_size(
    width: int,
    height: int,
    multiple: int = 16,
    max_side: int = 1024,
    max_aspect: float = 4.0,
) -> tuple[int, int]:
    """The (width, height) an image of this size is cropped and resized to.

    Both sides are rounded to the nearest multiple of `multiple` (at least one multiple), after
    scaling down so that the longer side is at most `max_side`. Raises ImageInputError for an
    aspect ratio beyond `max_aspect`.
    """
    if width < 1 or height < 1:
        raise ImageInputError(f"image has an empty side: {width}x{height}")
    aspect = max(width, height) / min(width, height)
    if aspect > max_aspect:
        raise ImageInputError(
            f"image aspect ratio {aspect:.2f} exceeds the limit {max_aspect:g} ({width}x{height})"
        )
    scale = min(1.0, max_side / max(width, height))

    def snap(side: int) -> int:
        return max(multiple, int(round(side * scale / multiple)) * multiple)

    return snap(width), snap(height)


def resize_center_crop(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale `image` to cover (width, height) and crop the centre: deterministic."""
    scale = max(width / image.width, height / image.height)
    new_w = max(width, round(image.width * scale))
    new_h = max(height, round(image.height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left = (new_w - width) // 2
    top = (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def preprocess(
    source: str | Image.Image,
    size: tuple[int, int] | None = None,
    multiple: int = 16,
    max_side: int = 1024,
    max_aspect: float = 4.0,
) -> torch.Tensor:
    """Image (path or PIL) -> float tensor (3, H, W) in [0, 1] with sides multiples of `multiple`.

    `size` = (width, height) forces the output size; otherwise the nearest allowed size is used.
    """
    image = load_image(source)
    if size is None:
        width, height = target_size(image.width, image.height, multiple, max_side, max_aspect)
    else:
        width, height = size
        if width % multiple or height % multiple:
            raise ImageInputError(f"size {width}x{height} is not a multiple of {multiple}")
    if (image.width, image.height) != (width, height):
        image = resize_center_crop(image, width, height)
    array = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Float images (B, 3, H, W) in [0, 1] -> PIL RGB images."""
    array = (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]
