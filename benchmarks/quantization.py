"""Quantized, streamed loading (`--quantize int8|int4`): accuracy, peak host memory, load time.

Three measurements, each on random checkpoints built here (family-A shapes: the real
134548-id vocabulary, LLaDA's MLP ratio 3):

    # logits of int8 / int4 (and bf16) against the float32 model, on one random checkpoint
    python benchmarks/quantization.py accuracy --d-model 1024 --layers 8

    # peak resident memory and load time of an 8B-shaped bf16 checkpoint (d_model 4096, 32
    # layers, MLP 12288) loaded with int8 and with int4, each in a fresh process; the shards are
    # written tensor by tensor (never the whole model in memory) and deleted afterwards
    python benchmarks/quantization.py memory --shape 8b --dir /tmp/paradiff-8b

    # (the pieces: write a checkpoint; load one in this process and print JSON)
    python benchmarks/quantization.py write --shape 2b --dir /tmp/paradiff-2b
    python benchmarks/quantization.py load --dir /tmp/paradiff-2b --quantize int8

Peak memory is the process's VmHWM (`/proc/self/status`): the high-water mark of its resident
set, counting the interpreter, torch and torchao themselves (`baseline` in the output: VmRSS
after the imports, before the load).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from paradiff.layout import FAMILY_A
from paradiff.model import MaskPredictor
from paradiff.model_config import tiny_config

SHAPES = {  # name: (d_model, layers, MLP hidden)
    "8b": (4096, 32, 12288),  # LLaDA-8B
    "2b": (2048, 24, 6144),
    "tiny": (256, 2, 768),  # for a quick check of the script itself
}
SAFETENSORS_NAMES = {torch.bfloat16: "BF16", torch.float32: "F32", torch.float16: "F16"}
GIB = 1 << 30


def shape_config(d_model: int, layers: int, hidden: int, dtype: str = "bfloat16"):
    return tiny_config(
        FAMILY_A.vocab_size,
        d_model=d_model,
        n_heads=d_model // 128 if d_model >= 128 else 1,
        n_layers=layers,
        mlp_hidden_size=hidden,
        max_sequence_length=4096,
        rope_theta=500000.0,
        dtype=dtype,
        model_type="llada",
    )


def memory_status() -> dict[str, int]:
    """VmHWM and VmRSS of this process, in bytes."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0]) * 1024
    return values


# -- writing a random checkpoint tensor by tensor ---------------------------------------------
def random_tensor(name: str, shape: tuple[int, ...], dtype: torch.dtype, gen) -> torch.Tensor:
    """Norm weights 1, everything else N(0, 0.02) (LLaDA's init scale), made in float32 in row
    blocks of at most 64 Mi values and cast (so a 0.5 G-value head needs no float32 copy)."""
    if name.endswith("norm.weight") or name.endswith("ln_f.weight"):
        return torch.ones(shape, dtype=dtype)
    out = torch.empty(shape, dtype=dtype)
    rows = max(1, (64 << 20) // max(1, math.prod(shape[1:])))
    for start in range(0, shape[0], rows):
        block = out[start : start + rows]
        block.copy_(torch.randn(block.shape, generator=gen).mul_(0.02))
    return out


def write_checkpoint(
    directory: Path, config, shard_bytes: int = 2 * GIB, seed: int = 0, dtype=torch.bfloat16
) -> dict:
    """A checkpoint directory of `config` with random `dtype` weights in safetensors shards of
    about `shard_bytes`, written tensor by tensor: each shard's header first (the shapes come
    from a meta-device model), then each tensor generated, written and dropped."""
    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        model = MaskPredictor(config)
    items = [(name, tuple(t.shape)) for name, t in sorted(model.state_dict().items())]
    size = torch.empty((), dtype=dtype).element_size()
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    used = 0
    for name, shape in items:
        nbytes = math.prod(shape) * size
        if shards[-1] and used + nbytes > shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append((name, shape))
        used += nbytes
    gen = torch.Generator().manual_seed(seed)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, start=1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in shard:
            nbytes = math.prod(shape) * size
            header[name] = {
                "dtype": SAFETENSORS_NAMES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + nbytes],
            }
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(directory / file, "wb") as handle:
            handle.write(len(raw).to_bytes(8, "little"))
            handle.write(raw)
            for name, shape in shard:
                tensor = random_tensor(name, shape, dtype, gen)
                handle.write(memoryview(tensor.view(torch.uint8).reshape(-1).numpy()))
                del tensor
        weight_map.update(dict.fromkeys((n for n, _ in shard), file))
        total += offset
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    conf = config.to_dict()
    conf["dtype"] = conf["torch_dtype"] = str(dtype).removeprefix("torch.")
    (directory / "config.json").write_text(json.dumps(conf, indent=1))
    return {
        "dir": str(directory),
        "shards": len(shards),
        "bytes": total,
        "parameters": sum(math.prod(s) for _, s in items),
        "write_s": round(time.perf_counter() - started, 1),
        "peak_rss_gib": round(memory_status()["VmHWM"] / GIB, 2),
    }


# -- loading (one process per measurement) ----------------------------------------------------
def linear_bytes(model: torch.nn.Module, bits: int) -> int:
    """Bytes of every linear weight at `bits` bits a value (no scales)."""
    return sum(
        m.in_features * m.out_features * bits // 8
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    )


def measure_load(directory: Path, quantize: str | None, forward_tokens: int = 0) -> dict:
    from paradiff.quantization import import_torchao

    if quantize is not None:
        import_torchao()  # its import counts in the baseline, not in the load
    baseline = memory_status()["VmRSS"]
    started = time.perf_counter()
    model = MaskPredictor.from_pretrained(str(directory), quantize=quantize)
    load_s = time.perf_counter() - started
    after = memory_status()
    info = getattr(model, "quantization", None) or {"stored": {}}
    from paradiff.quantization import model_bytes

    stored = model_bytes(model)
    float_linear = linear_bytes(model, 16)
    result = {
        "quantize": quantize or "none",
        "load_s": round(load_s, 1),
        "baseline_gib": round(baseline / GIB, 3),
        "peak_gib": round(after["VmHWM"] / GIB, 3),
        "rss_after_gib": round(after["VmRSS"] / GIB, 3),
        "model_gib": round(stored / GIB, 3),
        "int8_linears_gib": round(linear_bytes(model, 8) / GIB, 3),
        "quantized_weights_gib": round(info.get("quantized_bytes", 0) / GIB, 3),
        "bf16_model_gib": round(
            (sum(math.prod(t.shape) for t in model.state_dict().values()) * 2) / GIB, 3
        ),
        "bf16_linears_gib": round(float_linear / GIB, 3),
        "stored": info.get("stored", {}),
    }
    if forward_tokens:
        ids = torch.randint(0, FAMILY_A.vocab_size, (1, forward_tokens))
        started = time.perf_counter()
        with torch.no_grad():
            logits = model(ids, logits_at=torch.tensor([0]))
        result["forward_s"] = round(time.perf_counter() - started, 1)
        result["forward_finite"] = bool(torch.isfinite(logits).all())
        result["peak_after_forward_gib"] = round(memory_status()["VmHWM"] / GIB, 3)
    return result


def load_in_subprocess(directory: Path, quantize: str | None, forward_tokens: int) -> dict:
    command = [sys.executable, __file__, "load", "--dir", str(directory), "--json"]
    command += ["--quantize", quantize or "none", "--forward-tokens", str(forward_tokens)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"load {quantize} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- accuracy ---------------------------------------------------------------------------------
def compare(reference: torch.Tensor, logits: torch.Tensor) -> dict:
    ref, out = reference.float(), logits.float()
    error = (out - ref).abs()
    return {
        "max_abs_error": round(error.max().item(), 4),
        "mean_abs_error": round(error.mean().item(), 5),
        "relative_max_error": round(error.max().item() / ref.abs().max().item(), 4),
        "top1_agreement": round((out.argmax(-1) == ref.argmax(-1)).float().mean().item(), 4),
    }


def accuracy(args: argparse.Namespace) -> dict:
    """Logits of the float32 model against bf16, int8 and int4 loads of the same bf16 random
    checkpoint, on random token ids: every position, the whole vocabulary and the image slice."""
    config = shape_config(args.d_model, args.layers, 3 * args.d_model)
    directory = Path(args.dir)
    written = write_checkpoint(directory, config, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)
    ids = torch.randint(0, FAMILY_A.vocab_size, (args.batch, args.tokens), generator=gen)
    image = (FAMILY_A.image_offset, FAMILY_A.image_offset + FAMILY_A.codebook_size)
    rows = {}
    try:
        reference = MaskPredictor.from_pretrained(str(directory), dtype="float32")
        with torch.no_grad():
            hidden = reference.hidden_states(ids)
            ref_all, ref_image = reference.logits(hidden), reference.logits(hidden, None, image)
        del reference, hidden
        runs = [("bf16", None, "bfloat16")]
        for mode in ("int8", "int4"):
            runs += [(f"{mode} (float32 compute)", mode, "float32")]
            runs += [(f"{mode} (bf16 compute)", mode, "bfloat16")]
        for label, mode, dtype in runs:
            model = MaskPredictor.from_pretrained(str(directory), dtype=dtype, quantize=mode)
            with torch.no_grad():
                hidden = model.hidden_states(ids)
                logits, image_logits = model.logits(hidden), model.logits(hidden, None, image)
            rows[label] = {
                "all": compare(ref_all, logits),
                "image": compare(ref_image, image_logits),
                "stored": getattr(model, "quantization", {}).get("stored", {}),
            }
            print(label, json.dumps(rows[label]), flush=True)
            del model, hidden, logits, image_logits
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    return {
        "model": {"d_model": args.d_model, "layers": args.layers, **written},
        "tokens": args.batch * args.tokens,
        "logit_std": round(ref_all.float().std().item(), 4),
        "logit_max": round(ref_all.float().abs().max().item(), 4),
        "results": rows,
    }


# -- command line -----------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    acc = sub.add_parser("accuracy", help="logits of int8 / int4 / bf16 against float32")
    acc.add_argument("--d-model", type=int, default=1024)
    acc.add_argument("--layers", type=int, default=8)
    acc.add_argument("--batch", type=int, default=2)
    acc.add_argument("--tokens", type=int, default=64)
    acc.add_argument("--dir", default="/tmp/paradiff-quant-accuracy")
    mem = sub.add_parser("memory", help="write a checkpoint, load it int8 and int4, delete it")
    write = sub.add_parser("write", help="write a random bf16 checkpoint tensor by tensor")
    for q in (mem, write):
        q.add_argument("--shape", choices=sorted(SHAPES), default="8b")
        q.add_argument("--dir", required=True)
        q.add_argument("--shard-gib", type=float, default=2.0)
    mem.add_argument("--modes", default="int8,int4")
    mem.add_argument("--forward-tokens", type=int, default=0, help="then one forward of N tokens")
    load = sub.add_parser("load", help="load a checkpoint here and print the measurements")
    load.add_argument("--dir", required=True)
    load.add_argument("--quantize", choices=("int8", "int4", "none"), default="int8")
    load.add_argument("--forward-tokens", type=int, default=0)
    for q in (acc, mem, load, write):
        q.add_argument("--json", action="store_true", help="print one JSON line only")
        q.add_argument("--seed", type=int, default=0)
    for q in (acc, mem):
        q.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
        q.add_argument("--out", default=None, help="also write the results to this JSON file")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.what == "load":
        mode = None if args.quantize == "none" else args.quantize
        print(json.dumps(measure_load(Path(args.dir), mode, args.forward_tokens)))
        return
    if args.what == "write":
        config = shape_config(*SHAPES[args.shape])
        print(json.dumps(write_checkpoint(Path(args.dir), config, int(args.shard_gib * GIB))))
        return
    if args.what == "accuracy":
        result = accuracy(args)
    else:
        directory = Path(args.dir)
        if directory.exists():
            raise SystemExit(f"{directory} exists: give a new folder")
        config = shape_config(*SHAPES[args.shape])
        try:
            written = write_checkpoint(directory, config, int(args.shard_gib * GIB), args.seed)
            print("written", json.dumps(written), flush=True)
            loads = {}
            for mode in args.modes.split(","):
                loads[mode] = load_in_subprocess(directory, mode, args.forward_tokens)
                print(mode, json.dumps(loads[mode]), flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(directory, ignore_errors=True)
        result = {"shape": args.shape, "written": written, "loads": loads}
    result["machine"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
