"""Shared image preprocessing: colour modes, target sizes, limits, unreadable files, to_pil."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from paradiff.image_tokenizers.base import (
    ImageInputError,
    load_image,
    preprocess,
    resize_center_crop,
    target_size,
    to_pil,
)


def gradient_image(width: int, height: int) -> Image.Image:
    """A deterministic RGB test picture with structure in both directions."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, (x + y) / 2], axis=-1).astype(np.uint8))


def assert_one_line(error: pytest.ExceptionInfo) -> None:
    assert str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "1", "I", "F", "YCbCr"])
def test_every_colour_mode_becomes_rgb(mode):
    source = gradient_image(50, 30).convert(mode)
    image = load_image(source)
    assert image.mode == "RGB" and image.size == (50, 30)
    pixels = preprocess(source)
    assert pixels.shape == (3, 32, 48) and pixels.dtype == torch.float32
    assert 0 <= float(pixels.min()) and float(pixels.max()) <= 1


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))  # fully transparent red
    rgba.paste((0, 0, 255, 255), (0, 0, 8, 16))  # opaque blue left half
    array = np.asarray(load_image(rgba))
    assert (array[:, :8] == (0, 0, 255)).all() and (array[:, 8:] == 255).all()
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    palette.info["transparency"] = 1
    assert (np.asarray(load_image(palette)) == 255).all()


def test_sixteen_bit_greyscale_keeps_its_levels(tmp_path):
    levels = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16).repeat(4, 0)
    path = tmp_path / "grey16.png"
    Image.fromarray(levels).save(path)
    array = np.asarray(load_image(path))
    assert (array[0, :, 0] == [0, 64, 128, 255]).all()


def test_exif_orientation_is_applied(tmp_path):
    source = gradient_image(32, 16)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    source.save(path, exif=exif)
    assert load_image(path).size == (16, 32)


def test_paths_and_images_give_identical_tensors(tmp_path):
    source = gradient_image(70, 45)
    path = tmp_path / "picture.png"
    source.save(path)
    first = preprocess(path)
    assert torch.equal(first, preprocess(str(path)))
    assert torch.equal(first, preprocess(source))
    assert first.shape == (3, 48, 64)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((16, 16), (16, 16)),
        ((37, 53), (32, 48)),
        ((5, 9), (16, 16)),
        ((2000, 1000), (1024, 512)),
        ((1024, 256), (1024, 256)),
        ((300, 225), (304, 224)),
    ],
)
def test_target_size_examples(size, expected):
    assert target_size(*size) == expected


def test_target_size_stays_within_limits_after_rounding():
    assert target_size(1100, 700, max_side=1020) == (1008, 656)  # 1020 would round up to 1024
    width, height = target_size(160, 40)  # 40 rounds down to 32, 160 stays: 5:1 before clamping
    assert (width, height) == (128, 32)


def test_aspect_ratio_beyond_the_limit_raises():
    with pytest.raises(ImageInputError, match="aspect ratio 5.00 exceeds the limit 4") as info:
        target_size(500, 100)
    assert_one_line(info)
    with pytest.raises(ImageInputError, match="aspect ratio"):
        preprocess(gradient_image(20, 100))
    assert target_size(500, 100, max_aspect=5) == (480, 96)  # 496x96 would be 5.17:1


def test_forced_sizes_are_checked_against_the_limits():
    source = gradient_image(64, 64)
    assert preprocess(source, size=(48, 32)).shape == (3, 32, 48)
    cases = [
        ((40, 32), "not a positive multiple of 16"),
        ((0, 32), "not a positive multiple of 16"),
        ((2048, 1024), "exceeds the maximum side 1024"),
        ((320, 64), "exceeds the aspect ratio limit 4"),
    ]
    for size, message in cases:
        with pytest.raises(ImageInputError, match=message) as info:
            preprocess(source, size=size)
        assert_one_line(info)


def test_invalid_limits_are_refused():
    with pytest.raises(ValueError, match="invalid size limits"):
        target_size(64, 64, multiple=16, max_side=8)
    with pytest.raises(ValueError, match="invalid size limits"):
        target_size(64, 64, max_aspect=0.5)


def test_unreadable_files_raise_image_input_errors(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"definitely not an image" * 10)
    buffer = io.BytesIO()
    gradient_image(64, 64).save(buffer, format="PNG")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    for path in (garbage, truncated, tmp_path / "missing.png", tmp_path):
        with pytest.raises(ImageInputError, match="cannot read image") as info:
            preprocess(path)
        assert_one_line(info)


def test_centre_crop_keeps_the_middle():
    wide = Image.new("RGB", (96, 32), (255, 0, 0))
    wide.paste((0, 255, 0), (32, 0, 64, 32))  # green middle third
    cropped = resize_center_crop(wide, 32, 32)
    assert cropped.size == (32, 32)
    assert (np.asarray(cropped) == (0, 255, 0)).all()


def test_preprocess_is_deterministic_and_to_pil_inverts_it():
    source = gradient_image(123, 77)
    pixels = preprocess(source)
    assert torch.equal(pixels, preprocess(source))
    (back,) = to_pil(pixels[None])
    assert back.size == (128, 80)
    assert torch.equal(preprocess(back), pixels)  # 8-bit values survive the round trip


def test_to_pil_clamps_and_checks_shape():
    images = torch.tensor([-0.5, 0.5, 1.5]).reshape(1, 3, 1, 1).repeat(2, 1, 2, 2)
    pictures = to_pil(images.to(torch.bfloat16).requires_grad_())
    assert len(pictures) == 2 and np.asarray(pictures[1])[0, 0].tolist() == [0, 128, 255]
    with pytest.raises(ImageInputError, match=r"expected images \(B, 3, H, W\)"):
        to_pil(images[0])


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 6000),
    height=st.integers(1, 6000),
    multiple=st.sampled_from([8, 16, 32]),
    max_side=st.integers(32, 2048),
    max_aspect=st.floats(1.0, 6.0),
)
def test_target_size_returns_multiples_within_the_limits(
    width, height, multiple, max_side, max_aspect
):
    if max(width, height) / min(width, height) > max_aspect:
        with pytest.raises(ImageInputError):
            target_size(width, height, multiple, max_side, max_aspect)
        return
    out_width, out_height = target_size(width, height, multiple, max_side, max_aspect)
    for side in (out_width, out_height):
        assert side % multiple == 0 and multiple <= side <= max_side
    assert max(out_width, out_height) / min(out_width, out_height) <= max_aspect
    if (width >= height) != (out_width >= out_height):  # orientation kept, up to rounding ties
        assert abs(out_width - out_height) <= multiple
