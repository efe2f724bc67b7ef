"""MAGVIT-v2 image tokenizer (the image tokenizer of the MMaDA-Parallel-M family).

A convolutional encoder maps pixels in [-1, 1] to a latent grid with `codebook_dim` channels at
1/`downsample` resolution; a lookup-free quantizer (LFQ) turns each latent vector into a code by
the signs of its channels; the decoder maps the ±1 codebook entries back to pixels.

Encoder: conv_in -> per level [residual blocks (+ self-attention), downsample] -> mid (block,
attention, block) -> GroupNorm, swish, conv_out -> 1x1 quant_conv.
Decoder: 1x1 post_quant_conv -> conv_in -> mid -> per level, coarsest first [residual blocks
(+ self-attention), nearest x2 upsample + conv] -> GroupNorm, swish, conv_out.

Module names follow the released checkpoint (`encoder.*`, `decoder.*`, `quantize.embedding`,
`quantize.power_vals`), so its `model.safetensors` loads as is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from paradiff.image_tokenizers.base import ImageInputError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
GROUP_NORM_GROUPS = 32


class Magvit2Error(ValueError):
    """A MAGVIT-v2 config, weight file or weight tensor that cannot be used."""


@dataclass
class CoderConfig:
    """Settings of the encoder or the decoder.

    `ch_mult[i]` scales `ch` to the width of level i; level i holds `num_res_blocks[i]` residual
    blocks. A level whose nominal resolution (starting from `resolution`, halved per level) is
    in `attn_resolutions` gets a self-attention block after each residual block.
    """

    ch: int = 128
    ch_mult: list[int] = field(default_factory=lambda: [1, 2, 2, 4, 4])
    num_res_blocks: list[int] = field(default_factory=lambda: [4, 3, 4, 3, 4])
    attn_resolutions: list[int] = field(default_factory=lambda: [5])
    z_channels: int = 13
    resolution: int = 256

    @classmethod
    def from_dict(cls, settings: dict) -> CoderConfig:
        """Read one `encoder`/`decoder` section; keys without an inference effect are ignored."""
        known = {name: settings[name] for name in cls.__dataclass_fields__ if name in settings}
        if isinstance(known.get("num_res_blocks"), int):
            known["num_res_blocks"] = [known["num_res_blocks"]] * len(
                known.get("ch_mult", cls().ch_mult)
            )
        return cls(**known)

    def widths(self) -> list[int]:
        return [self.ch * mult for mult in self.ch_mult]


def _default_decoder() -> CoderConfig:
    return CoderConfig(ch_mult=[1, 1, 2, 2, 4], num_res_blocks=[4, 4, 3, 4, 3])


@dataclass
class Magvit2Config:
    """Encoder and decoder settings plus the LFQ width (`codebook_dim` bits per code).

    Defaults are the released MMaDA-Parallel-M tokenizer: 16x downsampling, 2^13 = 8192 codes.
    """

    encoder: CoderConfig = field(default_factory=CoderConfig)
    decoder: CoderConfig = field(default_factory=_default_decoder)
    codebook_dim: int = 13

    def __post_init__(self) -> None:
        for name, coder in (("encoder", self.encoder), ("decoder", self.decoder)):
            if len(coder.num_res_blocks) != len(coder.ch_mult):
                raise Magvit2Error(
                    f"{name}: num_res_blocks has {len(coder.num_res_blocks)} entries but ch_mult "
                    f"has {len(coder.ch_mult)}"
                )
            if coder.z_channels != self.codebook_dim:
                raise Magvit2Error(
                    f"{name}: z_channels {coder.z_channels} differs from codebook_dim "
                    f"{self.codebook_dim}"
                )
            for width in coder.widths():
                if width % GROUP_NORM_GROUPS:
                    raise Magvit2Error(
                        f"{name}: channel width {width} is not a multiple of the "
                        f"{GROUP_NORM_GROUPS} normalization groups"
                    )
        if len(self.encoder.ch_mult) != len(self.decoder.ch_mult):
            raise Magvit2Error(
                f"encoder has {len(self.encoder.ch_mult)} levels but decoder has "
                f"{len(self.decoder.ch_mult)}: downsampling and upsampling factors differ"
            )

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.encoder.ch_mult) - 1)

    @property
    def codebook_size(self) -> int:
        return 2**self.codebook_dim

    @classmethod
    def from_dict(cls, settings: dict) -> Magvit2Config:
        """Read the config.json format: keys `encoder`, `decoder`, `codebook_dim` (others ignored)."""
        defaults = cls()
        return cls(
            encoder=CoderConfig.from_dict(settings["encoder"])
            if "encoder" in settings
            else defaults.encoder,
            decoder=CoderConfig.from_dict(settings["decoder"])
            if "decoder" in settings
            else defaults.decoder,
            codebook_dim=settings.get("codebook_dim", defaults.codebook_dim),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(GROUP_NORM_GROUPS, channels, eps=1e-6, affine=True)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=padding)


class ResidualBlock(nn.Module):
    """x + conv2(swish(norm2(conv1(swish(norm1(x)))))), with a 1x1 shortcut when widths differ."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.norm2 = _group_norm(out_channels)
        self.conv2 = _conv3x3(out_channels, out_channels)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C_in, H, W) -> (B, C_out, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class SelfAttention2d(nn.Module):
    """x + proj_out(softmax(q k^T / sqrt(C)) v): one head over all H*W positions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        batch, channels, height, width = x.shape
        normed = self.norm(x)

        def tokens(proj: nn.Conv2d) -> torch.Tensor:  # (B, 1, H*W, C)
            return proj(normed).flatten(2).transpose(1, 2).unsqueeze(1)

        attended = F.scaled_dot_product_attention(tokens(self.q), tokens(self.k), tokens(self.v))
        attended = attended.squeeze(1).transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.proj_out(attended)


class Downsample(nn.Module):
    """Zero-pad one pixel right and bottom, then a 3x3 stride-2 conv: (H, W) -> (H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3x3(channels, channels, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv: (H, W) -> (2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = _conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """Residual blocks of one resolution, each followed by attention when the level has it."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, attention: bool):
        super().__init__()
        widths = [in_channels] + [out_channels] * num_blocks
        self.block = nn.ModuleList(
            ResidualBlock(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.attn = nn.ModuleList(
            SelfAttention2d(out_channels) for _ in range(num_blocks if attention else 0)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[index](x)
        return x


class MidBlock(nn.Module):
    """Residual block, self-attention, residual block at the coarsest resolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = ResidualBlock(channels, channels)
        self.attn_1 = SelfAttention2d(channels)
        self.block_2 = ResidualBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Magvit2Encoder(nn.Module):
    """Pixels (B, 3, H, W) in [-1, 1] -> latents (B, z_channels, H/f, W/f), f = 2^(levels-1)."""

    def __init__(self, config: CoderConfig) -> None:
        super().__init__()
        widths = config.widths()
        self.conv_in = _conv3x3(3, config.ch)
        self.down = nn.ModuleList()
        in_channels, resolution = config.ch, config.resolution
        for level, (width, num_blocks) in enumerate(
            zip(widths, config.num_res_blocks, strict=True)
        ):
            stage = Level(in_channels, width, num_blocks, resolution in config.attn_resolutions)
            if level != len(widths) - 1:
                stage.downsample = Downsample(width)
                resolution //= 2
            self.down.append(stage)
            in_channels = width
        self.mid = MidBlock(in_channels)
        self.norm_out = _group_norm(in_channels)
        self.conv_out = _conv3x3(in_channels, config.z_channels)
        self.quant_conv = nn.Conv2d(config.z_channels, config.z_channels, kernel_size=1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(pixels)  # (B, ch, H, W)
        for stage in self.down:
            h = stage(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)  # (B, C_last, H/f, W/f)
        h = self.conv_out(F.silu(self.norm_out(h)))
        return self.quant_conv(h)  # (B, z_channels, H/f, W/f)


class Magvit2Decoder(nn.Module):
    """Quantized latents (B, z_channels, h, w) -> pixels (B, 3, h*f, w*f), about [-1, 1]."""

    def __init__(self, config: CoderConfig) -> None:
        super().__init__()
        widths = config.widths()
        levels = len(widths)
        in_channels = widths[-1]
        resolution = config.resolution // 2 ** (levels - 1)
        self.post_quant_conv = nn.Conv2d(config.z_channels, config.z_channels, kernel_size=1)
        self.conv_in = _conv3x3(config.z_channels, in_channels)
        self.mid = MidBlock(in_channels)
        stages: list[Level] = []  # built coarsest first, stored finest first as `up.{level}`
        for level in reversed(range(levels)):
            stage = Level(
                in_channels,
                widths[level],
                config.num_res_blocks[level],
                resolution in config.attn_resolutions,
            )
            if level != 0:
                stage.upsample = Upsample(widths[level])
                resolution *= 2
            stages.insert(0, stage)
            in_channels = widths[level]
        self.up = nn.ModuleList(stages)
        self.norm_out = _group_norm(in_channels)
        self.conv_out = _conv3x3(in_channels, 3)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(self.post_quant_conv(latents))  # (B, C_last, h, w)
        h = self.mid(h)
        for stage in reversed(self.up):
            h = stage(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 3, h*f, w*f)


class LookupFreeQuantizer(nn.Module):
    """LFQ over K = codebook_dim channels, no learned codebook.

    bit_i = (z_i > 0); code = sum_i bit_i * 2^(K-1-i) (channel 0 is the most significant bit);
    codebook entry of a code = 2 * bit - 1, i.e. ±1 per channel (`embedding`, (2^K, K)).
    """

    def __init__(self, codebook_dim: int) -> None:
        super().__init__()
        power_vals = 2 ** torch.arange(codebook_dim - 1, -1, -1)  # (K,) MSB first
        bits = (torch.arange(2**codebook_dim).unsqueeze(1) // power_vals) % 2  # (2^K, K)
        self.register_buffer("embedding", bits.float() * 2 - 1)
        self.register_buffer("power_vals", power_vals)

    def codes(self, latents: torch.Tensor) -> torch.Tensor:  # (B, K, h, w) -> (B, h, w)
        bits = (latents > 0).long()
        return (bits * self.power_vals.view(1, -1, 1, 1)).sum(dim=1)

    def entries(self, codes: torch.Tensor) -> torch.Tensor:  # (B, h, w) -> (B, K, h, w)
        return self.embedding[codes].permute(0, 3, 1, 2).contiguous()


class Magvit2Tokenizer(nn.Module):
    """MAGVIT-v2 encoder + LFQ + decoder behind the paradiff `ImageTokenizer` protocol.

    `encode`/`decode` speak images in [0, 1]; the network works in [-1, 1] (x * 2 - 1 in,
    (y + 1) / 2 clamped out). `encode_pixels`/`decode_codes_raw` expose the [-1, 1] side.
    """

    def __init__(self, config: Magvit2Config | None = None) -> None:
        super().__init__()
        self.config = config or Magvit2Config()
        self.downsample = self.config.downsample
        self.codebook_size = self.config.codebook_size
        self.encoder = Magvit2Encoder(self.config.encoder)
        self.decoder = Magvit2Decoder(self.config.decoder)
        self.quantize = LookupFreeQuantizer(self.config.codebook_dim)

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ImageInputError(f"expected images (B, 3, H, W), got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % self.downsample or width % self.downsample:
            raise ImageInputError(
                f"image size {height}x{width} is not a multiple of the downsample factor "
                f"{self.downsample}"
            )

    def _check_codes(self, codes: torch.Tensor) -> None:
        if codes.dim() != 3 or codes.dtype.is_floating_point:
            raise ValueError(
                f"expected integer codes (B, h, w), got {codes.dtype} {tuple(codes.shape)}"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(
                f"codes must lie in [0, {self.codebook_size}), got [{int(codes.min())}, "
                f"{int(codes.max())}]"
            )

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [-1, 1] -> codes (B, H/f, W/f), int64."""
        self._check_images(pixels)
        latents = self.encoder(pixels.to(self.encoder.conv_in.weight))  # (B, K, h, w)
        return self.quantize.codes(latents)

    @torch.no_grad()
    def decode_codes_raw(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> decoder output (B, 3, h*f, w*f), roughly [-1, 1], not clamped."""
        self._check_codes(codes)
        entries = self.quantize.entries(codes.to(self.quantize.embedding.device).long())
        return self.decoder(entries.to(self.decoder.conv_in.weight))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> codes (B, H/f, W/f) in [0, codebook_size)."""
        return self.encode_pixels(images * 2 - 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> images (B, 3, h*f, w*f) in [0, 1], float32."""
        return ((self.decode_codes_raw(codes).float() + 1) / 2).clamp(0, 1)

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Strictly load upstream-named tensors; a one-line error names what does not fit."""
        expected = self.state_dict()
        missing = sorted(expected.keys() - state.keys())
        unexpected = sorted(state.keys() - expected.keys())
        if missing or unexpected:
            raise Magvit2Error(
                f"weights do not match the config: missing {_listing(missing)}; "
                f"unexpected {_listing(unexpected)}"
            )
        for name, target in expected.items():
            if state[name].shape != target.shape:
                raise Magvit2Error(
                    f"weight {name} has shape {tuple(state[name].shape)} but the config expects "
                    f"{tuple(target.shape)}"
                )
        self.load_state_dict(state, strict=True, assign=True)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        config: Magvit2Config | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Magvit2Tokenizer:
        """Load from a folder holding `model.safetensors` (+ `config.json`) or from the file itself.

        Without `config`, the config.json beside the weights is read if present, else the
        released tokenizer's defaults are used.
        """
        path = Path(path)
        weights_path = path / WEIGHTS_NAME if path.is_dir() else path
        if not weights_path.is_file():
            raise Magvit2Error(f"no MAGVIT-v2 weight file at {weights_path}")
        config_path = weights_path.parent / CONFIG_NAME
        if config is None and config_path.is_file():
            config = Magvit2Config.from_dict(json.loads(config_path.read_text()))
        with torch.device("meta"):
            tokenizer = cls(config)
        tokenizer.load_weights(load_file(weights_path))
        return tokenizer.to(device=device, dtype=dtype).eval()

    def save_pretrained(self, directory: str | Path) -> None:
        """Write `config.json` and `model.safetensors` (upstream tensor names) to `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=1))
        state = {name: tensor.contiguous() for name, tensor in self.state_dict().items()}
        save_file(state, directory / WEIGHTS_NAME)


def _listing(names: Sequence[str], shown: int = 3) -> str:
    """'a, b, c (+N more)' or 'none'."""
    if not names:
        return "none"
    more = f" (+{len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
