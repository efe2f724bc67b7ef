"""The shapes world: a synthetic, exactly judgeable world for thinking-aware generation and editing.

Scenes of coloured shapes on a small grid (`scene`), drawn exactly (`render`), tokenized by a
quadrant codebook (`paradiff.shapes.image_tokenizer`), with seeded editing and generation tasks
whose reasoning is about the change (`tasks`), a parser reading reasoning back into claims
(`parser`), an exact six-metric judge (`judge`), the world's text tokenizer (`tokenizer`) and
datasets plus the ShapeBench split (`dataset`).

The modules that plug the world into the core are not imported here: its image tokenizer
(`image_tokenizer`), its exact reward (`reward`), its CLIP (`clip`), ShapeBench (`bench`, with the
exact judge in `judge`) and its pipelines (`checkpoint`). pyproject.toml's entry points register
the first three with the core, which never imports this package.
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
