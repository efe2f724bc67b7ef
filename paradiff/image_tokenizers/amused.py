"""The aMUSEd VQ image tokenizer of MMaDA-Parallel-A: a diffusers `VQModel` behind `ImageTokenizer`.

Pixels go in as float (B, 3, H, W) in [0, 1] (the aMUSEd VQ is trained on unnormalised pixels);
codes come out as (B, H / 16, W / 16) indices into its 8192-entry codebook. The nearest-code search
runs in float32 whatever the model dtype, so the codes of an image do not depend on it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from paradiff.files import first_line
from paradiff.image_tokenizers.base import check_codes, check_image_batch
from paradiff.quantization import quiet_torchao

with quiet_torchao():  # diffusers imports torchao when it is installed
    from diffusers import VQModel

CONFIG_FILE = "config.json"
VQ_SUBFOLDER = "vqvae"  # where a full checkpoint keeps its VQ model
HUB_ID_PATTERN = re.compile(r"^[\w.-]+/[\w.-]+$")


class AmusedError(ValueError):
    """A VQ model that cannot be found or loaded."""


def _resolve_source(path: str, subfolder: str | None) -> tuple[str, str | None]:
    """(what, subfolder) to hand to `VQModel.from_pretrained` for a local folder or a hub id."""
    local = Path(path, subfolder) if subfolder else Path(path)
    if local.is_dir():
        if not (local / CONFIG_FILE).is_file() and (local / VQ_SUBFOLDER / CONFIG_FILE).is_file():
            local = local / VQ_SUBFOLDER  # a checkpoint folder holding vqvae/
        if not (local / CONFIG_FILE).is_file():
            raise AmusedError(f"no {CONFIG_FILE} in {local}")
        return str(local), None
    if HUB_ID_PATTERN.match(path) and not Path(path).exists():
        return path, subfolder
    raise AmusedError(f"no VQ model folder at {local}")


def nearest_codes(latents: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the closest codebook row (L2, float32) for each latent vector.

    latents (B, D, h, w), codebook (K, D) -> codes (B, h, w) long.
    """
    batch, dim, height, width = latents.shape
    vectors = latents.permute(0, 2, 3, 1).reshape(-1, dim).float()  # (B*h*w, D)
    distances = torch.cdist(vectors, codebook.float())  # (B*h*w, K)
    return distances.argmin(dim=1).reshape(batch, height, width)


class AmusedTokenizer:
    """Images (B, 3, H, W) in [0, 1] <-> codes (B, H / downsample, W / downsample).

    `downsample` = 2 ** (number of VQ blocks - 1) (16 for aMUSEd), `codebook_size` = the number of
    VQ embeddings (8192 for aMUSEd).
    """

    def __init__(self, vq_model: VQModel) -> None:
        self.vq_model = vq_model.eval().requires_grad_(False)
        config = vq_model.config
        self.downsample: int = 2 ** (len(config.block_out_channels) - 1)
        self.codebook_size: int = config.num_vq_embeddings

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        subfolder: str | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> AmusedTokenizer:
        """Load a diffusers VQModel folder (config.json + weights).

        `path` is the `vqvae/` folder itself, a checkpoint folder holding one, or a hub id (such as
        "amused/amused-256" with `subfolder="vqvae"`), which goes to diffusers unchanged. A model
        whose config sets `force_upcast` stays in float32 when float16 is asked for.
        """
        source, source_subfolder = _resolve_source(os.fspath(path), subfolder)
        try:
            config = VQModel.load_config(source, subfolder=source_subfolder)
            if dtype == torch.float16 and config.get("force_upcast", False):
                dtype = torch.float32
            vq_model = VQModel.from_pretrained(
                source, subfolder=source_subfolder, torch_dtype=dtype
            )
        except (OSError, ValueError, RuntimeError) as err:
            raise AmusedError(f"cannot load a VQ model from {source}: {first_line(err)}") from None
        return cls(vq_model.to(device))

    @property
    def device(self) -> torch.device:
        return self.vq_model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vq_model.dtype

    @property
    def codebook(self) -> torch.Tensor:
        """The codebook (codebook_size, D)."""
        return self.vq_model.quantize.embedding.weight

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> codes (B, H / downsample, W / downsample) long."""
        check_image_batch(images, self.downsample)
        pixels = images.to(device=self.device, dtype=self.dtype)
        latents = self.vq_model.encode(pixels).latents  # (B, D, h, w)
        return nearest_codes(latents, self.codebook)

    @torch.no_grad()
    def codebook_latents(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> their codebook vectors as latents (B, D, h, w)."""
        check_codes(codes, self.codebook_size)
        latents = self.codebook[codes.to(device=self.device, dtype=torch.long)]  # (B, h, w, D)
        return latents.permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> images (B, 3, h * downsample, w * downsample) float32 in [0, 1]."""
        check_codes(codes, self.codebook_size)
        codes = codes.to(device=self.device, dtype=torch.long)
        if self.vq_model.config.lookup_from_codebook:  # the model looks the codes up itself
            batch, height, width = codes.shape
            shape = (batch, height, width, self.codebook.shape[1])
            output = self.vq_model.decode(codes.reshape(-1), force_not_quantize=True, shape=shape)
        else:
            output = self.vq_model.decode(self.codebook_latents(codes), force_not_quantize=True)
        return output.sample.float().clamp(0, 1)
