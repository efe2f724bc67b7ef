"""Datasets of the shapes world: seeded training records, the fixed ShapeBench split, a
development split for tuning and ShapeBench-wild.

Seeds come from separate namespaces ("train" for `make_dataset`, "shapebench" for the bench,
"dev" for `development_samples`, "confirm" for `confirmation_samples`, "wild" for
`wild_samples`) and training, development or wild samples whose prompt (instruction + input
scene) equals a ShapeBench prompt are redrawn, so the benchmark never occurs in training data and
settings tuned on the development split are not tuned to the benchmark. The confirmation split
avoids the development split's prompts as well: a third set, drawn like both, on which nothing
was ever chosen, to check whether a difference seen on one of them holds. ShapeBench-wild holds
the opt-in kinds (`paradiff.shapes.reference_edits`) and every ShapeBench category, all in
held-out phrasings (`paradiff.shapes.wide_phrasing`) that no training sample uses.

A dataset folder holds `records.jsonl` (one training record per line, as docs/architecture.md
describes, plus the scenes and constraints the exact judge reads), `images/<id>_in.png` /
`images/<id>_out.png`, `dataset.json` (what was made, with which settings) and the world's
tokenizers (`text_tokenizer/`, `vqvae/`). `make_dataset` marks a folder it starts in (new or
empty) with `.paradiff-dataset`; `--overwrite` replaces the outputs of such a folder only (or of
one from before the marker: nothing but a dataset's outputs, with its `dataset.json`), never a
folder of someone else's files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from tqdm import tqdm

from paradiff.files import FileInputError, read_json_object, safe_target, write_atomic
from paradiff.shapes.drafting import DIFFICULTIES, LEVELS
from paradiff.shapes.image_tokenizer import shapes_tokenizer
from paradiff.shapes.phrasing import rephrase
from paradiff.shapes.render import DEFAULT_CELL_PX, check_cell_px, render_scene
from paradiff.shapes.sample import ShapeSample
from paradiff.shapes.scene import DEFAULT_GRID, Scene, SceneError
from paradiff.shapes.tasks import (
    CATEGORIES,
    MAX_INSTRUCTION_TOKENS,
    MAX_REASONING_TOKENS,
    OPT_IN_CATEGORIES,
    derive_seed,
    make_sample,
    task_of,
)
from paradiff.shapes.tokenizer import save_text_tokenizer
from paradiff.shapes.wide_phrasing import held_out_rephrase, training_rephrase

SHAPEBENCH_PER_CATEGORY = 20  # 10 editing x 20 = 200, 5 generation x 20 = 100 (as ParaBench)
DEVELOPMENT_PER_CATEGORY = 20  # the development split as held out from training data: 300
CONFIRMATION_PER_CATEGORY = 20  # the confirmation split: 300 more, disjoint from both
WILD_PER_KIND = 20  # ShapeBench-wild: 5 opt-in kinds x 20 = 100 ...
WILD_PER_CATEGORY = 10  # ... and 15 ShapeBench categories x 10 = 150, in held-out phrasings
RECORDS_FILE = "records.jsonl"
IMAGES_DIR = "images"
META_FILE = "dataset.json"
TEXT_TOKENIZER_DIR = "text_tokenizer"
IMAGE_TOKENIZER_DIR = "vqvae"
OUTPUTS = (RECORDS_FILE, IMAGES_DIR, META_FILE, TEXT_TOKENIZER_DIR, IMAGE_TOKENIZER_DIR)
DATASET_MARKER = ".paradiff-dataset"  # written into every folder make_dataset starts in
MAX_REDRAWS = 100


class DatasetError(ValueError):
    """Bad dataset options or an output folder that cannot be written."""


@lru_cache(maxsize=2)
def shapebench_samples(grid: int = DEFAULT_GRID) -> tuple[ShapeSample, ...]:
    """The 300 ShapeBench samples, categories interleaved (so a prefix covers every category).

    Every prompt is distinct: a draw repeating an earlier prompt is drawn again.
    """
    return tuple(drawn_samples("shapebench", SHAPEBENCH_PER_CATEGORY, grid, set()))


def development_samples(per_category: int, grid: int = DEFAULT_GRID) -> list[ShapeSample]:
    """`per_category` prompts of every category drawn as ShapeBench's are (same difficulties,
    categories interleaved) from the "dev" seeds, none of them a ShapeBench prompt or a repeat:
    for tuning settings."""
    return drawn_samples("dev", per_category, grid, set(shapebench_keys(grid)))


def confirmation_samples(per_category: int, grid: int = DEFAULT_GRID) -> list[ShapeSample]:
    """`per_category` prompts of every category drawn as ShapeBench's are from the "confirm"
    seeds, none of them a ShapeBench or development prompt (`DEVELOPMENT_PER_CATEGORY` of them)
    or a repeat: for checking a choice made on either split on prompts it was not made on."""
    taken = set(shapebench_keys(grid))
    taken |= {s.key() for s in development_samples(DEVELOPMENT_PER_CATEGORY, grid)}
    return drawn_samples("confirm", per_category, grid, taken)


def drawn_samples(
    namespace: str,
    per_category: int,
    grid: int,
    taken: set[str],
    categories: tuple[str, ...] | None = None,
) -> list[ShapeSample]:
    """`per_category` samples of every category (of `CATEGORIES` unless given) seeded from
    `namespace`, categories interleaved, sample k of a category at difficulty 1 + k % 3; a draw
    whose prompt is in `taken` (or repeats an earlier draw) is drawn again."""
    if categories is None:
        categories = tuple(c for names in CATEGORIES.values() for c in names)
    samples: list[ShapeSample] = []
    for index in range(per_category):
        for category in categories:
            sample_id = f"{namespace}-{category}-{index:02d}"
            for attempt in range(MAX_REDRAWS):
                seed = derive_seed(namespace, category, index, attempt)
                sample = make_sample(category, seed, 1 + index % 3, grid, sample_id)
                if sample.key() not in taken:
                    break
            else:
                raise DatasetError(f"{sample_id} keeps repeating an earlier prompt")
            taken.add(sample.key())
            samples.append(sample)
    return samples


@lru_cache(maxsize=2)
def wild_samples(grid: int = DEFAULT_GRID) -> tuple[ShapeSample, ...]:
    """ShapeBench-wild: `WILD_PER_KIND` samples of every opt-in kind, then `WILD_PER_CATEGORY`
    of every ShapeBench category (each part with its categories interleaved), none a ShapeBench
    prompt, every instruction in held-out phrasings (seeded by the sample's id)."""
    taken = set(shapebench_keys(grid))
    drawn = drawn_samples("wild", WILD_PER_KIND, grid, taken, OPT_IN_CATEGORIES["edit"])
    drawn += drawn_samples("wild", WILD_PER_CATEGORY, grid, taken)
    return tuple(
        dataclasses.replace(
            sample,
            instruction=held_out_rephrase(
                sample.instruction, random.Random(derive_seed("wild-phrasing", sample.id))
            ),
        )
        for sample in drawn
    )


@lru_cache(maxsize=2)
def shapebench_keys(grid: int = DEFAULT_GRID) -> frozenset[str]:
    return frozenset(sample.key() for sample in shapebench_samples(grid))


def parse_weights(spec: str | None = None, task: str = "both") -> dict[str, float]:
    """Category weights from 'add:2,remove,counting:0.5' (weight 1 when omitted).

    Without a spec every category of `task` ('edit', 'generation' or 'both') weighs 1, which
    gives ParaBench's 2:1 editing to generation ratio for 'both'. The opt-in kinds
    (`OPT_IN_CATEGORIES`: several, neighbour, cell, absent, ambiguous) are drawn only when named.
    """
    tasks = tuple(CATEGORIES) if task == "both" else (task,)
    if any(t not in CATEGORIES for t in tasks):
        raise DatasetError(f"unknown task {task!r} (expected edit, generation or both)")
    if not spec:
        return {category: 1.0 for t in tasks for category in CATEGORIES[t]}
    weights: dict[str, float] = {}
    for part in spec.split(","):
        name, _, value = part.strip().partition(":")
        try:
            category_task = task_of(name)
            weight = float(value) if value else 1.0
        except ValueError as err:
            raise DatasetError(f"bad category weight {part.strip()!r}: {err}") from None
        if category_task not in tasks:
            raise DatasetError(f"category {name!r} is not a {task} category")
        if weight < 0:
            raise DatasetError(f"category {name!r} has a negative weight")
        weights[name] = weight
    if not any(weights.values()):
        raise DatasetError("every category weight is zero")
    return weights


def training_samples(
    n: int,
    seed: int = 0,
    weights: dict[str, float] | None = None,
    difficulty: int | None = None,
    grid: int = DEFAULT_GRID,
    varied_phrasing: bool = True,
    sparse_share: float = 0.0,
    exclude_development: bool = False,
    wide_phrasing: bool = False,
) -> Iterator[ShapeSample]:
    """`n` training samples: category by weight, difficulty fixed or (None) drawn per sample.

    With difficulty None, `sparse_share` of the editing samples get sparse scenes (level 0: one
    or two objects, a warm-up for locating) and the rest a level of `DIFFICULTIES`.
    With `varied_phrasing` most instructions are rephrased as people type them
    (`paradiff.shapes.phrasing`); the ShapeBench check looks at the template instruction, and
    with `exclude_development` the development split's too (`DEVELOPMENT_PER_CATEGORY` prompts
    of every category: a prompt pool for runs judged on that split). `wide_phrasing` (with
    `varied_phrasing`) adds the training phrasings of `paradiff.shapes.wide_phrasing`, never its
    held-out ones."""
    weights = weights or parse_weights()
    if difficulty is not None and difficulty not in LEVELS:
        raise DatasetError(f"difficulty {difficulty} not in {LEVELS}")
    if not 0 <= sparse_share <= 1:
        raise DatasetError(f"sparse share must be in [0, 1], got {sparse_share}")
    names, values = list(weights), list(weights.values())
    bench = shapebench_keys(grid) if grid == DEFAULT_GRID else frozenset()
    if exclude_development:
        bench |= {s.key() for s in development_samples(DEVELOPMENT_PER_CATEGORY, grid)}

    def draw() -> Iterator[ShapeSample]:
        for index in range(n):
            rng = random.Random(derive_seed("train", seed, index))
            for attempt in range(MAX_REDRAWS):
                category = rng.choices(names, values)[0]
                level = rng.choice(DIFFICULTIES) if difficulty is None else difficulty
                if (
                    difficulty is None
                    and task_of(category) == "edit"
                    and rng.random() < sparse_share
                ):
                    level = 0
                sample_seed = derive_seed("train", seed, index, attempt)
                sample = make_sample(category, sample_seed, level, grid, f"s{seed}-{index:07d}")
                if sample.key() not in bench:
                    if varied_phrasing:
                        rng = random.Random(derive_seed("phrasing", seed, index))
                        vary = training_rephrase if wide_phrasing else rephrase
                        sample = dataclasses.replace(
                            sample, instruction=vary(sample.instruction, rng)
                        )
                    yield sample
                    break
            else:
                raise DatasetError(f"sample {index} kept matching ShapeBench prompts")

    return draw()  # the options above are checked at the call, before anything is drawn


def write_images(sample: ShapeSample, folder: Path, cell_px: int) -> tuple[str | None, str]:
    """Render the sample's input (editing) and output scenes; relative PNG paths."""
    user_image = None
    if sample.scene_in is not None:
        user_image = f"{IMAGES_DIR}/{sample.id}_in.png"
        render_scene(sample.scene_in, cell_px).save(folder / user_image)
    answer_image = f"{IMAGES_DIR}/{sample.id}_out.png"
    render_scene(sample.scene_out, cell_px).save(folder / answer_image)
    return user_image, answer_image


def is_dataset_folder(folder: Path) -> bool:
    """Whether `folder` holds a dataset `make_dataset` wrote: its marker, or (from before the
    marker) nothing but a dataset's outputs, `dataset.json` of the shapes world among them."""
    marker = folder / DATASET_MARKER
    if marker.is_file() and not marker.is_symlink():
        return True
    if any(path.name not in OUTPUTS for path in folder.iterdir()):
        return False
    try:
        return read_json_object(folder / META_FILE).get("world") == "shapes"
    except FileInputError:
        return False


def prepare_folder(out: str | os.PathLike, overwrite: bool) -> Path:
    """Create `out` (marked as a dataset folder); refuse a non-empty one unless `overwrite` and
    it holds a dataset paradiff wrote, whose outputs (and nothing else) are then deleted."""
    folder = Path(out)
    if not str(out).strip():
        raise DatasetError("--out is empty: name a new or empty folder")
    if folder.is_symlink() or folder.exists() and not folder.is_dir():
        raise DatasetError(f"{folder} exists and is not a directory")
    if folder.is_dir() and any(folder.iterdir()):
        if not is_dataset_folder(folder):
            raise DatasetError(
                f"{folder} holds files that are not a paradiff dataset: choose a new or empty folder"
            )
        if not overwrite:
            raise DatasetError(f"{folder} holds a dataset (pass --overwrite to replace it)")
        try:
            targets = [safe_target(folder, name) for name in OUTPUTS]
        except FileInputError as err:
            raise DatasetError(f"{err}: not replaced") from None
        for path in targets:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / DATASET_MARKER, json.dumps({"paradiff": "shapes dataset"}))
    (folder / IMAGES_DIR).mkdir()
    return folder


# A sample takes at least a record line (about 1 KB) and one image file (a 4 KiB disk block).
MIN_BYTES_PER_SAMPLE = 1024 + 4096


def check_room(out: str | os.PathLike, n: int) -> None:
    """DatasetError when `n` samples cannot fit on the disk that would hold `out`, by the
    smallest size a sample takes."""
    anchor = Path(out).absolute()
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    free = shutil.disk_usage(anchor).free
    need = n * MIN_BYTES_PER_SAMPLE
    if need > free:
        raise DatasetError(
            f"--n {n} needs at least {need / 1e9:.1f} GB on the disk that holds {out}, which "
            f"has {free / 1e9:.1f} GB free"
        )


def make_dataset(
    out: str | os.PathLike,
    n: int,
    seed: int = 0,
    weights: dict[str, float] | None = None,
    difficulty: int | None = None,
    grid: int = DEFAULT_GRID,
    cell_px: int = DEFAULT_CELL_PX,
    overwrite: bool = False,
    progress: bool = True,
    varied_phrasing: bool = True,
    sparse_share: float = 0.0,
    exclude_development: bool = False,
    wide_phrasing: bool = False,
) -> Path:
    """Write `n` training samples (records, PNGs, tokenizers) into `out`; returns its path. The
    options are checked before anything is written, and a failure part-way removes what was
    written."""
    if n < 1:
        raise DatasetError(f"--n must be at least 1, got {n}")
    check_room(out, n)
    weights = weights or parse_weights()
    try:
        check_cell_px(cell_px)
        Scene(grid, grid)
    except SceneError as err:
        raise DatasetError(str(err)) from None
    samples = training_samples(
        n,
        seed,
        weights,
        difficulty,
        grid,
        varied_phrasing,
        sparse_share,
        exclude_development,
        wide_phrasing,
    )
    meta = {
        "world": "shapes",
        "n": n,
        "seed": seed,
        "grid": grid,
        "cell_px": cell_px,
        "difficulty": difficulty if difficulty is not None else "mixed",
        "phrasing": ("wide" if wide_phrasing else "varied") if varied_phrasing else "templates",
        "sparse_share": sparse_share,
        "exclude_development": exclude_development,
        "weights": weights,
    }
    created = not Path(out).exists()
    folder = prepare_folder(out, overwrite)
    try:
        counts: Counter[str] = Counter()
        with open(folder / RECORDS_FILE, "w", encoding="utf-8") as records:
            for sample in tqdm(samples, total=n, desc="shapes samples", disable=not progress):
                user_image, answer_image = write_images(sample, folder, cell_px)
                records.write(json.dumps(sample.to_record(user_image, answer_image)) + "\n")
                counts[sample.category] += 1
        save_text_tokenizer(folder / TEXT_TOKENIZER_DIR)
        shapes_tokenizer(cell_px).save(folder / IMAGE_TOKENIZER_DIR)
        meta |= {
            "counts": dict(sorted(counts.items())),
            "max_instruction_tokens": MAX_INSTRUCTION_TOKENS,
            "max_reasoning_tokens": MAX_REASONING_TOKENS,
            "records": RECORDS_FILE,
            "text_tokenizer": f"{TEXT_TOKENIZER_DIR}/tokenizer.json",
            "image_tokenizer": IMAGE_TOKENIZER_DIR,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    except BaseException:
        remove_outputs(folder, created)
        raise
    return folder


def remove_outputs(folder: Path, created: bool) -> None:
    """Delete what a failed `make_dataset` wrote into `folder` (the folder too if it made it)."""
    for name in (*OUTPUTS, DATASET_MARKER):
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    if created and not any(folder.iterdir()):
        folder.rmdir()


def read_records(folder: str | os.PathLike) -> list[ShapeSample]:
    """The samples of a dataset folder's `records.jsonl`."""
    path = Path(folder) / RECORDS_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    samples = []
    for number, line in enumerate(lines, 1):
        try:
            samples.append(ShapeSample.from_json(json.loads(line)))
        except ValueError as err:
            raise DatasetError(f"{path}:{number}: {err}") from None
    return samples
