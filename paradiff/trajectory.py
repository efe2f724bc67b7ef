"""Turning a sampling trajectory into text and pictures: partial reasoning with masks shown as ▒,
partial images with masked tokens grey, and the side-by-side GIF of both emerging together."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

MASK_CHAR = "▒"
MASK_GREY = 0.5


def partial_text(
    ids: Sequence[int], mask_id: int, decode: Callable[[list[int]], str], stop_ids: set[int]
) -> str:
    """Text of partially revealed ids: revealed runs decoded, each mask written as ▒.

    Decoding stops at the first id of `stop_ids` (end of the reasoning)."""
    pieces, run = [], []
    for token in ids:
        token = int(token)
        if token in stop_ids:
            break
        if token == mask_id:
            if run:
                pieces.append(decode(run))
                run = []
            pieces.append(MASK_CHAR)
        else:
            run.append(token)
    if run:
        pieces.append(decode(run))
    return "".join(pieces)


def grey_out(images: torch.Tensor, masked: torch.Tensor, patch: int) -> torch.Tensor:
    """Paint the (patch x patch) pixel block of every masked token grey.

    images (B, 3, H, W); masked (B, h, w) bool with H = h * patch."""
    blocks = masked.repeat_interleave(patch, 1).repeat_interleave(patch, 2)  # (B, H, W)
    return torch.where(blocks[:, None], torch.full_like(images, MASK_GREY), images)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without sized default fonts
        return ImageFont.load_default()


def text_panel(text: str, width: int, height: int, font_size: int = 12) -> Image.Image:
    """The text wrapped onto a white panel; ▒ drawn as grey boxes (fonts may lack the glyph)."""
    panel = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(panel)
    font = _font(font_size)
    char_w = max(1, int(draw.textlength("M", font=font)))
    line_h = font_size + 3
    y = 4
    for line in textwrap.wrap(text, width=max(8, (width - 8) // char_w)) or [""]:
        if y + line_h > height:
            break
        x = 4
        for chunk in _split_masks(line):
            if chunk.startswith(MASK_CHAR):
                for _ in chunk:
                    draw.rectangle([x, y + 2, x + char_w - 2, y + font_size], fill=(170, 170, 170))
                    x += char_w
            else:
                draw.text((x, y), chunk, fill="black", font=font)
                x += int(draw.textlength(chunk, font=font))
        y += line_h
    return panel


def _split_masks(line: str) -> list[str]:
    chunks: list[str] = []
    for char in line:
        if chunks and (char == MASK_CHAR) == chunks[-1].startswith(MASK_CHAR):
            chunks[-1] += char
        else:
            chunks.append(char)
    return chunks


def side_by_side(image: Image.Image, text: str, size: int = 256) -> Image.Image:
    """One frame: the image scaled to `size` px high, the text panel beside it."""
    scale = size / image.height
    shown = image.resize((max(1, round(image.width * scale)), size), Image.Resampling.NEAREST)
    frame = Image.new("RGB", (shown.width + size + 8, size), "white")
    frame.paste(shown, (0, 0))
    frame.paste(text_panel(text, size, size), (shown.width + 8, 0))
    return frame


def with_caption(frame: Image.Image, caption: str, height: int = 16) -> Image.Image:
    """The frame above a white strip holding `caption` (e.g. the step number)."""
    out = Image.new("RGB", (frame.width, frame.height + height), "white")
    out.paste(frame, (0, 0))
    ImageDraw.Draw(out).text((4, frame.height + 2), caption, fill="black", font=_font(height - 4))
    return out


def save_gif(frames: Sequence[Image.Image], path: Path, ms_per_frame: int = 120) -> None:
    """Write the frames as a looping GIF, the last frame held longer."""
    durations = [ms_per_frame] * (len(frames) - 1) + [2000]
    frames[0].save(path, save_all=True, append_images=list(frames[1:]), duration=durations, loop=0)
