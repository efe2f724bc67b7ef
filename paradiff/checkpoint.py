"""Read and write HF-style checkpoint directories.

A checkpoint directory holds `config.json` and the weights as `model.safetensors` or as shards
listed in `model.safetensors.index.json`, with upstream key names (`model.transformer.…`), and
the tokenizers beside them. Writing is atomic: everything goes to a temporary sibling directory
that is renamed into place. This module sits below the model: it builds whatever module class it
is handed (`MaskPredictor.from_pretrained` hands its own).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from paradiff.files import SAVE_TOKEN, SCRATCH_MARKER
from paradiff.image_tokenizers.base import ImageTokenizer
from paradiff.image_tokenizers.loading import load_image_tokenizer
from paradiff.layout import TokenSpace
from paradiff.model_config import ConfigError, ModelConfig, parse_dtype
from paradiff.text_tokenizer import REQUIRED_SPECIAL_TOKENS, TextTokenizer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
BUNDLED_MODELS = Path(__file__).parent / "assets"
DEFAULT_MODEL = "shapes"
# the SFT model under the name it keeps once a model finished by RL becomes the default (today
# the shipped model is the SFT model itself)
BUNDLED_ALIASES = {"shapes-sft": DEFAULT_MODEL}


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be read or does not fit the model."""


def download_snapshot(repo_id: str, repo_type: str = "model") -> Path:
    """Fetch a hub repository's files, a model's or (`repo_type` 'dataset') a data set's (needs a
    network; tests replace this function)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type=repo_type))
    except Exception as err:  # the hub client's own errors: network, not found, access
        reason = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        raise CheckpointError(
            f"{repo_id} is no folder here, and as a hub {repo_type} id it could not be fetched "
            f"({type(err).__name__}: {reason})"
        ) from None


def is_hub_id(text: str) -> bool:
    """`owner/name`, the form of a hub repository id."""
    return bool(_HUB_ID.match(text))


def bundled_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The directory of a model shipped inside the package (`paradiff/assets/<name>`), by its
    name or another name it goes by (`BUNDLED_ALIASES`)."""
    path = BUNDLED_MODELS / BUNDLED_ALIASES.get(name, name)
    if not (path / CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"no bundled model {name!r} (available: {bundled_model_names() or 'none'})"
        )
    return path


def bundled_model_names() -> list[str]:
    """The names a bundled model answers to: its folder's, and its aliases."""
    folders = [p.name for p in BUNDLED_MODELS.glob("*") if (p / CONFIG_NAME).is_file()]
    aliases = [alias for alias, folder in BUNDLED_ALIASES.items() if folder in folders]
    return sorted(folders + aliases)


def resolve_checkpoint_dir(path_or_hub_id: str | os.PathLike | None = None) -> Path:
    """The local directory of a model: a bundled one (by default, or by a bare name such as
    `shapes`), a checkpoint directory (any path: `./shapes` is a local folder, not the bundled
    model), or an `owner/name` hub id's snapshot (`download_snapshot`)."""
    if path_or_hub_id is None:
        return bundled_model_dir()
    name = path_or_hub_id if isinstance(path_or_hub_id, str) else None
    if name is not None and name in bundled_model_names():
        return bundled_model_dir(name)
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
    check_shapes(model, {name: tuple(tensor.shape) for name, tensor in state.items()})


def check_shapes(model: nn.Module, shapes: dict[str, tuple[int, ...]]) -> None:
    """`check_state_dict` on the checkpoint's tensor shapes {name: shape}."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in shapes:
            raise CheckpointError(f"checkpoint lacks tensor {name}")
        if tuple(shapes[name]) != tuple(tensor.shape):
            raise CheckpointError(
                f"shape mismatch for {name}: checkpoint {tuple(shapes[name])}, "
                f"model {tuple(tensor.shape)}"
            )
    unknown = sorted(set(shapes) - set(expected))
    if unknown:
        raise CheckpointError(f"checkpoint has unexpected tensor {unknown[0]}")


def load_model(
    model_class: Callable[[ModelConfig], nn.Module],
    path_or_hub_id: str | os.PathLike,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
    quantize: str | None = None,
) -> nn.Module:
    """Build `model_class(config)` from a checkpoint; `dtype` defaults to the config's dtype.

    `quantize` ('int8' or 'int4', see `paradiff.quantization`) streams the weights in: the model
    is built on the meta device and each tensor is read, cast, moved and quantized in turn, so
    the float model is never whole in memory (`load_streamed`). int4 computes in bfloat16 unless
    `dtype` says otherwise (torch's CPU int4 kernel is ~40x slower on float32 activations)."""
    directory = resolve_checkpoint_dir(path_or_hub_id)
    config = read_config(directory)
    target_dtype = parse_dtype(dtype) or config.torch_dtype
    if quantize == "int4" and dtype is None:  # int4 kernels are fast on bfloat16 activations
        target_dtype = torch.bfloat16
    if quantize is not None:
        return load_streamed(model_class, directory, config, target_dtype, device, quantize)
    with torch.device("meta"):
        model = model_class(config)
    state = load_state_dict(directory)
    check_state_dict(model, state)
    model.load_state_dict(state, assign=True)
    return model.to(device=device, dtype=target_dtype).eval()


# -- streamed loading --------------------------------------------------------------------------
SAFETENSORS_DTYPES = {
    "BF16": torch.bfloat16,
    "F16": torch.float16,
    "F32": torch.float32,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
MAX_HEADER_BYTES = 100 << 20  # safetensors' own limit


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor of a safetensors file lies: `start` and `stop` bytes in the file."""

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int
    stop: int


def read_safetensors_header(file: Path) -> dict[str, TensorEntry]:
    """The tensors of a safetensors file, from its header alone (no tensor data is read)."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
                raise ValueError("bad header length")
            header = json.loads(handle.read(length))
        header.pop("__metadata__", None)
        entries = {}
        for name, raw in header.items():
            dtype = SAFETENSORS_DTYPES[raw["dtype"]]
            shape = tuple(int(n) for n in raw["shape"])
            begin, end = (8 + length + int(n) for n in raw["data_offsets"])
            count = math.prod(shape)
            itemsize = torch.empty((), dtype=dtype).element_size()
            if min(shape, default=0) < 0 or end - begin != count * itemsize or end > size:
                raise ValueError(f"tensor {name} does not fit the file")
            entries[name] = TensorEntry(file, dtype, shape, begin, end)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"cannot read {file}: {err}") from None
    return entries


def read_tensor(handle, entry: TensorEntry) -> torch.Tensor:
    """One tensor's bytes read from an open file into a fresh buffer (no memory map: only this
    tensor is resident)."""
    nbytes = entry.stop - entry.start
    if nbytes == 0:
        return torch.empty(entry.shape, dtype=entry.dtype)
    buffer = bytearray(nbytes)
    handle.seek(entry.start)
    if handle.readinto(buffer) != nbytes:
        raise CheckpointError(f"cannot read {entry.file}: it ends inside a tensor")
    return torch.frombuffer(buffer, dtype=entry.dtype).reshape(entry.shape)


def read_rows(handle, entry: TensorEntry, start: int, stop: int) -> torch.Tensor:
    """Rows start..stop of a tensor (its first dimension) read from an open file."""
    row = math.prod(entry.shape[1:]) * (entry.stop - entry.start) // max(1, math.prod(entry.shape))
    part = TensorEntry(
        entry.file,
        entry.dtype,
        (stop - start, *entry.shape[1:]),
        entry.start + start * row,
        entry.start + stop * row,
    )
    return read_tensor(handle, part)


def _release_freed_memory() -> None:
    """Hand freed heap memory back to the system (glibc keeps it otherwise, and the resident
    size would grow with every tensor read and quantized); a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def load_streamed(
    model_class: Callable[[ModelConfig], nn.Module],
    directory: Path,
    config: ModelConfig,
    dtype: torch.dtype,
    device: torch.device | str,
    quantize: str,
) -> nn.Module:
    """Build `model_class(config)` on the meta device, then fill it one checkpoint tensor at a
    time: read, checked finite, cast to `dtype`, moved to `device` and, for a linear layer's
    weight, quantized (`paradiff.quantization.Quantizer`) before the next one is read. Every
    name and shape is checked from the files' headers before any tensor is read. The model
    records what was done in `model.quantization` ({mode, stored, bytes, quantized_bytes})."""
    from paradiff.quantization import (
        Quantizer,
        check_quantization,
        compute_dtype,
        model_bytes,
        quantized_linears,
    )

    device = torch.device(device)
    check_quantization(quantize, device, dtype)
    dtype = compute_dtype(quantize, device, dtype)
    quantizer = Quantizer(quantize, device)
    with torch.device("meta"):
        model = model_class(config)
    entries: dict[str, TensorEntry] = {}
    for file in weight_files(directory):
        entries.update(read_safetensors_header(file))
    check_shapes(model, {name: entry.shape for name, entry in entries.items()})
    modules = dict(model.named_modules())
    linears = {f"{name}.weight": (name, is_head) for name, _, is_head in quantized_linears(model)}
    by_file: dict[Path, list[tuple[str, TensorEntry]]] = {}
    for name, entry in entries.items():
        by_file.setdefault(entry.file, []).append((name, entry))
    for file, items in by_file.items():
        with open(file, "rb") as handle:
            for name, entry in sorted(items, key=lambda item: item[1].start):
                _release_freed_memory()
                owner, _, attr = name.rpartition(".")
                module = modules[owner]
                if name in linears and quantizer.in_row_blocks(owner, module, linears[name][1]):

                    def rows(start, stop, name=name, entry=entry):
                        block = read_rows(handle, entry, start, stop)
                        return _ready(block, name, directory, device, dtype)

                    quantizer.apply_rows(owner, module, rows)  # never the whole float weight
                    continue
                tensor = _ready(read_tensor(handle, entry), name, directory, device, dtype)
                if attr in module._buffers:
                    module._buffers[attr] = tensor
                else:
                    module._parameters[attr] = nn.Parameter(tensor, requires_grad=False)
                if name in linears:
                    quantizer.apply(linears[name][0], module, is_head=linears[name][1])
                del tensor
    _release_freed_memory()
    model.quantization = {
        "mode": quantize,
        "stored": dict(quantizer.stored),
        "bytes": model_bytes(model),  # every tensor, as stored
        "quantized_bytes": quantizer.bytes,  # the quantized weights (data and scales)
    }
    return model.eval()


def _ready(tensor: torch.Tensor, name: str, directory: Path, device, dtype) -> torch.Tensor:
    """A tensor read from a checkpoint, checked finite and cast (floats) and moved."""
    if not tensor.is_floating_point():
        return tensor.to(device=device)
    for part in tensor.reshape(-1).split(1 << 22):  # a float32 sum of a part: small temporaries
        if not torch.isfinite(part.sum(dtype=torch.float32)):
            if not torch.isfinite(part).all():  # not a sum that overflowed
                raise CheckpointError(f"{directory}: weight {name} holds NaN or inf values")
    return tensor.to(device=device, dtype=dtype)


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
