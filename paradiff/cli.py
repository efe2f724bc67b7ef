"""The `paradiff` command line: generate, edit, demo, and the shapes / bench / train groups.

Every command answers bad input with one line on stderr and exit status 2, and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paradiff import __version__

EXIT_USAGE = 2

# CLI flag -> (SamplerConfig field, type, help). Names follow the upstream scripts.
SAMPLER_FLAGS: dict[str, tuple[str, type, str]] = {
    "--timesteps": ("image_steps", int, "image decoding steps (upstream `timesteps`)"),
    "--text-steps": ("text_steps", int, "text decoding steps"),
    "--text-gen-length": ("text_gen_length", int, "masked text tokens in the answer"),
    "--text-block-length": (
        "text_block_length",
        int,
        "semi-autoregressive text block size (must divide --text-gen-length)",
    ),
    "--cfg-scale": ("cfg_text", float, "text classifier-free guidance weight (0 = off)"),
    "--cfg-img": ("cfg_image", float, "image classifier-free guidance weight (0 = off)"),
    "--temperature": ("image_temperature", float, "image sampling temperature (0 = greedy)"),
    "--text-temperature": ("text_temperature", float, "text sampling temperature (0 = greedy)"),
    "--remasking": ("remasking", str, "text reveal order: low_confidence or random"),
    "--mode": ("mode", str, "parallel (one timeline) or sequential (text, then image)"),
    "--profile": ("profile", str, "default, or reference (upstream's rules step for step)"),
    "--seed": ("seed", int, "random seed (same seed, same output)"),
}


class CommandError(Exception):
    """A user error reported as one line with exit status 2."""


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


def sampler_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The SamplerConfig fields set on the command line."""
    overrides = {}
    for flag, (field, _, _) in SAMPLER_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides[field] = value
    return overrides


def check_writable(out: Path) -> None:
    """Fail early (before any work) when `out` cannot be created or written."""
    if out.exists() and not out.is_dir():
        raise CommandError(f"output path {out} exists and is not a directory")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise CommandError(f"output directory {out} is not writable")


def publish(write, out: Path) -> Path:
    """Run `write(tmp_dir)` in a scratch folder beside `out`, then move the files into `out`,
    so a failure leaves nothing half-written."""
    out = out.resolve()
    existing = out
    while not existing.exists():
        existing = existing.parent
    with tempfile.TemporaryDirectory(prefix=".paradiff-", dir=existing) as tmp:
        write(Path(tmp))
        out.mkdir(parents=True, exist_ok=True)
        for item in Path(tmp).iterdir():
            target = out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    return out


def load_pipeline(args: argparse.Namespace):
    from paradiff.pipeline import ParallelPipeline

    try:
        return ParallelPipeline.from_pretrained(args.model, dtype=args.dtype, device=args.device)
    except (OSError, ValueError, KeyError) as err:
        where = args.model or "the bundled model"
        raise CommandError(f"cannot load model {where}: {one_line(err)}") from err


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


class StepProgress:
    """A tqdm bar over sampler steps, fed by the pipeline's on_step callback."""

    def __init__(self, enabled: bool, description: str) -> None:
        self.enabled, self.description, self.bar = enabled, description, None

    def __call__(self, step: int, n_steps: int, _ids) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=n_steps, desc=self.description, unit="step", leave=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def sample_and_save(args: argparse.Namespace, task: str) -> int:
    """The shared body of `paradiff generate` and `paradiff edit`."""
    from paradiff.pipeline import Request

    if args.batch is not None:
        return batch_sample(args, task)
    if args.instruction is None or (task == "edit" and args.image is None):
        raise CommandError(
            "give " + ("--image and " if task == "edit" else "") + "the text, or --batch"
        )
    out = Path(args.out)
    check_writable(out)
    pipe = load_pipeline(args)
    request = Request(args.instruction, getattr(args, "image", None))
    if getattr(args, "paint_mask", None):
        from paradiff.image_tokenizers.base import load_image

        request.paint_mask = load_image(args.paint_mask).convert("L")
    progress = StepProgress(not args.quiet, task)
    try:
        (result,) = pipe.run(
            task,
            [request],
            height=args.height,
            width=args.width,
            on_step=progress,
            **sampler_overrides(args),
        )
    finally:
        progress.close()
    publish(result.save, out)
    if not args.quiet:
        print(f"reasoning: {result.text}")
        t = result.timings
        print(f"wrote {out}/image.png, reasoning.txt, meta.json, trajectory.gif")
        print(f"{t['steps']} steps in {t['sample_s']:.2f} s (seed {result.settings['seed']})")
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """One generation and one edit with the bundled model, written to --out."""
    from paradiff.demo import run_demo as demo

    check_writable(Path(args.out))
    return demo(Path(args.out), model=args.model, device=args.device)


def run_app(args: argparse.Namespace) -> int:
    """Serve the live demo app until interrupted."""
    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be in 1..65535, got {args.port}")
    if args.concurrency < 1:
        raise CommandError(f"--concurrency must be at least 1, got {args.concurrency}")
    try:
        from paradiff.app import launch_app
    except ModuleNotFoundError as err:
        if err.name != "gradio":
            raise
        raise CommandError("the app needs gradio: pip install 'paradiff[app]'") from err
    share = args.share == "on"
    return launch_app(args.model, args.device, args.host, args.port, share, args.concurrency)


def register_app(commands) -> None:
    app = commands.add_parser("app", help="the live demo app in the browser (paradiff[app])")
    add_model_argument(app)
    app.add_argument("--device", default=None, help="cpu, cuda … (default: best)")
    app.add_argument("--host", default="127.0.0.1", help="address to serve on (default local)")
    app.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    app.add_argument(
        "--share", choices=("off", "on"), default="off", help="on: also a public share link"
    )
    app.add_argument(
        "--concurrency", type=int, default=2, help="runs at a time; more wait in a queue"
    )
    app.set_defaults(func=run_app)


def batch_sample(args: argparse.Namespace, task: str) -> int:
    """`--batch REQUESTS`: every request of the file, one folder per id under --out."""
    from paradiff.batch import check_out, read_requests, run_batch
    from paradiff.bench.runner import Shard

    if args.instruction is not None or getattr(args, "image", None) is not None:
        raise CommandError("--batch takes the requests from its file: drop the text and --image")
    items = read_requests(args.batch, task)
    shard = Shard.parse(args.shard) if args.shard is not None else None
    size = (args.width, args.height) if args.width and args.height else None
    check_writable(Path(args.out))
    check_out(Path(args.out))
    pipe = load_pipeline(args)
    overrides = sampler_overrides(args)
    done = run_batch(
        pipe,
        task,
        items,
        args.out,
        args.batch_size,
        overrides,
        size,
        shard,
        args.model,
        not args.quiet,
    )
    if not args.quiet:
        print(f"{len(done)} requests done in {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paradiff",
        description="Thinking-aware image generation and editing: one masked-diffusion model "
        "writes its reasoning and its image in parallel.",
    )
    parser.add_argument("--version", action="version", version=f"paradiff {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser(
        "generate", help="draw an image (and its reasoning) for a prompt"
    )
    generate.add_argument("instruction", metavar="PROMPT", nargs="?", help="what to draw")
    edit = commands.add_parser("edit", help="edit an image following an instruction")
    edit.add_argument("--image", default=None, help="input image (PNG, JPEG, …)")
    edit.add_argument(
        "--paint-mask",
        default=None,
        help="inpainting: a mask image the size of the input, white = repaint, black = keep",
    )
    edit.add_argument("instruction", metavar="INSTRUCTION", nargs="?", help="the edit to make")
    from paradiff.batch import add_batch_arguments

    for sub, task in ((generate, "generate"), (edit, "edit")):
        add_model_argument(sub)
        sub.add_argument(
            "--out", required=True, help="output folder for image, reasoning, meta, GIF"
        )
        sub.add_argument("--quiet", action="store_true", help="no progress bar or summary")
        add_device_arguments(sub)
        add_sampler_arguments(sub)
        add_batch_arguments(sub)
        sub.set_defaults(func=lambda args, task=task: sample_and_save(args, task))

    demo = commands.add_parser("demo", help="one generation and one edit on the bundled model")
    add_model_argument(demo)
    demo.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    demo.add_argument("--device", default=None, help="cpu, cuda … (default: best)")
    demo.set_defaults(func=run_demo)
    register_app(commands)

    from paradiff.bench.commands import register as register_bench
    from paradiff.shapes.commands import register as register_shapes
    from paradiff.training.commands import register as register_training

    register_shapes(commands)
    register_training(commands)
    register_bench(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # recipe overrides may come after options: `--config X a=1 --resume b=2`
        if hasattr(args, "overrides") and all("=" in u and not u.startswith("-") for u in unknown):
            args.overrides += unknown
        else:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args) or 0)
    except CommandError as err:
        message = str(err)
    except (OSError, ValueError) as err:  # input errors raised by the library
        message = one_line(err)
    print(f"paradiff {args.command}: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
