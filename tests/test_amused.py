"""AmusedTokenizer on a tiny random diffusers VQModel: codes, decoding, loading, errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from paradiff.image_tokenizers.amused import AmusedError, AmusedTokenizer
from paradiff.image_tokenizers.base import ImageInputError, ImageTokenizer
from tests.builders import build_tiny_vqmodel


@pytest.fixture(scope="module")
def vq_dir(tmp_path_factory):
    return build_tiny_vqmodel(tmp_path_factory.mktemp("vqvae"))


@pytest.fixture(scope="module")
def amused(vq_dir):
    return AmusedTokenizer.from_pretrained(vq_dir)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)


def test_follows_the_protocol_with_the_config_sizes(amused):
    assert isinstance(amused, ImageTokenizer)
    assert amused.downsample == 2  # two blocks: 2 ** (2 - 1)
    assert amused.codebook_size == 64
    assert amused.codebook.shape == (64, 4)


def test_encode_gives_a_grid_of_codebook_indices(amused, images):
    codes = amused.encode(images)
    assert codes.shape == (2, 8, 12) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < amused.codebook_size
    assert codes.unique().numel() > 1
    assert torch.equal(amused.encode(images[1:]), codes[1:])  # batch rows are independent


def test_codes_are_the_indices_diffusers_quantize_picks(amused, images):
    vq_model = amused.vq_model
    with torch.no_grad():
        latents = vq_model.encode(images).latents  # (B, D, h, w)
        quantized, _, (_, _, indices) = vq_model.quantize(latents)
    codes = amused.encode(images)
    assert torch.equal(indices.reshape(codes.shape), codes)
    # quantize returns z + (codebook[codes] - z), equal to codebook[codes] up to rounding
    torch.testing.assert_close(amused.codebook_latents(codes), quantized, rtol=0, atol=1e-6)


def test_codebook_latents_select_codebook_rows(amused):
    codes = torch.tensor([[[0, 5], [63, 5]]])  # (1, 2, 2)
    latents = amused.codebook_latents(codes)  # (1, D, 2, 2)
    assert latents.shape == (1, 4, 2, 2)
    assert torch.equal(latents[0, :, 1, 0], amused.codebook[63])
    assert torch.equal(latents[0, :, 0, 1], latents[0, :, 1, 1])


def test_decode_shape_range_and_determinism(amused, images):
    codes = amused.encode(images)
    decoded = amused.decode(codes)
    assert decoded.shape == images.shape and decoded.dtype == torch.float32
    assert 0 <= float(decoded.min()) and float(decoded.max()) <= 1
    assert torch.equal(amused.decode(amused.encode(images)), decoded)
    assert amused.encode(decoded).shape == codes.shape


def test_encode_then_decode_matches_the_diffusers_forward(amused, images):
    with torch.no_grad():
        reference = amused.vq_model(images).sample.clamp(0, 1)  # encode, quantize, decode
    torch.testing.assert_close(amused.decode(amused.encode(images)), reference)


def test_decode_does_not_depend_on_lookup_from_codebook(tmp_path, amused, images):
    plain = AmusedTokenizer.from_pretrained(
        build_tiny_vqmodel(tmp_path, lookup_from_codebook=False)
    )
    assert not plain.vq_model.config.lookup_from_codebook
    codes = amused.encode(images)
    torch.testing.assert_close(plain.decode(codes), amused.decode(codes))


def test_bfloat16_model_gives_long_codes_and_float32_images(vq_dir, images):
    amused = AmusedTokenizer.from_pretrained(vq_dir, dtype=torch.bfloat16)
    assert amused.dtype == torch.bfloat16 and amused.device == torch.device("cpu")
    codes = amused.encode(images)
    assert codes.dtype == torch.long and codes.shape == (2, 8, 12)
    assert amused.decode(codes).dtype == torch.float32


def test_force_upcast_keeps_float16_requests_in_float32(tmp_path):
    folder = build_tiny_vqmodel(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "force_upcast": True}))
    assert AmusedTokenizer.from_pretrained(folder, dtype=torch.float16).dtype == torch.float32


@pytest.mark.parametrize(
    ("bad_images", "message"),
    [
        (torch.rand(1, 3, 16, 15), "not a multiple of the downsample factor 2"),
        (torch.rand(1, 4, 16, 16), r"expected images \(B, 3, H, W\)"),
        (torch.rand(3, 16, 16), r"expected images \(B, 3, H, W\)"),
        (torch.rand(1, 3, 16, 16) * 2 - 1, r"expected \[0, 1\]"),
        (torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8), "expected float pixels"),
    ],
)
def test_encode_refuses_unusable_images(amused, bad_images, message):
    with pytest.raises(ImageInputError, match=message):
        amused.encode(bad_images)


@pytest.mark.parametrize(
    ("bad_codes", "message"),
    [
        (torch.full((1, 2, 2), 64), r"outside the codebook \[0, 64\)"),
        (torch.full((1, 2, 2), -1), "outside the codebook"),
        (torch.zeros(4, dtype=torch.long), r"expected codes \(B, h, w\)"),
        (torch.zeros(1, 2, 2), "integer tensor"),
    ],
)
def test_decode_refuses_unusable_codes(amused, bad_codes, message):
    with pytest.raises(ImageInputError, match=message):
        amused.decode(bad_codes)


def test_loads_from_a_checkpoint_folder_holding_vqvae(tmp_path, vq_dir, amused, images):
    shutil.copytree(vq_dir, tmp_path / "vqvae")
    for loaded in (
        AmusedTokenizer.from_pretrained(tmp_path),
        AmusedTokenizer.from_pretrained(tmp_path, subfolder="vqvae"),
    ):
        assert torch.equal(loaded.encode(images), amused.encode(images))


def test_missing_or_incomplete_folders_raise(tmp_path):
    with pytest.raises(AmusedError, match="no VQ model folder at"):
        AmusedTokenizer.from_pretrained(tmp_path / "absent" / "vqvae")
    with pytest.raises(AmusedError, match="no config.json in"):
        AmusedTokenizer.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{ broken")
    with pytest.raises(AmusedError, match="cannot load a VQ model") as info:
        AmusedTokenizer.from_pretrained(tmp_path)
    assert "\n" not in str(info.value)


def test_hub_ids_go_to_diffusers_unchanged(monkeypatch, vq_dir):
    from diffusers import VQModel

    config, model = VQModel.load_config(vq_dir), VQModel.from_pretrained(vq_dir)
    calls = []

    def record(result):
        def load(source, subfolder=None, **kwargs):
            calls.append((source, subfolder))
            return result

        return load

    monkeypatch.setattr(VQModel, "load_config", record(config))
    monkeypatch.setattr(VQModel, "from_pretrained", record(model))
    amused = AmusedTokenizer.from_pretrained("some-org/some-model", subfolder="vqvae")
    assert calls == [("some-org/some-model", "vqvae")] * 2
    assert amused.vq_model is model
