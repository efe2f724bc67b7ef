"""The image-tokenizer protocol and the image preprocessing every tokenizer shares."""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from paradiff.files import MAX_IMAGE_SIDE, ImageInputError, open_image


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


# How far outside [0, 1] pixels may stray (float rounding) before `check_image_batch` refuses them.
PIXEL_RANGE_SLACK = 1e-3
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE  # input images: MAX_IMAGE_SIDE a side


def check_image_batch(images: torch.Tensor, downsample: int) -> tuple[int, int]:
    """Validate float images (B, 3, H, W) in [0, 1]; returns the code grid (H, W) // downsample."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ImageInputError(f"expected images (B, 3, H, W), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ImageInputError(f"expected float pixels in [0, 1], got dtype {images.dtype}")
    if images.numel() and (
        images.min() < -PIXEL_RANGE_SLACK or images.max() > 1 + PIXEL_RANGE_SLACK
    ):
        raise ImageInputError(
            f"pixels span [{float(images.min()):.3f}, {float(images.max()):.3f}], "
            "expected [0, 1] (not [-1, 1] or [0, 255])"
        )
    height, width = images.shape[-2:]
    if height % downsample or width % downsample:
        raise ImageInputError(
            f"image size {height}x{width} (HxW) is not a multiple of the downsample factor "
            f"{downsample}"
        )
    return height // downsample, width // downsample


def check_codes(codes: torch.Tensor, codebook_size: int) -> None:
    """Validate a code grid (B, h, w) of integer codes in [0, codebook_size)."""
    if codes.dim() != 3:
        raise ImageInputError(f"expected codes (B, h, w), got shape {tuple(codes.shape)}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ImageInputError(f"codes must be an integer tensor, got {codes.dtype}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ImageInputError(
            f"codes span [{int(codes.min())}, {int(codes.max())}], outside the codebook "
            f"[0, {codebook_size})"
        )


def load_image(source: str | os.PathLike | Image.Image) -> Image.Image:
    """Open an image from a path (or take a PIL image) and convert it to RGB.

    The EXIF orientation is applied; RGBA and LA images are composited on white; 16-bit
    greyscale is scaled to 8 bits; P, L, CMYK … are converted.
    """
    if isinstance(source, Image.Image):
        image = source
    else:  # a regular file, its header's size checked before decoding (paradiff.files)
        image = open_image(source)
    if image.mode.startswith("I;16"):
        levels = np.asarray(image, dtype=np.float32) / 257.0  # 0..65535 -> 0..255
        image = Image.fromarray(levels.round().clip(0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
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

    The image is scaled down so that its longer side is at most `max_side`, then both sides are
    rounded to the nearest multiple of `multiple` (at least one multiple), never beyond `max_side`
    and never beyond an aspect ratio of `max_aspect`. Raises ImageInputError for an image whose
    own aspect ratio exceeds `max_aspect`.
    """
    if multiple < 1 or max_side < multiple or max_aspect < 1:
        raise ValueError(
            f"invalid size limits: multiple={multiple}, max_side={max_side}, "
            f"max_aspect={max_aspect:g}"
        )
    if width < 1 or height < 1:
        raise ImageInputError(f"image has an empty side: {width}x{height}")
    aspect = max(width, height) / min(width, height)
    if aspect > max_aspect:
        raise ImageInputError(
            f"image aspect ratio {aspect:.2f} exceeds the limit {max_aspect:g} ({width}x{height})"
        )
    scale = min(1.0, max_side / max(width, height))
    largest = max_side // multiple * multiple

    def snap(side: int) -> int:
        return min(largest, max(multiple, round(side * scale / multiple) * multiple))

    snapped_width, snapped_height = snap(width), snap(height)
    shorter = min(snapped_width, snapped_height)
    longest = max(shorter, int(max_aspect * shorter / multiple) * multiple)
    return min(snapped_width, longest), min(snapped_height, longest)


def check_size(
    width: int, height: int, multiple: int = 16, max_side: int = 1024, max_aspect: float = 4.0
) -> None:
    """Raise ImageInputError unless (width, height) is a size `target_size` could return."""
    if width < multiple or height < multiple or width % multiple or height % multiple:
        raise ImageInputError(f"size {width}x{height} is not a positive multiple of {multiple}")
    if max(width, height) > max_side:
        raise ImageInputError(f"size {width}x{height} exceeds the maximum side {max_side}")
    if max(width, height) / min(width, height) > max_aspect:
        raise ImageInputError(
            f"size {width}x{height} exceeds the aspect ratio limit {max_aspect:g}"
        )


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
    source: str | os.PathLike | Image.Image,
    size: tuple[int, int] | None = None,
    multiple: int = 16,
    max_side: int = 1024,
    max_aspect: float = 4.0,
) -> torch.Tensor:
    """Image (path or PIL) -> float tensor (3, H, W) in [0, 1] with sides multiples of `multiple`.

    `size` = (width, height) forces the output size (checked against the same limits); otherwise
    the nearest allowed size is used.
    """
    image = load_image(source)
    if size is None:
        width, height = target_size(image.width, image.height, multiple, max_side, max_aspect)
    else:
        width, height = size
        check_size(width, height, multiple, max_side, max_aspect)
    if (image.width, image.height) != (width, height):
        image = resize_center_crop(image, width, height)
    array = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Float images (B, 3, H, W) in [0, 1] -> PIL RGB images."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ImageInputError(f"expected images (B, 3, H, W), got shape {tuple(images.shape)}")
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3)
    return [Image.fromarray(a) for a in array]


def encode_image(
    tokenizer: ImageTokenizer, source, size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Image (path or PIL) -> its code grid (h, w) on the CPU and the pixel size (H, W) it was
    encoded at (`size` = (width, height) forces one)."""
    pixels = preprocess(source, size=size, multiple=tokenizer.downsample)  # (3, H, W)
    device = tokenizer_device(tokenizer)
    codes = tokenizer.encode(pixels[None].to(device))[0].cpu()  # (h, w)
    return codes, tuple(pixels.shape[1:])


def tokenizer_device(tokenizer: ImageTokenizer) -> torch.device:
    """Where an image tokenizer's weights live (CPU for weightless ones)."""
    if hasattr(tokenizer, "device"):
        return torch.device(tokenizer.device)
    parameters = getattr(tokenizer, "parameters", None)
    first = next(iter(parameters()), None) if parameters else None
    return first.device if first is not None else torch.device("cpu")
