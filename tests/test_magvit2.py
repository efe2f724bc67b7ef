"""MAGVIT-v2 tokenizer: upstream reference agreement, config/weight loading, input errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from paradiff.image_tokenizers.base import ImageTokenizer
from paradiff.image_tokenizers.magvit2 import (
    CoderConfig,
    LookupFreeQuantizer,
    Magvit2Config,
    Magvit2Error,
    Magvit2Tokenizer,
)


def small_config(ch: int = 32, codebook_dim: int = 6) -> Magvit2Config:
    """Two levels (4x), one level with self-attention, a 6-bit codebook."""
    return Magvit2Config(
        encoder=CoderConfig(
            ch=ch,
            ch_mult=[1, 2],
            num_res_blocks=[2, 1],
            attn_resolutions=[8],
            z_channels=codebook_dim,
            resolution=16,
        ),
        decoder=CoderConfig(
            ch=ch,
            ch_mult=[2, 1],
            num_res_blocks=[1, 2],
            attn_resolutions=[16],
            z_channels=codebook_dim,
            resolution=16,
        ),
        codebook_dim=codebook_dim,
    )


def random_tokenizer(config: Magvit2Config, seed: int = 0) -> Magvit2Tokenizer:
    torch.manual_seed(seed)
    tokenizer = Magvit2Tokenizer(config).eval()
    with torch.no_grad():  # non-trivial norms and biases, so every tensor matters
        for name, param in tokenizer.named_parameters():
            if "norm" in name or name.endswith("bias"):
                param.normal_(mean=1.0 if name.endswith("weight") else 0.0, std=0.1)
    return tokenizer


@pytest.mark.reference
def test_reference_codes_and_decoded(reference_root):
    folder = reference_root / "magvit2"
    settings = json.loads((folder / "config.json").read_text())
    expected = load_file(folder / "expected.safetensors")
    tokenizer = Magvit2Tokenizer.from_pretrained(folder)

    config = Magvit2Config.from_dict(settings)
    assert tokenizer.config == config
    assert tokenizer.downsample == 2 ** (len(settings["encoder"]["ch_mult"]) - 1)
    assert tokenizer.codebook_size == 2 ** settings["codebook_dim"]

    pixels = expected["pixels"]  # (B, 3, H, W) in [-1, 1]
    batch, _, height, width = pixels.shape
    grid = (batch, height // tokenizer.downsample, width // tokenizer.downsample)
    reference_codes = expected["codes"].reshape(grid)  # row-major over the latent grid

    codes = tokenizer.encode_pixels(pixels)
    assert codes.shape == grid
    assert torch.equal(codes, reference_codes)

    decoded = tokenizer.decode_codes_raw(reference_codes)
    assert decoded.shape == expected["decoded"].shape
    assert (decoded - expected["decoded"]).abs().max().item() <= 1e-4

    images = tokenizer.decode(reference_codes)  # protocol side: [0, 1]
    expected_images = ((expected["decoded"] + 1) / 2).clamp(0, 1)
    assert (images - expected_images).abs().max().item() <= 1e-4


def test_protocol_shapes_and_range():
    tokenizer = random_tokenizer(small_config())
    assert isinstance(tokenizer, ImageTokenizer)
    assert (tokenizer.downsample, tokenizer.codebook_size) == (2, 64)
    images = torch.rand(2, 3, 8, 12)
    codes = tokenizer.encode(images)
    assert codes.shape == (2, 4, 6) and codes.dtype == torch.int64
    assert 0 <= codes.min() and codes.max() < 64
    decoded = tokenizer.decode(codes)
    assert decoded.shape == (2, 3, 8, 12)
    assert 0 <= decoded.min() and decoded.max() <= 1


def test_lfq_bits_are_most_significant_first():
    quantizer = LookupFreeQuantizer(4)
    latents = torch.tensor([0.5, -2.0, 0.0, 3.0]).view(1, 4, 1, 1)  # bits 1 0 0 1
    assert quantizer.codes(latents).item() == 0b1001
    codes = torch.arange(16).view(1, 4, 4)
    entries = quantizer.entries(codes)  # (1, 4, 4, 4), ±1 per bit
    assert set(entries.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(quantizer.codes(entries), codes)
    assert torch.equal(entries[0, :, 2, 1], torch.tensor([1.0, -1.0, -1.0, 1.0]))


def test_save_load_round_trip(tmp_path):
    tokenizer = random_tokenizer(small_config(), seed=3)
    tokenizer.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    assert state.keys() == tokenizer.state_dict().keys()
    assert "encoder.down.1.attn.0.q.weight" in state  # attention at nominal resolution 8
    assert "decoder.up.0.attn.0.proj_out.weight" in state  # attention at nominal resolution 16
    assert "decoder.up.1.block.1.conv2.weight" in state
    assert "decoder.up.1.upsample.conv.weight" in state
    assert "encoder.down.0.downsample.conv.weight" in state

    loaded = Magvit2Tokenizer.from_pretrained(tmp_path)
    assert loaded.config == tokenizer.config
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    images = torch.rand(1, 3, 8, 8)
    codes = tokenizer.encode(images)
    assert torch.equal(loaded.encode(images), codes)
    assert torch.equal(loaded.decode(codes), tokenizer.decode(codes))
    assert torch.equal(
        Magvit2Tokenizer.from_pretrained(tmp_path / "model.safetensors").encode(images), codes
    )


def test_sizes_come_from_config_json(tmp_path):
    config = small_config(ch=64, codebook_dim=5)
    random_tokenizer(config).save_pretrained(tmp_path)
    loaded = Magvit2Tokenizer.from_pretrained(tmp_path)
    assert loaded.encoder.conv_in.weight.shape == (64, 3, 3, 3)
    assert loaded.quantize.embedding.shape == (32, 5)
    assert loaded.codebook_size == 32 and loaded.downsample == 2


def test_default_config_is_released_layout():
    config = Magvit2Config()
    assert (config.downsample, config.codebook_size) == (16, 8192)
    assert Magvit2Config.from_dict({}) == config
    with torch.device("meta"):
        names = Magvit2Tokenizer(config).state_dict().keys()
    assert "encoder.down.4.block.3.conv2.weight" in names
    assert "encoder.down.3.downsample.conv.weight" in names
    assert "decoder.up.0.block.3.norm1.weight" in names
    assert "decoder.up.4.upsample.conv.weight" in names
    assert not any(".attn." in name for name in names)  # resolution 5 never occurs
    assert {"quantize.embedding", "quantize.power_vals"} <= names


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ValueError) and "\n" not in message
    return message


def test_bad_inputs_raise_one_line_value_errors():
    tokenizer = random_tokenizer(small_config())
    with pytest.raises(ValueError) as excinfo:
        tokenizer.encode(torch.rand(1, 3, 8, 7))
    assert "multiple of the downsample factor 2" in one_line_error(excinfo)
    with pytest.raises(ValueError) as excinfo:
        tokenizer.encode(torch.rand(3, 8, 8))
    one_line_error(excinfo)
    with pytest.raises(ValueError) as excinfo:
        tokenizer.decode(torch.full((1, 2, 2), 64))
    assert "[0, 64)" in one_line_error(excinfo)
    with pytest.raises(ValueError) as excinfo:
        tokenizer.decode(torch.zeros(1, 4))
    one_line_error(excinfo)


def test_bad_configs_raise_one_line_value_errors():
    with pytest.raises(Magvit2Error) as excinfo:
        Magvit2Config(encoder=CoderConfig(num_res_blocks=[1, 1]))
    one_line_error(excinfo)
    with pytest.raises(Magvit2Error) as excinfo:
        Magvit2Config(codebook_dim=10)
    assert "z_channels" in one_line_error(excinfo)
    with pytest.raises(Magvit2Error) as excinfo:
        Magvit2Config(encoder=CoderConfig(ch=48, ch_mult=[1, 1, 1, 1, 1]))
    one_line_error(excinfo)


def test_weight_errors_name_the_problem(tmp_path):
    with pytest.raises(Magvit2Error) as excinfo:
        Magvit2Tokenizer.from_pretrained(tmp_path)
    assert "no MAGVIT-v2 weight file" in one_line_error(excinfo)

    random_tokenizer(small_config(ch=64)).save_pretrained(tmp_path)
    with pytest.raises(Magvit2Error) as excinfo:
        Magvit2Tokenizer.from_pretrained(tmp_path, config=small_config(ch=32))
    message = one_line_error(excinfo)
    assert message == (
        "weight encoder.conv_in.weight has shape (64, 3, 3, 3) but the config expects (32, 3, 3, 3)"
    )

    state = load_file(tmp_path / "model.safetensors")
    del state["decoder.conv_out.bias"]
    state["encoder.extra.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(Magvit2Error) as excinfo:
        Magvit2Tokenizer.from_pretrained(tmp_path)
    message = one_line_error(excinfo)
    assert "decoder.conv_out.bias" in message and "encoder.extra.weight" in message
