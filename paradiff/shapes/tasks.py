"""Seeded sample making: category registry, length budgets and the self-check of every draft."""

from __future__ import annotations

import hashlib
import random

from paradiff.shapes.constraints import satisfied
from paradiff.shapes.drafting import LEVELS, Draft, Unfit, random_scene
from paradiff.shapes.edit_tasks import EDIT_GENERATORS
from paradiff.shapes.generation_tasks import GENERATION_GENERATORS
from paradiff.shapes.language import count_tokens
from paradiff.shapes.parser import parse_reasoning
from paradiff.shapes.reference_edits import REFERENCE_GENERATORS
from paradiff.shapes.sample import ShapeSample
from paradiff.shapes.scene import DEFAULT_GRID, Scene

# Token budgets every sample keeps (tokens of the world's text tokenizer, specials excluded).
MAX_INSTRUCTION_TOKENS = 25
MAX_REASONING_TOKENS = 48
EDIT_CATEGORIES: tuple[str, ...] = tuple(EDIT_GENERATORS)
GENERATION_CATEGORIES: tuple[str, ...] = tuple(GENERATION_GENERATORS)
CATEGORIES: dict[str, tuple[str, ...]] = {
    "edit": EDIT_CATEGORIES,
    "generation": GENERATION_CATEGORIES,
}
# Kinds drawn only when named (`make-dataset --categories several,absent`, ShapeBench-wild):
# ShapeBench, the development split, the tokenizer's corpus and the default training mix iterate
# `CATEGORIES`, which stays as it was so that they stay byte-identical.
OPT_IN_CATEGORIES: dict[str, tuple[str, ...]] = {"edit": tuple(REFERENCE_GENERATORS)}
ALL_EDIT_GENERATORS = {**EDIT_GENERATORS, **REFERENCE_GENERATORS}
MAX_ATTEMPTS = 400
# Draft problems that are properties of the random draw (drawn again), not generator bugs;
# a repeated sentence would read as degenerate repetition to the judge.
REDRAW_PROBLEMS = ("instruction too long", "reasoning too long", "reasoning repeats a sentence")
MIN_GRID = 3  # corners, rows and columns must be distinct cells for the templates to make sense


class TaskError(ValueError):
    """An unknown task or category, a bad difficulty, or a seed no draft fits."""


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the parts' text (stable across runs, unlike `hash`)."""
    digest = hashlib.sha256("/".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def task_of(category: str) -> str:
    for registry in (CATEGORIES, OPT_IN_CATEGORIES):
        for task, categories in registry.items():
            if category in categories:
                return task
    known = EDIT_CATEGORIES + GENERATION_CATEGORIES + OPT_IN_CATEGORIES["edit"]
    raise TaskError(f"unknown category {category!r} (expected one of {known})")


def check_draft(draft: Draft, task: str) -> str | None:
    """Why a draft is unusable (too long, repetitive, a no-op, reasoning not matching), or None.

    An edit that changes nothing is a draft only when its reasoning says what the instruction
    names is absent (the `absent` kind)."""
    if count_tokens(draft.instruction) > MAX_INSTRUCTION_TOKENS:
        return "instruction too long"
    if count_tokens(draft.reasoning) > MAX_REASONING_TOKENS:
        return "reasoning too long"
    if len(set(draft.sentences)) < len(draft.sentences):
        return "reasoning repeats a sentence"
    out = draft.scene_out
    base = draft.scene_in if task == "edit" else Scene.empty(out.rows, out.cols)
    reading = parse_reasoning(draft.reasoning, out.rows, out.cols)
    if task == "edit" and base == out and not reading.absent:
        return "the edit changes nothing"
    if task == "generation" and not all(satisfied(c, out) for c in draft.constraints):
        return "the drawn scene breaks a constraint"
    if reading.parse_score < 1.0 or reading.apply(base) != out:
        return "the reasoning does not describe the output"
    return None


def make_sample(
    category: str,
    seed: int,
    difficulty: int = 2,
    grid: int = DEFAULT_GRID,
    sample_id: str | None = None,
) -> ShapeSample:
    """One sample of `category` drawn from `random.Random(seed)` (deterministic).

    Scenes and choices are redrawn until the generator's preconditions hold, the draft keeps
    the token budgets and no reasoning sentence repeats. Raises TaskError for a draft whose reasoning does not parse back to its
    output (a generator bug, never a property of the seed).
    """
    task = task_of(category)
    if difficulty not in LEVELS:
        raise TaskError(f"difficulty {difficulty} not in {LEVELS}")
    if not MIN_GRID <= grid <= 9:
        raise TaskError(f"grid {grid} outside {MIN_GRID}..9")
    rng = random.Random(seed)
    for _ in range(MAX_ATTEMPTS):
        try:
            if task == "edit":
                scene = random_scene(rng, grid, grid, difficulty)
                draft = ALL_EDIT_GENERATORS[category](rng, scene, max(1, difficulty))
            else:
                draft = GENERATION_GENERATORS[category](rng, grid, grid, max(1, difficulty))
        except Unfit:
            continue
        problem = check_draft(draft, task)
        if problem in REDRAW_PROBLEMS:
            continue
        if problem is not None:
            raise TaskError(f"{category} sample of seed {seed}: {problem}: {draft.reasoning!r}")
        return ShapeSample(
            id=sample_id or f"{category}-{seed}",
            task=task,
            category=category,
            instruction=draft.instruction,
            reasoning=draft.reasoning,
            scene_out=draft.scene_out,
            scene_in=draft.scene_in,
            constraints=draft.constraints,
            seed=seed,
            difficulty=difficulty,
        )
    raise TaskError(f"no {category} sample fits seed {seed} in {MAX_ATTEMPTS} draws")
