"""Read and write HF-style checkpoint directories.

A checkpoint directory holds `config.json` and the weights as `model.safetensors` or as shards
listed in `model.safetensors.index.json`, with upstream key names (`model.transformer.…`), and
the tokenizers beside them. Writing is atomic: everything goes to a temporary sibling directory
that is renamed into place. This module sits below the model: it builds whatever module class it
is handed (`MaskPredictor.from_pretrained` hands its own).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from paradiff.config import ConfigError, ModelConfig, parse_dtype
from paradiff.files import SAVE_TOKEN, SCRATCH_MARKER
from paradiff.image_tokenizers.base import ImageTokenizer
from paradiff.image_tokenizers.loading import load_image_tokenizer
from paradiff.layout import TokenSpace
from paradiff.text_tokenizer import REQUIRED_SPECIAL_TOKENS, TextTokenizer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be read or does not fit the model."""


def download_snapshot(repo_id: str, repo_type: str = "model") -> Path:
    """Fetch a hub repository's files, a model's or (`repo_type` 'dataset') a data set's (needs a
    network; tests replace this function)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, repo_type=repo_type))


def is_hub_id(text: str) -> bool:
    """`owner/name`, the form of a hub repository id."""
    return bool(_HUB_ID.match(text))


def resolve_checkpoint_dir(path_or_hub_id: str | os.PathLike) -> Path:
    """A local directory as is; an `owner/name` hub id through `download_snapshot`."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"checkpoint path {path} is a file, not a directory")
    if is_hub_id(str(path_or_hub_id)):
        return download_snapshot(str(path_or_hub_id))
    raise CheckpointError(f"no checkpoint directory at {path}")


def read_config(directory: Path) -> ModelConfig:
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"no {CONFIG_NAME} in {directory}")
    try:
        return ModelConfig.from_json(path)
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{path}: {err}") from None


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a checkpoint: the index's shards, or the single file."""
    index = directory / INDEX_NAME
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (directory / s).is_file()]
        if missing:
            raise CheckpointError(f"{INDEX_NAME} in {directory} lists missing shard {missing[0]}")
        return [directory / s for s in shards]
    single = directory / WEIGHTS_NAME
    if single.is_file():
        return [single]
    raise CheckpointError(f"no {WEIGHTS_NAME} or {INDEX_NAME} in {directory}")


def load_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(directory):
        try:
            state.update(load_file(str(file)))
        except Exception as err:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read {file}: {err}") from None
    return state


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Every model tensor present with its exact shape, and nothing unknown."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            raise CheckpointError(f"checkpoint lacks tensor {name}")
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"shape mismatch for {name}: checkpoint {tuple(state[name].shape)}, "
                f"model {tuple(tensor.shape)}"
            )
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise CheckpointError(f"checkpoint has unexpected tensor {unknown[0]}")


def load_model(
    model_class: Callable[[ModelConfig], nn.Module],
    path_or_hub_id: str | os.PathLike,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
) -> nn.Module:
    """Build `model_class(config)` from a checkpoint; `dtype` defaults to the config's dtype."""
    directory = resolve_checkpoint_dir(path_or_hub_id)
    config = read_config(directory)
    target_dtype = parse_dtype(dtype) or config.torch_dtype
    with torch.device("meta"):
        model = model_class(config)
    state = load_state_dict(directory)
    check_state_dict(model, state)
    model.load_state_dict(state, assign=True)
    return model.to(device=device, dtype=target_dtype).eval()


def save_model(
    model: nn.Module,
    directory: str | os.PathLike,
    max_shard_bytes: int | None = None,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write `model.config` as config.json and the weights (sharded past `max_shard_bytes`)
    atomically into `directory`.

    `write_extra(tmp_dir)` may add files (tokenizers, sampler settings) before the rename. An
    existing directory is replaced only once the new one is complete.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    # the marker tells a later run that this scratch folder is paradiff's (and may go)
    (tmp / SCRATCH_MARKER).write_text(json.dumps({"token": SAVE_TOKEN, "pid": os.getpid()}))
    try:
        config = model.config.to_dict()
        config["dtype"] = config["torch_dtype"] = str(model.dtype).removeprefix("torch.")
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        _write_weights(state, tmp, max_shard_bytes)
        if write_extra is not None:
            write_extra(tmp)
        (tmp / SCRATCH_MARKER).unlink()
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_tokenizers(
    directory: Path, space: TokenSpace, device: torch.device | str = "cpu"
) -> tuple[TextTokenizer, ImageTokenizer]:
    """The text and image tokenizers saved in a checkpoint directory."""
    required = REQUIRED_SPECIAL_TOKENS if space.family == "A" else ()
    text_tokenizer = TextTokenizer.from_pretrained(directory, required_special_tokens=required)
    return text_tokenizer, load_image_tokenizer(directory, device=device)


def _write_weights(state: dict[str, torch.Tensor], directory: Path, max_shard_bytes: int | None):
    total = sum(t.numel() * t.element_size() for t in state.values())
    if max_shard_bytes is None or total <= max_shard_bytes:
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        return
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing `target` is moved aside first, then deleted."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
