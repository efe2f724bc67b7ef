"""`paradiff pretokenize`, `paradiff train sft` and `paradiff train pararl`."""

from __future__ import annotations

import argparse


def _pretokenize(args: argparse.Namespace) -> int:
    from paradiff.training.pretokenize import pretokenize

    state = pretokenize(
        args.records, args.tokenizer, args.out, shard_size=args.shard_size, progress=not args.quiet
    )
    skipped = sum(state["skipped"].values())
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(state["skipped"].items()))
    print(f"{state['examples']} examples in {len(state['shards'])} shards in {args.out}")
    if skipped:
        print(f"skipped {skipped} records: {reasons}")
    return 0


def _train_sft(args: argparse.Namespace) -> int:
    from paradiff.training.sft import SFTRun, SFTSettings

    settings = SFTSettings.load(args.config, args.overrides)
    run = SFTRun(settings, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    final = run.run()
    print(f"trained model written to {final}")
    return 0


def _train_pararl(args: argparse.Namespace) -> int:
    from paradiff.training.pararl import ParaRLRun, RLSettings

    overrides = list(args.overrides)
    if args.reward_at:
        overrides.append(f"reward.at={args.reward_at}")
    settings = RLSettings.load(args.config, overrides)
    run = ParaRLRun(settings, resume=args.resume, progress=not args.quiet, overwrite=args.overwrite)
    final = run.run()
    print(f"trained model written to {final}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pretokenize` and the `train` group to the `paradiff` subparsers."""
    pre = subparsers.add_parser(
        "pretokenize", help="turn training records into shards of token ids (resumable)"
    )
    pre.add_argument("--records", required=True, help="records JSONL (images relative to it)")
    pre.add_argument(
        "--tokenizer",
        required=True,
        help="checkpoint directory, hub id or bundled model name whose text and image tokenizers"
        " to use (the model to train)",
    )
    pre.add_argument("--out", required=True, help="output folder for the shards")
    pre.add_argument("--shard-size", type=int, default=1000, help="records per shard")
    pre.add_argument("--quiet", action="store_true", help="no progress bar")
    pre.set_defaults(func=_pretokenize)

    train = subparsers.add_parser("train", help="training recipes")
    recipes = train.add_subparsers(dest="recipe", required=True)
    sft = recipes.add_parser(
        "sft",
        help="supervised fine-tuning with the masked-diffusion objective",
        description="Run an SFT recipe; for N processes (GPUs, or gloo on the CPU) launch it with "
        "`accelerate launch --multi_gpu --num_processes N -m paradiff.cli train sft …` "
        "(`--cpu` would start one process only).",
    )
    sft.add_argument("--config", required=True, help="recipe YAML (see configs/)")
    sft.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    sft.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: delete the run already in output.dir (its checkpoints, log, model)",
    )
    sft.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    sft.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. train.lr=1e-4"
    )
    sft.set_defaults(func=_train_sft)

    pararl = recipes.add_parser(
        "pararl",
        help="ParaRL: GRPO with semantic rewards along the denoising trajectory",
        description="Run a ParaRL recipe (one process); --reward-at final gives the output-level "
        "RL baseline with everything else equal.",
    )
    pararl.add_argument("--config", required=True, help="recipe YAML (see configs/)")
    pararl.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    pararl.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: delete the run already in output.dir (its checkpoints, log, model)",
    )
    pararl.add_argument(
        "--reward-at",
        choices=("trajectory", "final"),
        default=None,
        help="score the scored steps' partial answers (ParaRL) or the final answer only",
    )
    pararl.add_argument("--quiet", action="store_true", help="log lines instead of a progress bar")
    pararl.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. train.lr=1e-5"
    )
    pararl.set_defaults(func=_train_pararl)
