"""Benchmark items: one instruction (and, for editing, one input image) to answer."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

from PIL import Image

TASKS = ("edit", "generation")


class BenchDataError(ValueError):
    """A benchmark folder or record that cannot be read."""


@dataclass(frozen=True)
class BenchItem:
    """One benchmark prompt. `input_image` (editing only): a path, PNG/JPEG bytes or PIL image."""

    id: str
    task: str
    category: str
    instruction: str
    input_image: str | os.PathLike | bytes | Image.Image | None = None

    def image(self) -> Image.Image:
        """The input image as RGB."""
        source: Any = self.input_image
        if source is None:
            raise BenchDataError(f"item {self.id} has no input image")
        if isinstance(source, bytes):
            source = io.BytesIO(source)
        if not isinstance(source, Image.Image):
            try:
                source = Image.open(source)
            except OSError as err:
                raise BenchDataError(
                    f"item {self.id}: cannot read its input image: {err}"
                ) from None
        return source.convert("RGB")
