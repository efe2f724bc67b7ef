"""Shapes world: renderer, quadrant VQ tokenizer (round trip, noise, broken cells), text tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from paradiff.image_tokenizers.base import ImageTokenizer, preprocess
from paradiff.shapes.image_tokenizer import (
    EMPTY_CODE,
    ShapesImageTokenizer,
    ShapesTokenizerError,
    build_codebook,
    shapes_tokenizer,
)
from paradiff.shapes.render import cell_sprite, render_array, render_scene
from paradiff.shapes.scene import COLOUR_NAMES, SHAPES, Obj, Scene, SceneError
from paradiff.shapes.tasks import CATEGORIES, derive_seed, make_sample
from paradiff.shapes.tokenizer import SPECIAL_TOKENS, build_text_tokenizer


@st.composite
def scenes(draw, max_side: int = 5) -> Scene:
    rows = draw(st.integers(1, max_side))
    cols = draw(st.integers(1, max_side))
    cells = draw(
        st.dictionaries(
            st.tuples(st.integers(0, rows - 1), st.integers(0, cols - 1)),
            st.builds(Obj, st.sampled_from(SHAPES), st.sampled_from(COLOUR_NAMES)),
        )
    )
    return Scene(rows, cols, cells)


@pytest.fixture(scope="module")
def tokenizer() -> ShapesImageTokenizer:
    return shapes_tokenizer()


@pytest.fixture(scope="module")
def text_tokenizer():
    return build_text_tokenizer()


def test_protocol_and_codebook_size(tokenizer):
    assert isinstance(tokenizer, ImageTokenizer)
    assert tokenizer.downsample == 8
    assert tokenizer.codebook_size == 1 + len(SHAPES) * len(COLOUR_NAMES) * 4


def test_sprites_use_only_background_and_shape_colour():
    sprite = cell_sprite(Obj("star", "orange"))
    colours = {tuple(p) for p in sprite.reshape(-1, 3)}
    assert colours == {(255, 255, 255), (255, 140, 0)}


@settings(max_examples=60, deadline=None)
@given(scenes())
def test_render_encode_decode_round_trip(scene):
    tokenizer = shapes_tokenizer()
    pixels = torch.from_numpy(render_array(scene)).permute(2, 0, 1)[None].float() / 255
    assert torch.equal(
        tokenizer.image_to_codes(render_scene(scene), scene.rows, scene.cols),
        tokenizer.scene_to_codes(scene),
    )
    codes = tokenizer.encode(pixels)
    assert torch.equal(codes[0], tokenizer.scene_to_codes(scene))
    assert torch.equal(tokenizer.decode(codes), pixels)
    decoded, broken = tokenizer.codes_to_scene(codes[0])
    assert decoded == scene and broken == []


def test_encode_survives_noise_and_resizing(tokenizer):
    generator = torch.Generator().manual_seed(0)
    for index in range(10):
        scene = make_sample("recolour", derive_seed("noise", index), difficulty=3).scene_in
        image = render_scene(scene)
        codes = tokenizer.scene_to_codes(scene)
        pixels = preprocess(image)[None]
        noisy = (pixels + 0.08 * torch.randn(pixels.shape, generator=generator)).clamp(0, 1)
        assert torch.equal(tokenizer.encode(noisy)[0], codes)
        for size in (48, 100, 128):
            resized = image.resize((size, size), Image.Resampling.BICUBIC)
            assert torch.equal(tokenizer.image_to_codes(resized, 4, 4), codes)


@pytest.mark.parametrize("cell_px", [10, 32])
def test_other_cell_sizes_round_trip(cell_px):
    tokenizer = shapes_tokenizer(cell_px)
    assert tokenizer.downsample == cell_px // 2 and tokenizer.codebook_size == 193
    scene = make_sample("add", 5, difficulty=3).scene_in
    image = render_scene(scene, cell_px)
    assert image.size == (4 * cell_px, 4 * cell_px)
    assert torch.equal(tokenizer.image_to_codes(image, 4, 4), tokenizer.scene_to_codes(scene))
    with pytest.raises(SceneError, match="at least 10"):
        shapes_tokenizer(8)


def test_codebook_is_deterministic_and_saves(tmp_path, tokenizer):
    codebook, entries = build_codebook()
    assert torch.equal(codebook, tokenizer.codebook) and entries == tokenizer.entries
    assert entries[EMPTY_CODE] is None and entries[1] == ("circle", "red", 0)
    tokenizer.save(tmp_path / "vqvae")
    loaded = ShapesImageTokenizer.from_dir(tmp_path / "vqvae")
    assert torch.equal(loaded.codebook, tokenizer.codebook) and loaded.entries == tokenizer.entries
    scene = Scene(2, 3, {(1, 2): Obj("cross", "pink")})
    assert torch.equal(loaded.scene_to_codes(scene), tokenizer.scene_to_codes(scene))


def test_from_dir_rejects_foreign_or_incomplete_folders(tmp_path, tokenizer):
    with pytest.raises(ShapesTokenizerError, match="cannot read .*tokenizer_config.json"):
        ShapesImageTokenizer.from_dir(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Other"}))
    with pytest.raises(ShapesTokenizerError, match="is not a ShapesImageTokenizer config"):
        ShapesImageTokenizer.from_dir(tmp_path)
    tokenizer.save(tmp_path)
    (tmp_path / "codebook.safetensors").unlink()
    with pytest.raises(ShapesTokenizerError, match="cannot read .*codebook.safetensors"):
        ShapesImageTokenizer.from_dir(tmp_path)


def test_mixed_quadrants_are_broken_and_look_broken(tokenizer):
    scene = Scene(2, 2, {(0, 0): Obj("circle", "red"), (1, 1): Obj("star", "blue")})
    codes = tokenizer.scene_to_codes(scene)
    codes[0, 1] = codes[2, 2]  # top-right quadrant of the circle becomes a star quadrant
    codes[3, 0] = codes[2, 3]  # an empty cell gets a stray quadrant
    mask = tokenizer.broken_cells(codes[None])[0]
    assert mask.tolist() == [[True, False], [True, False]]
    decoded_scene, broken = tokenizer.codes_to_scene(codes)
    assert sorted(broken) == [(0, 0), (1, 0)] and decoded_scene.cells == {(1, 1): scene.get((1, 1))}
    pixels = tokenizer.decode(codes[None])[0].permute(1, 2, 0).mul(255).round().byte().numpy()
    drawable = [cell_sprite(None)] + [cell_sprite(Obj(s, c)) for s in SHAPES for c in COLOUR_NAMES]
    broken_cell = pixels[:16, :16]
    assert not any(np.array_equal(broken_cell, sprite) for sprite in drawable)


def test_quadrant_permutation_is_broken(tokenizer):
    codes = tokenizer.scene_to_codes(Scene(1, 1, {(0, 0): Obj("diamond", "green")}))
    assert not tokenizer.broken_cells(codes[None]).any()
    assert tokenizer.broken_cells(codes.flip(1)[None]).all()


def test_bad_inputs_raise_value_errors(tokenizer):
    with pytest.raises(ValueError, match="quadrants per cell"):
        tokenizer.codes_to_scene(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="codebook"):
        tokenizer.decode(torch.full((1, 2, 2), 999))
    with pytest.raises(SceneError, match="unknown shape"):
        Obj("hexagon", "red")
    with pytest.raises(SceneError, match="outside"):
        Scene(2, 2, {(2, 0): Obj("star", "red")})


def test_render_array_matches_sprites():
    scene = Scene(2, 3, {(1, 2): Obj("triangle", "black")})
    pixels = render_array(scene)
    assert pixels.shape == (32, 48, 3)
    assert np.array_equal(pixels[16:, 32:], cell_sprite(Obj("triangle", "black")))
    assert np.array_equal(pixels[:16, :16], cell_sprite(None))


def test_text_tokenizer_specials_and_size(text_tokenizer):
    vocab = text_tokenizer.get_vocab()
    assert [vocab[token] for token in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    assert len(vocab) < 400
    ids = text_tokenizer.encode("<system>Edit it.</system><user>x</user><br>").ids
    assert ids[0] == vocab["<system>"] and vocab["<br>"] in ids


def test_text_tokenizer_round_trips_unseen_samples(text_tokenizer):
    unk = SPECIAL_TOKENS.index("<unk>")
    for categories in CATEGORIES.values():
        for category in categories:
            for index in range(40):
                sample = make_sample(
                    category, derive_seed("unseen", category, index), 1 + index % 3
                )
                for text in (sample.instruction, sample.reasoning):
                    ids = text_tokenizer.encode(text).ids
                    assert unk not in ids, text
                    assert text_tokenizer.decode(ids) == text


def test_text_tokenizer_is_the_same_in_a_fresh_process(text_tokenizer):
    code = (
        "from paradiff.shapes.tokenizer import build_text_tokenizer;"
        "import json; print(json.dumps(build_text_tokenizer().get_vocab(), sort_keys=True))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == text_tokenizer.get_vocab()
