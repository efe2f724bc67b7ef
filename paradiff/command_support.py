"""What every `paradiff` command shares: the one-line error, common flags, checks of the user's
input, model loading, and publishing outputs without touching anything the user owns.

Every command answers bad input with one line on stderr and exit status 2 (`CommandError`, or an
input error of the library: OSError, ValueError), and writes nothing. This module sits below the
commands (`paradiff.cli`, the `bench` and `train` groups, the demo and the app); it never imports
them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paradiff.files import (
    SCRATCH_MARKER,
    FileInputError,
    first_line,
    is_scratch,
    make_scratch,
    move_into,
    process_alive,
    read_text,
    remove_scratch,
    safe_target,
    scratch_name,
    scratch_owner,
    write_atomic,
)
from paradiff.sampling.config import SAMPLER_FLAGS, check_setting, flag_table

EXIT_USAGE = 2
OUTPUT_MANIFEST = ".paradiff.json"  # what paradiff wrote into an --out folder
TEMP_PREFIX = ".paradiff-"  # scratch folders inside an --out folder: .paradiff-<pid>-<random>


class CommandError(Exception):
    """A user error reported as one line with exit status 2."""


def one_line(err: BaseException) -> str:
    """An error's first line; an operating-system error as 'PATH: what' (not '[Errno N] …')."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        return f"{err.filename}: {err.strerror.lower()}"
    return first_line(err)


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line too (and exit status 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


# -- flags ------------------------------------------------------------------------------------
def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="checkpoint directory, hub id, or bundled model name (default: the bundled model)",
    )


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: best)")
    parser.add_argument(
        "--dtype", default=None, help="float32 or bfloat16 (default: the checkpoint's)"
    )


def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    """--quantize int8|int4 and --offload (`paradiff.quantization`)."""
    parser.add_argument(
        "--quantize",
        choices=("int8", "int4"),
        default=None,
        help="weight-only quantization of the linear layers with torchao (paradiff[quant]), the "
        "checkpoint streamed in tensor by tensor (default: off, the float weights)",
    )
    parser.add_argument(
        "--offload",
        action="store_true",
        help="keep the transformer blocks' weights on the CPU, each moved to the GPU only while "
        "it runs (a GPU too small for the model; CUDA only)",
    )


def weight_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a run folder records of --quantize / --offload: only those given (a folder made
    without them keeps its settings as they were), so a resume with other weights is refused."""
    settings: dict[str, Any] = {}
    if getattr(args, "quantize", None):
        settings["quantize"] = args.quantize
    if getattr(args, "offload", False):
        settings["offload"] = True
    return settings


def check_quantize_flags(args: argparse.Namespace) -> None:
    """Refuse, before any work, a --dtype that is no dtype and a --quantize / --offload this
    installation or device cannot run: one line naming what is missing."""
    from paradiff.model_config import ConfigError, parse_dtype
    from paradiff.quantization import (
        QuantizationUnavailable,
        check_offload,
        check_quantization,
    )

    try:  # --dtype first: a bad value is the flag's fault, not the model's
        dtype = parse_dtype(getattr(args, "dtype", None))
    except ConfigError as err:
        raise CommandError(f"--dtype: {err}") from None
    quantize, offload = getattr(args, "quantize", None), getattr(args, "offload", False)
    if quantize is None and not offload:
        return
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if offload:
            check_offload(device, quantize)
        check_quantization(quantize, device, dtype)
    except QuantizationUnavailable as err:
        raise CommandError(one_line(err)) from None


def add_sampler_arguments(parser: argparse.ArgumentParser, sizes: bool = True) -> None:
    """Flags for every SamplerConfig field (and the output size unless `sizes` is False);
    unset flags keep the checkpoint's defaults."""
    group = parser.add_argument_group(
        "sampler settings", "defaults come from the checkpoint's sampler_config.json"
    )
    parser.epilog = flag_table()  # kept as written: a table
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for flag, (_, kind, text) in SAMPLER_FLAGS.items():
        group.add_argument(flag, type=kind, default=None, help=text)
    if sizes:
        group.add_argument("--height", type=int, default=None, help="output height in pixels")
        group.add_argument("--width", type=int, default=None, help="output width in pixels")


def add_pipeline_arguments(parser: argparse.ArgumentParser, sizes: bool = True) -> None:
    """--model, --device/--dtype, --quantize/--offload and the sampler settings (see
    `load_configured_pipeline`)."""
    add_model_argument(parser)
    add_device_arguments(parser)
    add_quantize_arguments(parser)
    add_sampler_arguments(parser, sizes)


def sampler_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The SamplerConfig fields set on the command line, each checked against its type and
    stated range (`check_setting`) before any work."""
    overrides = {}
    for flag, (field, _, _) in SAMPLER_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            try:
                check_setting(field, value)
            except ValueError as err:
                raise CommandError(f"{flag}: {err}") from None
            overrides[field] = value
    return overrides


MAX_BATCH_SIZE = 1024  # --batch-size


def check_size_flags(args: argparse.Namespace) -> tuple[int, int] | None:
    """(width, height) of --width/--height: both or neither, each a positive number of pixels
    (the model then checks its own maximum and patch)."""
    width, height = getattr(args, "width", None), getattr(args, "height", None)
    if (width is None) != (height is None):
        raise CommandError("give both --height and --width, or neither")
    if width is None:
        return None
    for flag, value in (("--width", width), ("--height", height)):
        if value < 1:  # the model checks its maximum side and patch
            raise CommandError(f"{flag} must be a positive number of pixels, got {value}")
    return width, height


def check_batch_size(value: int) -> int:
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise CommandError(f"--batch-size must be in 1..{MAX_BATCH_SIZE}, got {value}")
    return value


# -- checks -----------------------------------------------------------------------------------
def check_device(spec: str | None) -> None:
    """Refuse a --device that is not a device name or not on this machine."""
    if spec is None:
        return
    import torch

    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise CommandError(
            f"--device {spec!r} is not a device (cpu, cuda, cuda:1, mps …)"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CommandError(f"--device {spec}: this machine has no CUDA device")
        if device.index is not None and device.index >= count:
            raise CommandError(f"--device {spec}: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise CommandError(f"--device {spec}: MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise CommandError(f"--device {spec!r}: paradiff runs on cpu, cuda or mps")


def check_text(value: str, what: str) -> str:
    """Refuse text that is empty or not valid UTF-8 (undecodable bytes in argv)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CommandError(f"the {what} is not valid UTF-8 text") from None
    if not value.strip():
        raise CommandError(f"the {what} is empty")
    return value


def output_dir(value: str, flag: str = "--out") -> Path:
    """The folder an --out option names (an empty value would mean the current folder)."""
    if not value.strip():
        raise CommandError(f"{flag} is empty: name the output folder")
    return Path(value)


def check_writable(out: Path) -> None:
    """Fail early (before any work) when `out` cannot be created or written."""
    if out.exists() and not out.is_dir():
        raise CommandError(f"output path {out} exists and is not a directory")
    existing = nearest_existing(out)
    if not existing.is_dir():
        raise CommandError(f"output path {out}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"output directory {out} is not writable")


def nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


# -- publishing outputs -----------------------------------------------------------------------
def file_digest(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest of an output folder: {"files": {relative path: sha256}, "scratch": {scratch
    folder name: token}}; CommandError when it is missing or damaged."""
    try:
        manifest = json.loads(read_text(out / OUTPUT_MANIFEST, inside=out, limit=1 << 24))
        files, scratch = manifest["files"], manifest.get("scratch", {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ValueError
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in scratch.items()):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CommandError(
            f"{out} is not empty and holds no paradiff output: choose a new or empty folder"
        ) from None
    return {"files": files, "scratch": scratch}


def owned_outputs(out: Path) -> dict[str, str]:
    """The files paradiff wrote into `out` earlier, unchanged since ({relative path: sha256}).

    CommandError (nothing is touched) when `out` is not a folder paradiff may write into: not
    writable, a non-empty folder without paradiff's manifest, or one where a file paradiff
    wrote was changed or replaced since."""
    out = output_folder(out)
    check_writable(out)
    if not out.exists() or not any(out.iterdir()):
        return {}
    owned = {}
    for relative, digest in read_manifest(out)["files"].items():
        try:
            path = safe_target(out, relative)
        except FileInputError:
            raise CommandError(
                f"{out}/{OUTPUT_MANIFEST} is damaged: choose another folder"
            ) from None
        if not path.exists():
            continue
        if not path.is_file() or file_digest(path) != digest:
            raise CommandError(
                f"{path} was changed after paradiff wrote it: move it away or choose another folder"
            )
        owned[relative] = digest
    return owned


def output_folder(out: Path) -> Path:
    """The folder `out` names: absolute, a link the user named followed (links below it never
    are)."""
    out = Path(out).absolute()
    if out.is_symlink():
        if not out.exists():
            raise CommandError(f"output path {out} is a link to nothing")
        out = out.resolve()
    return out


def publish(write: Callable[[Path], Any], out: Path) -> Path:
    """Run `write(tmp_dir)` in a scratch folder inside `out`, then move its files into `out`.

    A failure leaves nothing half-written (and a folder this call created is removed again).
    `out` must be new, empty or a folder of earlier paradiff output; only files paradiff wrote
    there (and nobody changed since) are replaced, nothing else in it is touched or removed,
    and nothing is written through a link below it. The manifest records what was written and
    the scratch folder (so that a killed run's is removed by the next run, and nothing else)."""
    out = output_folder(out)
    owned_outputs(out)
    missing = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    had_manifest = (out / OUTPUT_MANIFEST).exists()
    manifest = read_manifest(out) if had_manifest else {"files": {}, "scratch": {}}
    remove_stale_temps(out, manifest)
    name, token = scratch_name(TEMP_PREFIX)
    manifest["scratch"][name] = token
    write_manifest(out, manifest)
    tmp, done = None, False
    try:
        tmp = make_scratch(out, name, token)
        write(tmp)
        written = sorted(
            p.relative_to(tmp).as_posix()
            for p in tmp.rglob("*")
            if p.is_file() and p != tmp / SCRATCH_MARKER
        )
        owned = owned_outputs(out)  # again: the folder may have changed while `write` ran
        for relative in written:
            try:
                target = safe_target(out, relative)
            except FileInputError as err:
                raise CommandError(f"{err}: not replaced") from None
            if (target.exists() or target.is_symlink()) and relative not in owned:
                raise CommandError(f"{target} exists and was not written by paradiff: not replaced")
        files = dict(owned)
        for relative in written:
            files[relative] = file_digest(tmp / relative)
            move_into(tmp / relative, out, relative)
        manifest["files"] = files
        done = True
    finally:
        if tmp is not None:
            remove_scratch(tmp, token)
        manifest["scratch"].pop(name, None)
        if done or manifest["files"] or manifest["scratch"] or had_manifest:
            write_manifest(out, manifest)
        else:  # nothing was written: leave the folder as it was
            (out / OUTPUT_MANIFEST).unlink(missing_ok=True)
            for folder in missing:
                try:
                    folder.rmdir()  # only an empty folder this call made
                except OSError:
                    break
    return out


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    write_atomic(out / OUTPUT_MANIFEST, json.dumps(manifest, indent=1) + "\n", root=out)


def remove_stale_temps(out: Path, manifest: dict[str, Any]) -> None:
    """Delete the scratch folders a killed paradiff process left in `out`: only those its
    manifest lists, holding the marker paradiff wrote with the listed token, whose process is
    gone. Nothing else is ever removed (a listed name that is gone is dropped from the list)."""
    for name, token in list(manifest["scratch"].items()):
        path = out / name
        if not name.startswith(TEMP_PREFIX) or Path(name).name != name:
            continue
        if not path.exists() and not path.is_symlink():
            del manifest["scratch"][name]
        elif is_scratch(path, token) and not process_alive(scratch_owner(path)):
            if remove_scratch(path, token):
                del manifest["scratch"][name]


# -- models -----------------------------------------------------------------------------------
def load_pipeline(args: argparse.Namespace):
    """The pipeline of --model (bundled by default) on --device in --dtype (--quantize,
    --offload); CommandError if it cannot be loaded."""
    from safetensors import SafetensorError

    from paradiff.pipeline import ParallelPipeline

    check_device(args.device)
    check_quantize_flags(args)
    try:
        return ParallelPipeline.from_pretrained(
            args.model,
            dtype=args.dtype,
            device=args.device,
            quantize=getattr(args, "quantize", None),
            offload=getattr(args, "offload", False),
        )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        where = args.model or "the bundled model"
        raise CommandError(f"cannot load model {where}: {one_line(err)}") from err


def load_configured_pipeline(args: argparse.Namespace):
    """(pipeline, sampler overrides) of the options of `add_pipeline_arguments`, the overrides
    checked against the checkpoint's defaults before any work."""
    pipe = load_pipeline(args)
    overrides = sampler_overrides(args)
    try:
        pipe.sampler_config(**overrides)
    except ValueError as err:
        raise CommandError(one_line(err)) from None
    return pipe, overrides
