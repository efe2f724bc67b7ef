"""The shapes-world image tokenizer: an exact vector quantizer whose codebook is built by rendering.

Each cell of `cell_px` pixels is cut into four quadrants (top-left, top-right, bottom-left,
bottom-right), each a `downsample` = cell_px / 2 pixel patch, so a rows x cols scene is a
(2 rows, 2 cols) code grid. The codebook holds every distinct quadrant patch the renderer draws:
code 0 is the empty (background) patch, then for each shape, colour and quadrant in construction
order one code. `encode` picks the nearest codebook patch in L2 pixel distance,
argmin_k ||x - c_k||^2, so mildly noisy or resampled renders still map to the right codes;
`decode` pastes the patches back. A cell whose four codes are not the quadrants of one object (or
four empties) is *broken*: it decodes to a visibly mixed patch and `codes_to_scene` reports it.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from paradiff.image_tokenizers.base import check_codes, check_image_batch, preprocess
from paradiff.image_tokenizers.loading import CONFIG_FILE, TokenizerKind
from paradiff.shapes.render import DEFAULT_CELL_PX, cell_sprite, check_cell_px
from paradiff.shapes.scene import COLOUR_NAMES, SHAPES, Obj, Pos, Scene

CODEBOOK_FILE = "codebook.safetensors"
TOKENIZER_CLASS = "ShapesImageTokenizer"
QUADRANTS: tuple[str, ...] = ("top_left", "top_right", "bottom_left", "bottom_right")
EMPTY_CODE = 0

# A codebook entry: None for the empty patch, else (shape, colour, quadrant index).
Entry = tuple[str, str, int] | None


class ShapesTokenizerError(ValueError):
    """A shapes codebook folder, code grid or image the shapes tokenizer cannot use."""


def _quadrants(sprite: np.ndarray) -> list[np.ndarray]:
    """(s, s, 3) cell pixels -> its four (s/2, s/2, 3) quadrants in QUADRANTS order."""
    half = sprite.shape[0] // 2
    return [sprite[r : r + half, c : c + half] for r in (0, half) for c in (0, half)]


def build_codebook(cell_px: int = DEFAULT_CELL_PX) -> tuple[torch.Tensor, list[Entry]]:
    """Render every object and cut its quadrants: codebook (K, 3, d, d) uint8 and its entries.

    Raises ShapesTokenizerError if two quadrants coincide (the renderer would then be ambiguous).
    """
    check_cell_px(cell_px)
    patches = [_quadrants(cell_sprite(None, cell_px))[0]]
    entries: list[Entry] = [None]
    for shape in SHAPES:
        for colour in COLOUR_NAMES:
            for index, patch in enumerate(_quadrants(cell_sprite(Obj(shape, colour), cell_px))):
                patches.append(patch)
                entries.append((shape, colour, index))
    distinct = {patch.tobytes() for patch in patches}
    if len(distinct) != len(patches):
        raise ShapesTokenizerError(
            f"the renderer draws only {len(distinct)} distinct quadrants for {len(patches)} entries"
        )
    codebook = torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).contiguous()
    return codebook, entries


class ShapesImageTokenizer:
    """Exact quadrant quantizer of the shapes world (see the module docstring).

    `codebook` is (K, 3, d, d) uint8 pixels, `entries[k]` says what code k draws.
    """

    def __init__(self, codebook: torch.Tensor, entries: list[Entry], cell_px: int) -> None:
        check_cell_px(cell_px)
        downsample = cell_px // 2
        if codebook.dim() != 4 or tuple(codebook.shape[1:]) != (3, downsample, downsample):
            raise ShapesTokenizerError(
                f"codebook shape {tuple(codebook.shape)} is not (K, 3, {downsample}, {downsample})"
            )
        if len(entries) != codebook.shape[0] or entries[EMPTY_CODE] is not None:
            raise ShapesTokenizerError(
                f"{len(entries)} entries for {codebook.shape[0]} codes (code 0 must be empty)"
            )
        self.cell_px = cell_px
        self.downsample = downsample
        self.codebook_size = int(codebook.shape[0])
        self.codebook = codebook.to(torch.uint8)
        self.entries = list(entries)
        self._flat = self.codebook.flatten(1).float() / 255.0  # (K, 3 d d)
        self._flat_sq = (self._flat**2).sum(1)  # (K,)
        # the four codes of every drawable cell -> its object (None: an empty cell)
        self._quad_codes: dict[Obj, list[int]] = {}
        for code, entry in enumerate(entries):
            if entry is not None:
                shape, colour, quadrant = entry
                self._quad_codes.setdefault(Obj(shape, colour), [EMPTY_CODE] * 4)[quadrant] = code
        incomplete = [str(obj) for obj, codes in self._quad_codes.items() if EMPTY_CODE in codes]
        if incomplete:
            raise ShapesTokenizerError(f"codebook lacks quadrants of the {incomplete[0]}")
        self._cells: dict[tuple[int, ...], Obj | None] = {(EMPTY_CODE,) * 4: None}
        for obj, codes in self._quad_codes.items():
            self._cells[tuple(codes)] = obj

    @classmethod
    def build(cls, cell_px: int = DEFAULT_CELL_PX) -> ShapesImageTokenizer:
        """The tokenizer whose codebook is rendered now (deterministic: same ids every run)."""
        codebook, entries = build_codebook(cell_px)
        return cls(codebook, entries, cell_px)

    # -- the ImageTokenizer protocol -----------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> codes (B, H/d, W/d): nearest patch in L2."""
        h, w = check_image_batch(images, self.downsample)
        d = self.downsample
        batch = images.shape[0]
        patches = images.float().reshape(batch, 3, h, d, w, d).permute(0, 2, 4, 1, 3, 5)
        flat = patches.reshape(-1, 3 * d * d)  # (B h w, 3 d d)
        distance = self._flat_sq[None, :] - 2 * flat @ self._flat.T  # ||x||^2 is constant per row
        return distance.argmin(1).reshape(batch, h, w)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> images (B, 3, h d, w d) in [0, 1]."""
        check_codes(codes, self.codebook_size)
        batch, h, w = codes.shape
        d = self.downsample
        patches = self.codebook[codes.long().cpu()].float() / 255.0  # (B, h, w, 3, d, d)
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(batch, 3, h * d, w * d)

    # -- the shapes world ----------------------------------------------------------------------
    def scene_to_codes(self, scene: Scene) -> torch.Tensor:
        """Scene -> its code grid (2 rows, 2 cols), without rendering."""
        codes = torch.full((2 * scene.rows, 2 * scene.cols), EMPTY_CODE, dtype=torch.long)
        for (row, col), obj in scene.objects():
            quad = self._quad_codes[obj]
            codes[2 * row : 2 * row + 2, 2 * col : 2 * col + 2] = torch.tensor(quad).view(2, 2)
        return codes

    def _cell_grid(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (h, w) -> (h/2, w/2, 4) quadrant codes per cell, QUADRANTS order."""
        if codes.dim() != 2:
            raise ShapesTokenizerError(f"expected one (h, w) code grid, got {tuple(codes.shape)}")
        check_codes(codes[None], self.codebook_size)
        h, w = codes.shape
        if h % 2 or w % 2 or h == 0 or w == 0:
            raise ShapesTokenizerError(f"code grid {h}x{w} is not 2x2 quadrants per cell")
        cells = codes.long().cpu().reshape(h // 2, 2, w // 2, 2).permute(0, 2, 1, 3)
        return cells.reshape(h // 2, w // 2, 4)

    def codes_to_scene(self, codes: torch.Tensor) -> tuple[Scene, list[Pos]]:
        """Code grid (h, w) -> (the scene of its well-formed cells, positions of broken cells)."""
        cells = self._cell_grid(codes)
        rows, cols = cells.shape[:2]
        objects: dict[Pos, Obj] = {}
        broken: list[Pos] = []
        for row in range(rows):
            for col in range(cols):
                key = tuple(cells[row, col].tolist())
                if key not in self._cells:
                    broken.append((row, col))
                elif self._cells[key] is not None:
                    objects[(row, col)] = self._cells[key]
        return Scene(rows, cols, objects), broken

    def broken_cells(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> bool (B, h/2, w/2): True where a cell's quadrants disagree."""
        check_codes(codes, self.codebook_size)
        return torch.stack([self._broken_mask(grid) for grid in codes])

    def _broken_mask(self, grid: torch.Tensor) -> torch.Tensor:
        cells = self._cell_grid(grid)
        rows, cols = cells.shape[:2]
        keys = [tuple(cell) for cell in cells.reshape(-1, 4).tolist()]
        return torch.tensor([key not in self._cells for key in keys]).view(rows, cols)

    def image_to_codes(self, image: str | os.PathLike | Image.Image, rows: int, cols: int):
        """An image file or PIL image of a rows x cols scene at any size -> codes (2 rows, 2 cols).

        The image is resampled to the tokenizer's cell size first, so resized renders work.
        """
        size = (cols * self.cell_px, rows * self.cell_px)
        pixels = preprocess(  # (3, H, W)
            image, size, self.downsample, max_side=max(size), max_aspect=float(max(rows, cols))
        )
        return self.encode(pixels[None])[0]

    # -- files ---------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write `codebook.safetensors` and `tokenizer_config.json` into `folder`."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        save_file({"codebook": self.codebook.contiguous()}, str(path / CODEBOOK_FILE))
        config = {
            "tokenizer_class": TOKENIZER_CLASS,
            "cell_px": self.cell_px,
            "downsample": self.downsample,
            "codebook_size": self.codebook_size,
            "quadrants": list(QUADRANTS),
            "entries": [None if e is None else list(e) for e in self.entries],
        }
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dir(cls, folder: str | os.PathLike) -> ShapesImageTokenizer:
        """Load a folder written by `save`."""
        path = Path(folder)
        try:
            config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ShapesTokenizerError(f"cannot read {path / CONFIG_FILE}: {err}") from None
        if not isinstance(config, dict) or config.get("tokenizer_class") != TOKENIZER_CLASS:
            raise ShapesTokenizerError(f"{path / CONFIG_FILE} is not a {TOKENIZER_CLASS} config")
        try:
            codebook = load_file(str(path / CODEBOOK_FILE))["codebook"]
        except (OSError, ValueError, KeyError) as err:
            raise ShapesTokenizerError(f"cannot read {path / CODEBOOK_FILE}: {err}") from None
        try:
            entries = [
                None if e is None else (str(e[0]), str(e[1]), int(e[2])) for e in config["entries"]
            ]
            return cls(codebook, entries, int(config["cell_px"]))
        except (KeyError, TypeError, IndexError) as err:
            raise ShapesTokenizerError(f"malformed {path / CONFIG_FILE}: {err}") from None


@lru_cache(maxsize=4)
def shapes_tokenizer(cell_px: int = DEFAULT_CELL_PX) -> ShapesImageTokenizer:
    """The (cached) tokenizer built from the renderer at this cell size."""
    return ShapesImageTokenizer.build(cell_px)


# The checkpoint loader's entry (pyproject.toml's `paradiff.image_tokenizers` entry point).
KIND = TokenizerKind(
    tokenizer_class=TOKENIZER_CLASS,
    type=ShapesImageTokenizer,
    load=lambda folder, _device, _dtype: ShapesImageTokenizer.from_dir(folder),
    save=lambda tokenizer, folder: tokenizer.save(folder),
)
