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
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paradiff.sampling.config import SAMPLER_FLAGS

EXIT_USAGE = 2
OUTPUT_MANIFEST = ".paradiff.json"  # what paradiff wrote into an --out folder
TEMP_PREFIX = ".paradiff-"  # scratch folders beside an --out folder: .paradiff-<pid>-<random>
STALE_TEMP_AGE_S = 3600  # a scratch folder whose writer cannot be told is stale after this


class CommandError(Exception):
    """A user error reported as one line with exit status 2."""


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


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


def add_sampler_arguments(parser: argparse.ArgumentParser, sizes: bool = True) -> None:
    """Flags for every SamplerConfig field (and the output size unless `sizes` is False);
    unset flags keep the checkpoint's defaults."""
    group = parser.add_argument_group(
        "sampler settings", "defaults come from the checkpoint's sampler_config.json"
    )
    for flag, (_, kind, text) in SAMPLER_FLAGS.items():
        group.add_argument(flag, type=kind, default=None, help=text)
    if sizes:
        group.add_argument("--height", type=int, default=None, help="output height in pixels")
        group.add_argument("--width", type=int, default=None, help="output width in pixels")


def add_pipeline_arguments(parser: argparse.ArgumentParser, sizes: bool = True) -> None:
    """--model, --device/--dtype and the sampler settings (see `load_configured_pipeline`)."""
    add_model_argument(parser)
    add_device_arguments(parser)
    add_sampler_arguments(parser, sizes)


def sampler_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The SamplerConfig fields set on the command line."""
    overrides = {}
    for flag, (field, _, _) in SAMPLER_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides[field] = value
    return overrides


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
def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def owned_outputs(out: Path) -> dict[str, str]:
    """The files paradiff wrote into `out` earlier, unchanged since ({relative path: sha256}).

    CommandError (nothing is touched) when `out` is not a folder paradiff may write into: not
    writable, a non-empty folder without paradiff's manifest, or one where a file paradiff
    wrote was changed or replaced since."""
    check_writable(out)
    if not out.exists() or not any(out.iterdir()):
        return {}
    manifest = out / OUTPUT_MANIFEST
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise CommandError(
            f"{out} is not empty and holds no paradiff output: choose a new or empty folder"
        ) from None
    owned = {}
    for relative, digest in files.items():
        path = out / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts or path.is_symlink():
            raise CommandError(f"{out}/{OUTPUT_MANIFEST} is damaged: choose another folder")
        if not path.exists():
            continue
        if not path.is_file() or file_digest(path) != digest:
            raise CommandError(
                f"{path} was changed after paradiff wrote it: move it away or choose another folder"
            )
        owned[relative] = digest
    return owned


def publish(write: Callable[[Path], Any], out: Path) -> Path:
    """Run `write(tmp_dir)` in a scratch folder beside `out`, then move its files into `out`.

    A failure leaves nothing half-written. `out` must be new, empty or a folder of earlier
    paradiff output; only files paradiff wrote there (and nobody changed since) are replaced,
    nothing else in it is touched or removed. A manifest records what was written."""
    out = out.absolute()
    owned = owned_outputs(out)
    parent = nearest_existing(out)
    remove_stale_temps(parent)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=parent))
    try:
        write(tmp)
        written = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        owned = owned_outputs(out)  # again: the folder may have changed while `write` ran
        for relative in written:
            target = out / relative
            blocked = [p for p in target.parents if p != out and out in p.parents and p.is_file()]
            if blocked or (target.exists() or target.is_symlink()) and relative not in owned:
                raise CommandError(f"{target} exists and was not written by paradiff: not replaced")
        files = dict(owned)
        for relative in written:
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            files[relative] = file_digest(tmp / relative)
            os.replace(tmp / relative, out / relative)
        manifest = json.dumps({"files": files}, indent=1) + "\n"
        (tmp / OUTPUT_MANIFEST).write_text(manifest, encoding="utf-8")
        os.replace(tmp / OUTPUT_MANIFEST, out / OUTPUT_MANIFEST)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def remove_stale_temps(folder: Path) -> None:
    """Delete scratch folders that a killed paradiff process left in `folder`: those whose
    process is gone (the pid is in the name), or old ones without a pid."""
    for path in folder.glob(f"{TEMP_PREFIX}*"):
        if path.is_dir() and not path.is_symlink() and is_stale(path):
            shutil.rmtree(path, ignore_errors=True)


def is_stale(path: Path) -> bool:
    pid = path.name.removeprefix(TEMP_PREFIX).split("-")[0]
    if pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, someone else's
            return False
        return False
    return time.time() - path.stat().st_mtime > STALE_TEMP_AGE_S


# -- models -----------------------------------------------------------------------------------
def load_pipeline(args: argparse.Namespace):
    """The pipeline of --model (bundled by default) on --device in --dtype; CommandError if it
    cannot be loaded."""
    from safetensors import SafetensorError

    from paradiff.pipeline import ParallelPipeline

    check_device(args.device)
    try:
        return ParallelPipeline.from_pretrained(args.model, dtype=args.dtype, device=args.device)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        where = args.model or "the bundled model"
        raise CommandError(f"cannot load model {where}: {one_line(err)}") from err


def load_configured_pipeline(args: argparse.Namespace):
    """(pipeline, sampler overrides) of the options of `add_pipeline_arguments`, the overrides
    checked against the checkpoint's defaults before any work."""
    pipe = load_pipeline(args)
    overrides = sampler_overrides(args)
    try:
        pipe.sampler_defaults.replace(**overrides)
    except ValueError as err:
        raise CommandError(one_line(err)) from None
    return pipe, overrides
