"""Weight-only int8 / int4 quantization of the model's linear layers (with torchao), and CPU
offload of the transformer blocks (with accelerate).

`--quantize int8` stores every linear layer's weight as int8 with one scale per output row
(torchao `Int8WeightOnlyConfig`); `--quantize int4` stores the transformer blocks' linear layers
as int4 in groups of 128 input columns (64 or 32 where the width needs it; torchao's tinygemm
layouts: `PrototypeInt4WeightOnlyConfig` on the CPU, `Int4WeightOnlyConfig` on CUDA) and the
output head as int8 (the sampler reads vocabulary slices of the head, which int4's packed layout
cannot give). A layer int4 cannot pack (a width that is no multiple of 32, or out-features no
multiple of 16) is stored as int8 instead. The input embedding, the norms and the image-grid
tables keep the float dtype. Activations stay in the float dtype (weight-only); int4 computes in
bfloat16 unless a dtype is given (the CPU int4 kernel is ~40x slower on float32 activations:
a forward of the bundled model took 116 s against 2.3 s in bfloat16).

`check_quantization` says, before any weight is read, what the installed torch / torchao or the
device lacks for a mode, in one line (`QuantizationUnavailable`). `Quantizer.apply` quantizes one
`nn.Linear` in place; `paradiff.checkpoint.load_model(quantize=…)` calls it tensor by tensor while
it streams a checkpoint in. `offload_blocks` keeps the blocks' weights on the CPU and moves each
block's to the GPU only while it runs (accelerate's `cpu_offload`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

QUANTIZE_MODES = ("int8", "int4")
INT4_GROUP_SIZES = (128, 64, 32)  # the first that divides a layer's in-features
INT8_BLOCK_VALUES = 1 << 24  # larger weights are quantized to int8 in blocks of rows this size
INSTALL_HINT = "pip install 'paradiff[quant]'"
MIN_TORCHAO = (0, 14)


class QuantizationUnavailable(ValueError):
    """A quantization this installation or device cannot run (one line: what is missing)."""


@contextmanager
def quiet_torchao():
    """Silence the warnings torchao's import logs (optional kernels it does not find, enums
    registered with torch's pytree, diffusers' note on torchao tensors it cannot import) while the
    block runs."""
    names = ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def import_torchao():
    """The torchao module, imported quietly; QuantizationUnavailable when it is missing, broken
    or too old."""
    try:
        with quiet_torchao():
            torchao = importlib.import_module("torchao")
            importlib.import_module("torchao.quantization")
    except ImportError as err:
        missing = getattr(err, "name", None) or "torchao"
        if missing.split(".")[0] == "torchao":
            raise QuantizationUnavailable(
                f"--quantize needs torchao, which is not installed: {INSTALL_HINT}"
            ) from None
        raise QuantizationUnavailable(f"torchao cannot be imported: {err}") from None
    version = getattr(torchao, "__version__", "0")
    parts = tuple(int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit())
    if parts < MIN_TORCHAO:
        needed = ".".join(map(str, MIN_TORCHAO))
        raise QuantizationUnavailable(
            f"--quantize needs torchao >= {needed}, this is torchao {version}: {INSTALL_HINT}"
        )
    return torchao


def check_mode(mode: str | None) -> str | None:
    if mode is None:
        return None
    if mode not in QUANTIZE_MODES:
        raise QuantizationUnavailable(
            f"unknown quantization {mode!r} (choose {' or '.join(QUANTIZE_MODES)})"
        )
    return mode


def int4_group_size(in_features: int, out_features: int) -> int | None:
    """The int4 group size of a layer, None when int4 cannot pack it (tinygemm needs groups of
    32, 64 or 128 input columns and out-features in multiples of 16)."""
    if out_features % 16:
        return None
    return next((g for g in INT4_GROUP_SIZES if in_features % g == 0), None)


def check_quantization(
    mode: str | None, device: torch.device | str, dtype: torch.dtype | None = None
) -> None:
    """Refuse, before any weight is read, a quantization that torchao, torch or the device
    cannot run (QuantizationUnavailable, one line naming what is missing)."""
    if check_mode(mode) is None:
        return
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):
        raise QuantizationUnavailable(f"--quantize {mode} runs on cpu or cuda, not {device.type}")
    import_torchao()
    with quiet_torchao():
        from torchao.quantization import Int8WeightOnlyConfig, quantize_  # noqa: F401
    if mode == "int8":
        return
    if device.type == "cpu":
        op = "_weight_int4pack_mm_for_cpu"
        if not hasattr(torch.ops.aten, op):
            raise QuantizationUnavailable(
                f"--quantize int4 on the CPU needs torch's {op} kernel, absent from torch "
                f"{torch.__version__}: use --quantize int8"
            )
        try:
            with quiet_torchao():
                from torchao.prototype.quantization.int4 import (  # noqa: F401
                    PrototypeInt4WeightOnlyConfig,
                )
        except ImportError:
            raise QuantizationUnavailable(
                "--quantize int4 on the CPU needs torchao's PrototypeInt4WeightOnlyConfig "
                "(torchao >= 0.16): use --quantize int8 or upgrade torchao"
            ) from None
        return
    if torch.cuda.get_device_capability(device) < (8, 0):
        name = torch.cuda.get_device_name(device)
        raise QuantizationUnavailable(
            f"--quantize int4 needs a CUDA GPU of compute capability 8.0 or newer, {name} is "
            f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}: use --quantize int8"
        )
    if dtype is not None and dtype != torch.bfloat16:
        raise QuantizationUnavailable(
            f"--quantize int4 on CUDA computes in bfloat16, not {str(dtype).removeprefix('torch.')}"
            ": leave --dtype unset or give bfloat16"
        )


def compute_dtype(mode: str | None, device: torch.device | str, dtype: torch.dtype) -> torch.dtype:
    """The float dtype the model computes in: `dtype`, except int4 on CUDA (tinygemm takes
    bfloat16 only)."""
    if mode == "int4" and torch.device(device).type == "cuda":
        return torch.bfloat16
    return dtype


@dataclass
class Quantizer:
    """Quantizes `nn.Linear` layers one at a time for `mode` on `device`, and counts what it did:
    `stored` {format: layers}, `bytes` of the quantized weights (data and scales)."""

    mode: str
    device: torch.device
    stored: dict[str, int] = field(default_factory=dict)
    bytes: int = 0

    def __post_init__(self) -> None:
        check_mode(self.mode)
        self.device = torch.device(self.device)
        import_torchao()
        with quiet_torchao():
            from torchao.quantization import Int8WeightOnlyConfig, quantize_

        self._quantize = quantize_
        self._int8 = Int8WeightOnlyConfig()

    def format_for(self, name: str, module: nn.Linear, is_head: bool) -> str:
        """'int4-g<group>' or 'int8' for one layer (`name` its module path)."""
        if self.mode == "int4" and not is_head:
            group = int4_group_size(module.in_features, module.out_features)
            if group is not None:
                return f"int4-g{group}"
        return "int8"

    def _int4_config(self, group: int):
        with quiet_torchao():
            if self.device.type == "cpu":
                from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

                return PrototypeInt4WeightOnlyConfig(group_size=group, set_inductor_config=False)
            from torchao.quantization import Int4WeightOnlyConfig

            return Int4WeightOnlyConfig(
                group_size=group,
                int4_packing_format="tile_packed_to_4d",
                set_inductor_config=False,
            )

    def apply(self, name: str, module: nn.Linear, is_head: bool = False) -> str:
        """Quantize `module`'s weight (already holding its float values) in place; returns the
        format it is stored in."""
        kind = self.format_for(name, module, is_head)
        if self.in_row_blocks(name, module, is_head):
            weight = module.weight.detach()
            self._int8_in_row_blocks(module, lambda start, stop: weight[start:stop])
            del weight
        else:
            config = self._int8 if kind == "int8" else self._int4_config(int(kind[6:]))
            with quiet_torchao():
                self._quantize(module, config)
        weight = module.weight
        if type(weight) is torch.Tensor or type(weight) is nn.Parameter:
            raise QuantizationUnavailable(f"torchao left layer {name} unquantized ({kind})")
        self.stored[kind] = self.stored.get(kind, 0) + 1
        self.bytes += stored_bytes(weight)
        return kind

    def in_row_blocks(self, name: str, module: nn.Linear, is_head: bool = False) -> bool:
        """Whether `module` is quantized a block of rows at a time (a large int8 weight)."""
        size = module.in_features * module.out_features
        return size > INT8_BLOCK_VALUES and self.format_for(name, module, is_head) == "int8"

    def apply_rows(self, name: str, module: nn.Linear, rows) -> str:
        """`apply` for a weight not in memory: `rows(start, stop)` gives its float rows (read
        from the checkpoint block by block, so the whole float weight never is)."""
        self._int8_in_row_blocks(module, rows)
        self.stored["int8"] = self.stored.get("int8", 0) + 1
        self.bytes += stored_bytes(module.weight)
        return "int8"

    def _int8_in_row_blocks(self, module: nn.Linear, rows_of) -> None:
        """int8 of a large weight (the output head) a block of rows at a time: the scales are
        per row, so the result is the same as quantizing it whole, but torchao's float32
        temporaries (several times the weight's size) only ever cover one block."""
        rows, columns = module.out_features, module.in_features
        step = max(1, INT8_BLOCK_VALUES // columns)
        parts, context, quantized = {}, None, None
        for start in range(0, rows, step):
            block = rows_of(start, min(rows, start + step))
            piece = nn.Linear(columns, block.shape[0], bias=False, device="meta")
            piece.weight = nn.Parameter(block, requires_grad=False)
            with quiet_torchao():
                self._quantize(piece, self._int8)
            quantized = piece.weight
            names, context = quantized.__tensor_flatten__()
            for inner in names:
                value = getattr(quantized, inner)
                if value.shape[0] != block.shape[0]:
                    raise QuantizationUnavailable(
                        f"torchao's int8 weights hold {inner} of shape {tuple(value.shape)}: "
                        "not one row per output"
                    )
                if inner not in parts:
                    parts[inner] = value.new_empty((rows, *value.shape[1:]))
                parts[inner][start : start + step] = value
        whole = type(quantized).__tensor_unflatten__(parts, context, (rows, columns), (columns, 1))
        del quantized, piece, block
        module.weight = nn.Parameter(whole, requires_grad=False)


def stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes a (possibly torchao-quantized) tensor holds: its plain tensors' storage."""
    if hasattr(tensor, "__tensor_flatten__") and type(tensor) not in (torch.Tensor, nn.Parameter):
        names, _ = tensor.__tensor_flatten__()
        return sum(
            stored_bytes(getattr(tensor, n)) for n in names if getattr(tensor, n) is not None
        )
    return tensor.numel() * tensor.element_size()


def model_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer of `model`, quantized ones counted as stored."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(stored_bytes(t) for t in tensors)


def quantized_linears(model: nn.Module) -> Iterable[tuple[str, nn.Linear, bool]]:
    """(name, layer, is_head) of the linear layers --quantize converts: every nn.Linear (the
    output head flagged: it stays int8 in int4 mode)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            yield name, module, name.endswith("transformer.ff_out")


def check_offload(device: torch.device | str, mode: str | None) -> None:
    """--offload moves weights to a GPU layer by layer: it needs a CUDA device, and int4's
    packed weights are laid out for one device (CPU or CUDA), so int4 cannot be offloaded."""
    device = torch.device(device)
    if device.type != "cuda":
        raise QuantizationUnavailable(
            "--offload keeps the weights on the CPU and runs each block on a GPU: it needs a "
            "CUDA device (--device cuda)"
        )
    if mode == "int4":
        raise QuantizationUnavailable(
            "--offload cannot carry int4 weights (packed for one device): use --quantize int8"
        )


def offload_blocks(model: nn.Module, blocks: Iterable[nn.Module], device: torch.device | str):
    """Keep `blocks`' weights on the CPU, each moved to `device` only while it runs (accelerate's
    `cpu_offload`); every other weight of `model` goes to `device`. Returns `model`."""
    from accelerate import cpu_offload

    blocks = list(blocks)
    held = {id(p) for block in blocks for p in block.parameters()}
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if id(param) not in held:
                module._parameters[name] = nn.Parameter(
                    param.data.to(device), requires_grad=param.requires_grad
                )
        for name, buffer in list(module.named_buffers(recurse=False)):
            module._buffers[name] = buffer.to(device)
    for block in blocks:
        block.to("cpu")
        cpu_offload(block, execution_device=torch.device(device))
    return model
