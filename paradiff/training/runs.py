"""What the training recipes share: the run folder (checkpoints, `latest`, resume, pruning, the
JSONL log), the learning-rate schedule and the per-example generators.

A run folder holds one run:

- `checkpoint-NNNNNN/`: a loadable pipeline plus `training_state.pt`, each written atomically
  (a scratch `.checkpoint-NNNNNN.*` folder renamed into place);
- `latest`: the name of the newest checkpoint, written after it is complete;
- `log.jsonl`: one line per logged step; `final/`: the trained model.

paradiff marks a run folder as its own with `.paradiff-run` when a run starts in it (a new or
empty folder); a non-empty folder without the marker is refused, unless it is a run written
before markers existed (only run files, at least one complete checkpoint). A folder that holds a
run is continued with `--resume` (from `latest`, or, when `latest` is broken, from the newest
complete checkpoint) or started over with `--overwrite` (which deletes the old run's files —
checkpoints, `latest`, `log.jsonl`, `final/`, `tensorboard/`, the recipe's own — and nothing
else; refused while `final/` or a checkpoint holds a file no checkpoint holds); anything else is
refused before any work. Only the checkpoints of the run in progress are
pruned, never the one `latest` names; the scratch folders of a killed run (those holding the
marker `paradiff.checkpoint.save_model` writes inside) are deleted when the next run starts.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from paradiff.files import (
    SAVE_TOKEN,
    FileInputError,
    first_line,
    is_scratch,
    is_write_temp,
    process_alive,
    read_text,
    remove_scratch,
    scratch_owner,
    write_atomic,
)
from paradiff.training.recipe import RecipeError

if TYPE_CHECKING:
    from paradiff.training.settings import TrainSettings

STATE_FILE = "training_state.pt"
LOG_FILE = "log.jsonl"
LATEST_FILE = "latest"
FINAL_DIR = "final"
CHECKPOINT = re.compile(r"checkpoint-(\d{6,})")
TRACKER_DIR = "tensorboard"  # paradiff.training.trackers
RUN_MARKER = ".paradiff-run"  # written by paradiff into every run folder it starts
SCRATCH_PATTERNS = (".checkpoint-*", f".{FINAL_DIR}.*")  # save_model's scratch folders


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, train: TrainSettings
) -> torch.optim.lr_scheduler.LambdaLR:
    """The recipe's learning-rate schedule (`lr_factor`) over `train`'s steps and warmup."""
    warmup, total, min_ratio = train.warmup_steps, train.steps, train.min_lr_ratio
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, total, min_ratio)
    )


def example_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of the `index`-th example of step `step`'s global batch."""
    state = np.random.SeedSequence([seed, step, index]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


class RunFolder:
    """The files of one training run; `extra_files` names the recipe's own (reward statistics)."""

    def __init__(self, root: str | os.PathLike, extra_files: Sequence[str] = ()) -> None:
        self.root = Path(root)
        self.extra_files = tuple(extra_files)
        self.created = False  # whether `start` created the folder

    # -- starting ------------------------------------------------------------------------------
    def start(self, resume: bool, overwrite: bool, main: bool = True) -> Path | None:
        """Check the folder against the options and return the checkpoint to resume from (None:
        start from the recipe's init). Only the `main` process deletes anything: stale scratch
        folders, and with `overwrite` the old run."""
        if resume and overwrite:
            raise RecipeError("--resume continues the run in the folder, --overwrite deletes it")
        if self.root.exists() and not self.root.is_dir():
            raise RecipeError(f"output.dir {self.root} exists and is not a directory")
        marked = self.is_marked()
        # the marker's temporary file: another process of this run is claiming the folder now
        empty = not self.root.is_dir() or all(
            is_write_temp(p.name, RUN_MARKER) for p in self.root.iterdir()
        )
        if not marked and not empty:
            if not self.is_unmarked_run():
                raise RecipeError(
                    f"output.dir {self.root} holds files that are not a paradiff run (no "
                    f"{RUN_MARKER}): choose a new or empty folder"
                )
        held = self.run_files()
        if held and not (resume or overwrite):
            raise RecipeError(
                f"{self.root} holds a run ({held[0]}): pass --resume to continue it or "
                "--overwrite to start over"
            )
        checkpoint = self.resume_point() if resume else None
        if overwrite:
            self.check_model_folders()
        self.created = not self.root.exists()
        if main:
            self.root.mkdir(parents=True, exist_ok=True)
            if empty:
                write_atomic(self.root / RUN_MARKER, json.dumps({"paradiff": "training run"}))
            self._remove_scratch()
            if overwrite:
                self._remove_run()
            else:
                self._trim_log(self.step_of(checkpoint) if checkpoint else 0)
        return checkpoint

    def abandon(self) -> None:
        """Undo `start` for a run that failed before writing anything: a folder that holds only
        the marker loses it (and is removed if `start` created it)."""
        if [path.name for path in self.root.iterdir()] != [RUN_MARKER] or not self.is_marked():
            return
        (self.root / RUN_MARKER).unlink()
        if self.created:
            self.root.rmdir()

    def run_names(self) -> tuple[str, ...]:
        return (LATEST_FILE, FINAL_DIR, LOG_FILE, TRACKER_DIR, *self.extra_files)

    def is_marked(self) -> bool:
        marker = self.root / RUN_MARKER
        return marker.is_file() and not marker.is_symlink()

    def is_unmarked_run(self) -> bool:
        """A run folder from before markers: only run files, and a complete checkpoint."""
        names = self.run_names()
        for path in self.root.iterdir():
            scratch = any(path.match(p) for p in SCRATCH_PATTERNS) and is_scratch(path, SAVE_TOKEN)
            if not (path.name in names or CHECKPOINT.fullmatch(path.name) or scratch):
                return False
        return bool(self.checkpoints())

    def run_files(self) -> list[str]:
        """The names of an earlier run's files in the folder."""
        if not self.root.is_dir():
            return []
        names = self.run_names()
        return sorted(
            p.name
            for p in self.root.iterdir()
            if (p.name in names and p.name != TRACKER_DIR) or CHECKPOINT.fullmatch(p.name)
        )

    def _remove_scratch(self) -> None:
        """The scratch folders of killed runs: those holding save_model's marker."""
        for pattern in SCRATCH_PATTERNS:
            for path in self.root.glob(pattern):
                if is_scratch(path, SAVE_TOKEN) and not process_alive(scratch_owner(path)):
                    remove_scratch(path, SAVE_TOKEN)

    def check_model_folders(self) -> None:
        """Before --overwrite deletes the old run: refuse when `final/` or a checkpoint holds a
        file no checkpoint of the run holds (someone put it there), naming it."""
        saved = self.checkpoints()
        if not saved:
            return  # no complete checkpoint to tell the run's own files by
        known = {p.relative_to(saved[-1]) for p in saved[-1].rglob("*")}
        folders = [p for p in (self.root / FINAL_DIR, *saved) if p.is_dir()]
        for folder in folders:
            for path in folder.rglob("*"):
                if path.relative_to(folder) not in known:
                    raise RecipeError(
                        f"{path} is no file of the run's checkpoints: move it away before "
                        "--overwrite deletes the run"
                    )

    def _remove_run(self) -> None:
        """The old run's files (--overwrite): nothing else, and never through a link."""
        for path in self.root.iterdir():
            if not (path.name in self.run_names() or CHECKPOINT.fullmatch(path.name)):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    # -- checkpoints ---------------------------------------------------------------------------
    @staticmethod
    def step_of(checkpoint: Path) -> int:
        return int(CHECKPOINT.fullmatch(checkpoint.name)[1])

    @staticmethod
    def is_complete(checkpoint: Path) -> bool:
        return (checkpoint / STATE_FILE).is_file() and (checkpoint / "config.json").is_file()

    def checkpoints(self) -> list[Path]:
        """The complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if CHECKPOINT.fullmatch(p.name) and p.is_dir()]
        return sorted((p for p in found if self.is_complete(p)), key=self.step_of)

    def resume_point(self) -> Path | None:
        """The checkpoint `latest` names, or the newest complete one when `latest` is missing
        or names one that is not there (a run killed mid-write)."""
        pointer = self.root / LATEST_FILE
        if pointer.is_file():
            try:
                name = read_text(pointer, inside=self.root, limit=4096).strip()
            except FileInputError:
                name = ""
            path = self.root / name
            if CHECKPOINT.fullmatch(name) and self.is_complete(path):
                return path
        complete = self.checkpoints()
        return complete[-1] if complete else None

    def write_checkpoint(self, pipe, step: int, state: dict[str, Any], keep: int) -> Path:
        """Write `checkpoint-NNNNNN/` (pipeline + `state`) atomically, point `latest` at it, and
        delete the run's checkpoints before it beyond the newest `keep` (the folder holds this
        run only: `start`); the new one is never deleted."""
        name = f"checkpoint-{step:06d}"
        pipe.save_pretrained(self.root / name, lambda tmp: torch.save(state, tmp / STATE_FILE))
        write_atomic(self.root / LATEST_FILE, name + "\n")
        ours = [p for p in self.checkpoints() if self.step_of(p) <= step]
        for path in ours[: -max(1, int(keep))]:
            shutil.rmtree(path, ignore_errors=True)
        return self.root / name

    @staticmethod
    def load_state(checkpoint: Path) -> dict[str, Any]:
        """A checkpoint's training state; RecipeError if it cannot be read."""
        path = checkpoint / STATE_FILE
        try:
            state = torch.load(path, weights_only=False)
        except Exception as err:  # torch.load raises several kinds for damaged files
            raise RecipeError(
                f"cannot read {path} (damaged or truncated?): {first_line(err)}"
            ) from None
        if not isinstance(state, dict) or "step" not in state:
            raise RecipeError(f"{path} is not a paradiff training state")
        return state

    # -- log -----------------------------------------------------------------------------------
    def log(self, line: dict[str, Any], echo: Callable[[str], None] | None = None) -> None:
        """Append one JSON line to the log (and `echo` it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps(line)
        with open(self.root / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(text + "\n")
        if echo is not None:
            echo(text)

    def _trim_log(self, step: int) -> None:
        """Drop the log lines past `step` (a killed run's, which the resumed run repeats)."""
        path = self.root / LOG_FILE
        if not path.is_file():
            return
        kept = []
        try:
            text = read_text(path, inside=self.root)
        except FileInputError as err:
            raise RecipeError(str(err)) from None
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            record_step = record.get("step", 0) if isinstance(record, dict) else None
            if isinstance(record_step, int) and not isinstance(record_step, bool):
                if record_step <= step:
                    kept.append(line + "\n")
        write_atomic(path, "".join(kept))
