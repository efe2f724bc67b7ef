"""`paradiff shapes …` subcommands: make-dataset, save-tokenizers, init-model, train-clip, study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paradiff.files import file_above
from paradiff.shapes.dataset import DatasetError, make_dataset, parse_weights
from paradiff.shapes.drafting import LEVELS
from paradiff.shapes.image_tokenizer import shapes_tokenizer
from paradiff.shapes.render import DEFAULT_CELL_PX
from paradiff.shapes.scene import DEFAULT_GRID
from paradiff.shapes.tasks import TaskError
from paradiff.shapes.tokenizer import save_text_tokenizer


def _make_dataset(args: argparse.Namespace) -> int:
    try:
        weights = parse_weights(args.categories, args.task)
        difficulty = None if args.difficulty == "mixed" else int(args.difficulty)
        folder = make_dataset(
            args.out,
            args.n,
            seed=args.seed,
            weights=weights,
            difficulty=difficulty,
            grid=args.grid,
            cell_px=args.cell_px,
            overwrite=args.overwrite,
            progress=not args.quiet,
            varied_phrasing=args.phrasing != "templates",
            wide_phrasing=args.phrasing == "wide",
            sparse_share=args.sparse_share,
            exclude_development=args.exclude_development,
        )
    except (DatasetError, TaskError) as err:
        print(f"paradiff shapes make-dataset: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.n} samples to {folder}")
    return 0


def new_folder_error(out: str) -> str | None:
    """Why `out` cannot take a command's outputs, or None: it must be a new or empty folder
    (these commands never replace or add to an existing folder's files)."""
    path = Path(out)
    if not out.strip():
        return "--out is empty: name a new folder"
    if path.is_symlink() or path.exists() and (not path.is_dir() or any(path.iterdir())):
        return f"{out} exists and is not empty: choose a new folder (an existing one is never replaced)"
    blocked = file_above(path)
    if blocked:
        return f"{blocked} is a file, not a folder: cannot write {out}"
    return None


def refuse(command: str, message: str) -> int:
    print(f"paradiff shapes {command}: {message}", file=sys.stderr)
    return 2


def _save_tokenizers(args: argparse.Namespace) -> int:
    from paradiff.shapes.render import check_cell_px
    from paradiff.shapes.scene import SceneError

    problem = new_folder_error(args.out)
    try:
        check_cell_px(args.cell_px)
    except SceneError as err:
        problem = problem or str(err)
    if problem:
        return refuse("save-tokenizers", problem)
    out = Path(args.out)
    text = save_text_tokenizer(out / "text_tokenizer")
    image = shapes_tokenizer(args.cell_px).save(out / "vqvae")
    print(f"wrote {text}/tokenizer.json and {image}/")
    return 0


MAX_INIT_PARAMETERS = 10**9  # the shapes world's models are small; this bounds a typo's memory


def _init_model(args: argparse.Namespace) -> int:
    from paradiff.model_config import ConfigError, ModelConfig
    from paradiff.shapes.family import MODEL_DEFAULTS, MODEL_SIZES, new_shapes_pipeline
    from paradiff.shapes.render import check_cell_px
    from paradiff.shapes.scene import SceneError

    problem = new_folder_error(args.out)
    if problem:
        return refuse("init-model", problem)
    names = (*MODEL_SIZES, *MODEL_DEFAULTS)
    sizes = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    try:
        check_cell_px(args.cell_px)
        config = ModelConfig(**{**MODEL_SIZES, **MODEL_DEFAULTS, **sizes})
    except (ConfigError, SceneError) as err:
        return refuse("init-model", str(err))
    d, mlp = config.d_model, config.mlp_hidden_size or config.mlp_ratio * config.d_model
    if config.n_layers * (4 * d * d + 3 * d * mlp) > MAX_INIT_PARAMETERS:
        return refuse("init-model", f"more than {MAX_INIT_PARAMETERS:.0e} parameters: too large")
    if args.seed < 0:
        return refuse("init-model", f"--seed must be at least 0, got {args.seed}")
    pipe = new_shapes_pipeline(seed=args.seed, cell_px=args.cell_px, **sizes)
    pipe.save_pretrained(args.out)
    count = sum(p.numel() for p in pipe.model.parameters())
    print(f"wrote a random shapes-world model ({count / 1e6:.2f} M parameters) to {args.out}")
    return 0


def _train_clip(args: argparse.Namespace) -> int:
    import math

    from paradiff.shapes.clip import train_shapes_clip

    problem = new_folder_error(args.out)
    if not (math.isfinite(args.lr) and args.lr > 0):
        problem = problem or f"--lr must be a finite number above 0, got {args.lr}"
    if problem:
        return refuse("train-clip", problem)
    try:
        summary = train_shapes_clip(
            args.out,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            n_pairs=args.pairs,
            seed=args.seed,
            progress=not args.quiet,
            hard_negatives=not args.no_hard_negatives,
        )
    except ValueError as err:
        return refuse("train-clip", str(err))
    print(f"wrote the shapes CLIP to {args.out}: {summary}")
    return 0


def _study(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from paradiff.shapes.study import SETTINGS, Inputs, Study, StudyError

    for name in ("records", "pretokenized", "sft_init", "clip_dir"):
        value = getattr(args, name)
        if value is not None and not Path(value).exists():
            raise StudyError(f"--{name.replace('_', '-')} {value} does not exist")
    inputs = Inputs(
        model=args.model,
        records=args.records,
        pretokenized=args.pretokenized,
        sft_init=args.sft_init,
        clip_dir=args.clip_dir,
    )
    if args.rl_recipe:
        inputs.rl_recipe = args.rl_recipe
    if args.sft_recipe:
        inputs.sft_recipe = args.sft_recipe
    for flag, recipe in (("--rl-recipe", inputs.rl_recipe), ("--sft-recipe", inputs.sft_recipe)):
        if not Path(recipe).is_file():  # the defaults live in a source checkout's configs/
            raise StudyError(f"the recipe {recipe} does not exist (pass {flag})")
    settings = SETTINGS[args.setting]
    if not args.pretokenized:
        settings = dataclasses.replace(settings, sft_seeds=())
    study = Study(inputs, args.out, settings, progress=not args.quiet)
    results = study.run(args.report)
    for claim in results["claims"]:
        print(f"{claim['verdict']:>15} ({claim['temperature']}): {claim['statement']}")
    print(f"study written to {args.out}" + (f" and {args.report}" if args.report else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `shapes` command group to a `paradiff` argparse subparsers object."""
    shapes = subparsers.add_parser("shapes", help="the synthetic shapes world")
    commands = shapes.add_subparsers(dest="shapes_command", required=True)

    make = commands.add_parser("make-dataset", help="write seeded training records and PNGs")
    make.add_argument("--n", type=int, required=True, help="number of samples")
    make.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    make.add_argument(
        "--exclude-development",
        action="store_true",
        help="redraw samples whose prompt is one of the development split's 300 (as ShapeBench's"
        " always are): a prompt pool for a run judged on that split",
    )
    make.add_argument("--out", required=True, help="output folder (must be empty)")
    make.add_argument(
        "--task",
        choices=("edit", "generation", "both"),
        default="both",
        help="which tasks to draw (default both, 2:1 editing to generation)",
    )
    make.add_argument(
        "--categories",
        default=None,
        help="category weights, e.g. 'add:2,remove,counting:0.5' (curriculum handle); the opt-in"
        " editing kinds several, neighbour, cell, absent and ambiguous are drawn only when named",
    )
    make.add_argument(
        "--difficulty",
        choices=[*map(str, LEVELS), "mixed"],
        default="mixed",
        help="0 (sparse: 1-2 objects) .. 3 (hard): scene density for editing, object counts "
        "for generation; or mixed (default: 1-3, see --sparse-share)",
    )
    make.add_argument(
        "--sparse-share",
        type=float,
        default=0.0,
        help="with mixed difficulty, the share of editing samples on sparse scenes of one or "
        "two objects (a warm-up for locating; default 0)",
    )
    make.add_argument("--grid", type=int, default=DEFAULT_GRID, help="cells per side (default 4)")
    make.add_argument("--cell-px", type=int, default=DEFAULT_CELL_PX, help="pixels per cell")
    make.add_argument(
        "--phrasing",
        choices=("varied", "templates", "wide"),
        default="varied",
        help="varied (default): most instructions rephrased as people type them (questions, "
        "'please', lower case, other words for 'shape'); templates: the tidy template sentences;"
        " wide: varied plus other verbs and requests (never the ones ShapeBench-wild holds out)",
    )
    make.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    make.add_argument("--quiet", action="store_true", help="no progress bar")
    make.set_defaults(func=_make_dataset)

    save = commands.add_parser(
        "save-tokenizers", help="write the world's text tokenizer and VQ codebook"
    )
    save.add_argument("--out", required=True, help="output folder")
    save.add_argument("--cell-px", type=int, default=DEFAULT_CELL_PX, help="pixels per cell")
    save.set_defaults(func=_save_tokenizers)

    init = commands.add_parser(
        "init-model", help="write a randomly initialised shapes-world model (SFT starts here)"
    )
    init.add_argument("--out", required=True, help="checkpoint directory to write")
    init.add_argument("--seed", type=int, default=0, help="initialisation seed")
    init.add_argument("--cell-px", type=int, default=DEFAULT_CELL_PX, help="pixels per cell")
    for name in ("d_model", "n_heads", "n_layers", "mlp_hidden_size"):
        init.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, default=None)
    init.add_argument("--rope-theta", dest="rope_theta", type=float, default=None)
    init.add_argument(
        "--image-grid-size",
        dest="image_grid_size",
        type=int,
        default=None,
        help="rows of the learned image row/column tables (0: none; default 8, the code grid)",
    )
    init.set_defaults(func=_init_model)

    clip = commands.add_parser(
        "train-clip",
        help="train the world's small CLIP (ParaRL's reward) on full and partial text-image pairs",
    )
    clip.add_argument("--out", required=True, help="directory to write the CLIP into")
    clip.add_argument("--steps", type=int, default=500, help="optimizer steps (default 500)")
    clip.add_argument("--batch-size", type=int, default=64, help="pairs per step (default 64)")
    clip.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    clip.add_argument("--pairs", type=int, default=20000, help="samples drawn (5%% held out)")
    clip.add_argument("--seed", type=int, default=0, help="pair and initialisation seed")
    clip.add_argument(
        "--no-hard-negatives",
        action="store_true",
        help="train without near-miss images (one cell moved, recoloured, replaced or swapped)",
    )
    clip.add_argument("--quiet", action="store_true", help="no progress bar")
    clip.set_defaults(func=_train_clip)

    study = commands.add_parser(
        "study",
        help="test the paper's claims (parallel decoding, ParaRL, scored steps, thinking) with "
        "seeds and intervals; resumable",
        description="Train and evaluate every arm of the paper's comparisons on ShapeBench and "
        "write a report with a verdict per claim. Work is kept in --out; a re-run resumes.",
    )
    study.add_argument(
        "--setting",
        choices=("quick", "medium", "full"),
        default="quick",
        help="quick: tiny runs of the whole pipeline (minutes); medium: the four claims on 100 "
        "prompts, RL with three seeds and two rewards, short RL and SFT runs, fast-preset "
        "evaluations (about 4.4 hours on 2 CPU cores); full: the shipped recipes on all of "
        "ShapeBench (a day)",
    )
    study.add_argument("--out", required=True, help="folder of the study's runs (resumed)")
    study.add_argument("--report", default=None, help="Markdown report to write (and its .png)")
    study.add_argument(
        "--model", default="shapes", help="the SFT model under test (default: the bundled one)"
    )
    study.add_argument("--records", required=True, help="training records JSONL (RL prompts)")
    study.add_argument(
        "--pretokenized",
        default=None,
        help="pre-tokenized SFT data: trains the thinking / no-thinking arms",
    )
    study.add_argument("--sft-init", default=None, help="the untrained model SFT starts from")
    study.add_argument(
        "--rl-recipe", default=None, help="RL recipe (default configs/shapes-pararl.yaml)"
    )
    study.add_argument(
        "--sft-recipe", default=None, help="SFT recipe (default configs/shapes-sft.yaml)"
    )
    study.add_argument("--clip-dir", default=None, help="the CLIP reward (default: the recipe's)")
    study.add_argument("--quiet", action="store_true", help="no progress bars")
    study.set_defaults(func=_study)
    return shapes
