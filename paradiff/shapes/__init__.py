"""The shapes world: a synthetic, exactly judgeable world for thinking-aware generation and editing.

Scenes of coloured shapes on a small grid (`scene`), drawn exactly (`render`), tokenized by a
quadrant codebook (`paradiff.image_tokenizers.shapes`), with seeded editing and generation tasks
whose reasoning is about the change (`tasks`), a parser reading reasoning back into claims
(`parser`), an exact six-metric judge (`judge`), the world's text tokenizer (`tokenizer`) and
datasets plus the ShapeBench split (`dataset`).

The judge lives in `paradiff.shapes.judge` (`score_sample`, `aggregate`, `METRICS`); it is not
imported here because it needs the image tokenizer, which itself draws with this package.
"""

from paradiff.shapes.parser import Reading, parse_reasoning
from paradiff.shapes.render import render_scene
from paradiff.shapes.sample import SYSTEM_PROMPTS, ShapeSample
from paradiff.shapes.scene import COLOURS, SHAPES, Obj, Scene
from paradiff.shapes.tasks import (
    CATEGORIES,
    EDIT_CATEGORIES,
    GENERATION_CATEGORIES,
    MAX_INSTRUCTION_TOKENS,
    MAX_REASONING_TOKENS,
    make_sample,
)

__all__ = [
    "CATEGORIES",
    "COLOURS",
    "EDIT_CATEGORIES",
    "GENERATION_CATEGORIES",
    "MAX_INSTRUCTION_TOKENS",
    "MAX_REASONING_TOKENS",
    "Obj",
    "Reading",
    "SHAPES",
    "SYSTEM_PROMPTS",
    "Scene",
    "ShapeSample",
    "make_sample",
    "parse_reasoning",
    "render_scene",
]
