"""The `paradiff` command line: generate, edit, demo, and the shapes / bench / train groups.

Every command answers bad input with one line on stderr and exit status 2, and writes nothing.
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from paradiff import __version__
from paradiff.command_support import (
    EXIT_USAGE,
    CommandError,
    Parser,
    add_device_arguments,
    add_model_argument,
    add_quantize_arguments,
    add_sampler_arguments,
    check_batch_size,
    check_device,
    check_quantize_flags,
    check_size_flags,
    check_text,
    load_pipeline,
    one_line,
    output_dir,
    owned_outputs,
    publish,
    sampler_overrides,
)
from paradiff.files import FileInputError


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
    """The shared body of `paradiff generate` and `paradiff edit`: every check of the flags
    before the model loads."""
    from paradiff.pipeline import Request, check_paint_mask_size

    check_batch_size(args.batch_size)
    overrides = sampler_overrides(args)
    check_size_flags(args)
    if args.batch is not None:
        from paradiff.batch import sample_batch

        return sample_batch(args, task)
    if args.instruction is None or (task == "edit" and args.image is None):
        raise CommandError(
            "give " + ("--image and " if task == "edit" else "") + "the text, or --batch"
        )
    if args.shard is not None:
        raise CommandError("--shard splits a --batch file: give --batch")
    out = output_dir(args.out)
    owned = owned_outputs(out)  # refuses a folder holding the user's files before any work
    if task == "edit" and args.image is not None:
        given = Path(args.image).absolute()
        if given.parent == out.absolute() and given.name in owned:
            raise CommandError(
                f"the input image {args.image} is an output of {out} this edit would replace: "
                "choose another --out"
            )
    what = "instruction" if task == "edit" else "prompt"
    request = Request(check_text(args.instruction, what))
    if task == "edit":  # read (regular files, sizes from the header) before the model loads
        from paradiff.image_tokenizers.base import load_image

        request.image = load_image(args.image)
        if args.paint_mask:
            try:
                request.paint_mask = load_image(args.paint_mask).convert("L")
            except FileInputError as err:  # say which of the two images it is
                raise CommandError(f"--paint-mask: {err}") from None
            check_paint_mask_size(request.paint_mask.size, request.image.size)
    pipe = load_pipeline(args)
    progress = StepProgress(not args.quiet, task)
    try:
        (result,) = pipe.run(
            task,
            [request],
            height=args.height,
            width=args.width,
            on_step=progress,
            **overrides,
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

    out = output_dir(args.out)
    owned_outputs(out)
    check_device(args.device)
    return demo(out, model=args.model, device=args.device)


def run_app(args: argparse.Namespace) -> int:
    """Serve the live demo app until interrupted."""
    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be in 1..65535, got {args.port}")
    if args.concurrency < 1:
        raise CommandError(f"--concurrency must be at least 1, got {args.concurrency}")
    check_device(args.device)
    check_quantize_flags(args)
    check_address(args.host, args.port)
    try:
        from paradiff.app import launch_app
    except ModuleNotFoundError as err:
        if err.name != "gradio":
            raise
        raise CommandError("the app needs gradio: pip install 'paradiff[app]'") from err
    share = args.share == "on"
    return launch_app(
        args.model,
        args.device,
        args.host,
        args.port,
        share,
        args.concurrency,
        quantize=args.quantize,
        offload=args.offload,
    )


def check_address(host: str, port: int) -> None:
    """Refuse, before the model loads, an address the app could not serve on (a name that does
    not resolve, an address of another machine, a port in use)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as err:
        raise CommandError(f"--host {host!r} is not an address of this machine: {err}") from None
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind(address)
        except OSError as err:
            raise CommandError(f"cannot serve on {host}:{port}: {err.strerror or err}") from None


def register_app(commands) -> None:
    app = commands.add_parser("app", help="the live demo app in the browser (paradiff[app])")
    add_model_argument(app)
    app.add_argument("--device", default=None, help="cpu, cuda … (default: best)")
    add_quantize_arguments(app)
    app.add_argument("--host", default="127.0.0.1", help="address to serve on (default local)")
    app.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    app.add_argument(
        "--share", choices=("off", "on"), default="off", help="on: also a public share link"
    )
    app.add_argument(
        "--concurrency", type=int, default=2, help="runs at a time; more wait in a queue"
    )
    app.set_defaults(func=run_app)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
        add_quantize_arguments(sub)
        add_sampler_arguments(sub)
        add_batch_arguments(sub)
        sub.set_defaults(func=lambda args, task=task: sample_and_save(args, task))

    demo = commands.add_parser(
        "demo", help="three generations and three edits on the bundled model, scored"
    )
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
    subcommands = (
        getattr(args, name, None) for name in ("shapes_command", "recipe", "bench_command")
    )
    command = " ".join(filter(None, (args.command, *subcommands)))
    print(f"paradiff {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
