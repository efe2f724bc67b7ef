"""Draw docs/shapes_samples.png: a few shapes-world samples (input, target, instruction, reasoning).

.venv/bin/python scripts/shapes_figure.py [--out docs/shapes_samples.png]
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from paradiff.shapes.render import render_scene
from paradiff.shapes.sample import ShapeSample
from paradiff.shapes.tasks import derive_seed, make_sample

# (category, index in the "figure" seed namespace, difficulty): picked for variety
SHOWN = (
    ("relational", 0, 2),
    ("conditional", 1, 2),
    ("count", 3, 2),
    ("swap", 0, 2),
    ("knowledge", 2, 1),
    ("counting", 0, 1),
)
SCALE = 3
PAD = 14
TEXT_WIDTH = 560
GRID_LINE = (215, 215, 215)
INK = (30, 30, 30)
MUTED = (110, 110, 110)


def enlarged(sample: ShapeSample, scene) -> Image.Image:
    """The scene at SCALE x its size, with light cell lines (for reading, not part of the data)."""
    image = render_scene(scene).resize(
        (scene.cols * 16 * SCALE, scene.rows * 16 * SCALE), Image.Resampling.NEAREST
    )
    draw = ImageDraw.Draw(image)
    cell = 16 * SCALE
    for k in range(scene.rows + 1):
        draw.line([(0, k * cell), (image.width, k * cell)], fill=GRID_LINE)
    for k in range(scene.cols + 1):
        draw.line([(k * cell, 0), (k * cell, image.height)], fill=GRID_LINE)
    return image


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels."""
    lines: list[str] = []
    for paragraph in textwrap.wrap(text, 200):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if font.getlength(candidate) <= width or not line:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def panel(sample: ShapeSample, fonts: dict[str, ImageFont.FreeTypeFont]) -> Image.Image:
    target = enlarged(sample, sample.scene_out)
    side = target.width
    text_lines = [("label", f"{sample.task} / {sample.category}", MUTED)]
    text_lines += [
        ("bold", line, INK) for line in wrap(sample.instruction, fonts["bold"], TEXT_WIDTH)
    ]
    text_lines += [
        ("text", line, INK) for line in wrap(sample.reasoning, fonts["text"], TEXT_WIDTH)
    ]
    text_height = sum(fonts[kind].size + 6 for kind, _, _ in text_lines)
    height = max(side, text_height) + 2 * PAD
    width = 2 * side + TEXT_WIDTH + 4 * PAD
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if sample.scene_in is not None:
        canvas.paste(enlarged(sample, sample.scene_in), (PAD, PAD))
    else:
        draw.rectangle([PAD, PAD, PAD + side - 1, PAD + side - 1], outline=GRID_LINE)
        draw.text(
            (PAD + 12, PAD + side // 2 - 10), "(no input image)", fill=MUTED, font=fonts["text"]
        )
    canvas.paste(target, (2 * PAD + side, PAD))
    y = PAD
    for kind, line, colour in text_lines:
        draw.text((3 * PAD + 2 * side, y), line, fill=colour, font=fonts[kind])
        y += fonts[kind].size + 6
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/shapes_samples.png")
    args = parser.parse_args()
    fonts = {
        "label": ImageFont.load_default(size=13),
        "bold": ImageFont.load_default(size=17),
        "text": ImageFont.load_default(size=15),
    }
    samples = [
        make_sample(category, derive_seed("figure", category, index), difficulty)
        for category, index, difficulty in SHOWN
    ]
    panels = [panel(sample, fonts) for sample in samples]
    header_height = 26
    width = max(p.width for p in panels)
    figure = Image.new("RGB", (width, header_height + sum(p.height for p in panels)), "white")
    draw = ImageDraw.Draw(figure)
    side = 4 * 16 * SCALE
    for x, title in (
        (PAD, "input"),
        (2 * PAD + side, "target"),
        (3 * PAD + 2 * side, "instruction, then reasoning"),
    ):
        draw.text((x, 6), title, fill=MUTED, font=fonts["label"])
    y = header_height
    for index, image in enumerate(panels):
        figure.paste(image, (0, y))
        if index:
            draw.line([(PAD, y), (width - PAD, y)], fill=GRID_LINE)
        y += image.height
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(out)
    print(f"wrote {out} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    main()
