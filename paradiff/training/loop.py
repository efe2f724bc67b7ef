"""The run loop SFT and ParaRL share (`TrainingLoop`), so the two recipes cannot drift apart:
the run folder and the tracker, the optimizer (AdamW, weight decay on matrices only) and its
warmup-cosine schedule, gradient clipping, the logging and evaluation cadence, checkpoints
(optimizer, schedule, the global random generators) and their pruning, resume, the final model.

A recipe's run class sets `settings` (a `RecipeSettings` with `train`, `eval` and `output`) and
`progress`, calls `start_folder` once everything that can refuse the recipe has been checked,
then `start_optimizer` with its model loaded, and implements `train_step` (one step's updates
through `optimizer_step`, closed by `end_step`) and `log_line`.
"""

from __future__ import annotations

import random
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from paradiff.training.runs import FINAL_DIR, RunFolder, warmup_cosine_schedule
from paradiff.training.trackers import Tracker, flat


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's two groups: `weight_decay` on the matrices (every parameter of two or more
    dimensions: the linear layers' weights and the embedding tables, one of which is the output
    head when weights are tied), none on the vectors (norm gains, biases).

    Why: decay pulls a weight toward 0, the right prior for a matrix that mixes features (it
    bounds their scale); a norm's gain scales a unit-size activation and belongs near 1, a bias
    near whatever offset the data asks for, so decaying them only fights the normalisation and
    buys no regularisation. The embedding tables are matrices and decay too: one is the output
    head when weights are tied (its scale is the logits' temperature), and the shipped SFT
    models were trained with this rule (excluding them would change every SFT recipe); the RL
    recipes set no decay."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": float(weight_decay)},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def adamw(
    model: nn.Module, lr: float, betas: tuple[float, float], weight_decay: float
) -> torch.optim.AdamW:
    """The recipes' optimizer over `model` (`parameter_groups`)."""
    groups = parameter_groups(model, weight_decay)
    return torch.optim.AdamW(groups, lr=float(lr), betas=(float(betas[0]), float(betas[1])))


def load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    state: dict[str, Any],
    model: nn.Module,
) -> None:
    """A checkpoint's moments and step into `optimizer` and `scheduler`, under the recipe's
    hyperparameters (rate, betas, decay of each group as `optimizer` was built) and the restored
    step's rate on the recipe's schedule, lr = train.lr * factor(step): a run resumed with
    another `train.lr` uses it from its next step (the checkpoint's own rates would keep the old
    one without a word); same recipe, the same rates bit for bit. A state of one group over all
    of `model`'s parameters (ParaRL's, before its weight decay fell on matrices only) is split
    into the optimizer's groups, each keeping its parameters' moments."""
    recipe_groups = [
        {key: value for key, value in group.items() if key != "params"}
        for group in optimizer.param_groups
    ]
    saved = state["optimizer"]
    if len(saved["param_groups"]) == 1 and len(recipe_groups) > 1:
        old = saved["param_groups"][0]
        position = {id(p): i for i, p in enumerate(model.parameters())}
        if len(old["params"]) == len(position):
            regrouped = [
                {**old, "params": [old["params"][position[id(p)]] for p in group["params"]]}
                for group in optimizer.param_groups
            ]
            saved = {"state": saved["state"], "param_groups": regrouped}
    optimizer.load_state_dict(saved)
    scheduler.load_state_dict(state["scheduler"])
    for group, recipe_group in zip(optimizer.param_groups, recipe_groups, strict=True):
        group.update(recipe_group)
    scheduler.base_lrs = [group["initial_lr"] for group in recipe_groups]
    rates = [
        base * rule(scheduler.last_epoch)
        for base, rule in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)
    ]
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = rates  # what get_last_lr() reports (where LRScheduler.step keeps it)


def recipe_changes(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """`key old -> new` for every recipe value a resumed run changes against its checkpoint's
    recorded recipe (none for a checkpoint that recorded none)."""
    if not recorded:
        return []
    before, after = flat(recorded), flat(current)
    return [
        f"{key} {before.get(key)} -> {after.get(key)}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


# -- the global generators -----------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """The global generators' states: Python's, NumPy's, torch's (and the current CUDA
    device's)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """The global generators as `rng_state` saw them (the CUDA one where both have one)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def seed_generators(seed: int) -> None:
    """Python's, NumPy's and torch's global generators (every CUDA device's too) from `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed % 2**63)


# -- the loop ------------------------------------------------------------------------------------
class TrainingLoop(ABC):
    """One training run's loop; subclasses give the recipe (`SFTRun`, `ParaRLRun`)."""

    NAME: ClassVar[str] = "train"  # the progress bar's and the tracker's name
    EXTRA_FILES: ClassVar[tuple[str, ...]] = ()  # the recipe's own files in the run folder
    EVALUATE_FIRST: ClassVar[bool] = False  # also evaluate the initial model (the curve's origin)

    settings: Any  # a RecipeSettings with train, eval and output
    progress: bool
    pipe: Any  # the ParallelPipeline being trained

    # -- processes (one, unless the recipe runs several) ----------------------------------------
    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files."""
        return True

    def wait_for_everyone(self) -> None:
        """A barrier between the recipe's processes."""
        return None  # (one process; a recipe overrides it)

    def end_processes(self) -> None:
        """Close what joins the recipe's processes before they exit (a process group left open
        can abort a process at exit while its communication threads still run)."""
        return None  # (one process; a recipe overrides it)

    def clip_gradients(self, max_norm: float) -> None:
        torch.nn.utils.clip_grad_norm_(self.pipe.model.parameters(), max_norm)

    # -- starting -------------------------------------------------------------------------------
    def set_threads(self) -> None:
        if self.settings.train.threads:
            torch.set_num_threads(self.settings.train.threads)

    def start_folder(self, resume: bool, overwrite: bool) -> Path | None:
        """The run folder checked against --resume / --overwrite (the main process deletes what
        they ask), the state of the checkpoint to resume from read (a damaged one refused now)
        and the tracker started; returns that checkpoint (None: start from the recipe's init)."""
        self.folder = RunFolder(self.settings.output.dir, self.EXTRA_FILES)
        self.out = self.folder.root
        start_from = self.folder.start(resume, overwrite, self.is_main)
        if resume and start_from is None and self.is_main:
            print(
                f"--resume: {self.out} holds no checkpoint yet; starting at step 0", file=sys.stderr
            )
        self.resumed = self.folder.load_state(start_from) if start_from else None
        log_with = self.settings.output.log_with if self.is_main else None
        self.tracker = Tracker(log_with, self.out, self.NAME, self.settings.to_config())
        return start_from

    def start_optimizer(self, model: nn.Module) -> None:
        """AdamW over `model` and its schedule, at the resumed checkpoint's state if any."""
        train = self.settings.train
        self.optimizer = adamw(model, train.lr, train.betas, train.weight_decay)
        self.scheduler = warmup_cosine_schedule(self.optimizer, train)
        self.step = 0
        self.rng: dict[str, Any] | None = None  # the checkpoint's generators, restored by run()
        if self.resumed is not None:
            self.load_extra_state(self.resumed)  # first: the recipe may refuse the state
            load_optimizer_state(self.optimizer, self.scheduler, self.resumed, model)
            self.rng = self.resumed.get("rng")  # absent in ParaRL states of before
            self.step = int(self.resumed["step"])
            changes = recipe_changes(self.resumed.get("config"), self.settings.to_config())
            if changes and self.is_main:
                print(
                    f"--resume: from step {self.step} on, the recipe differs from the"
                    f" checkpoint's: {', '.join(changes)}",
                    file=sys.stderr,
                )

    # -- the recipe's part ------------------------------------------------------------------------
    def before_training(self) -> None:
        """What the recipe does once before its first step (this run's, resumed or not)."""
        return None  # (nothing by default)

    @abstractmethod
    def train_step(self) -> dict[str, Any]:
        """One training step's updates (`optimizer_step`), closed by `end_step`; what
        `log_line` needs."""

    @abstractmethod
    def log_line(self, result: dict[str, Any]) -> dict[str, Any] | None:
        """The log line of a step's `result` (every process calls it; None where the process
        writes no log)."""

    def postfix(self, line: dict[str, Any]) -> dict[str, Any]:
        """What the progress bar shows of a log line."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """The recipe's own part of a checkpoint's training state."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """The recipe's own part of a resumed state (RecipeError where it does not fit)."""
        return None  # (nothing by default)

    # -- a step -----------------------------------------------------------------------------------
    def optimizer_step(self) -> None:
        """The gradients clipped (`train.grad_clip`; 0: not), AdamW's step, the gradients
        cleared."""
        if self.settings.train.grad_clip:
            self.clip_gradients(self.settings.train.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def end_step(self) -> float:
        """Close a training step: the schedule and the step count move on; returns the learning
        rate the step used."""
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.step += 1
        return lr

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train to `train.steps`: log every `output.log_every` steps, evaluate every
        `eval.every`, write a checkpoint every `output.save_every`, then evaluate, checkpoint and
        write the final model; returns its directory. The global generators start from
        `train.seed`, or where the resumed checkpoint left them."""
        train, output, every = self.settings.train, self.settings.output, self.settings.eval.every
        if self.rng is not None:
            restore_rng(self.rng)
        elif self.step == 0:
            seed_generators(train.seed)
        self.before_training()
        if self.EVALUATE_FIRST and self.step == 0:
            self.evaluate()
        bar = tqdm(total=train.steps, initial=self.step, desc=self.NAME, disable=not self.progress)
        self.started = time.perf_counter()
        while self.step < train.steps:
            result = self.train_step()
            bar.update(1)
            if self.step % output.log_every == 0 or self.step == train.steps:
                line = self.log_line(result)
                if line is not None:
                    self.folder.log(line, self.echo)
                    self.tracker.log(line, self.step)
                    bar.set_postfix(self.postfix(line))
            # the evaluation first: its line is logged before the checkpoint a resume starts
            # from, and the generators saved are those after it
            if every and self.step % every == 0 and self.step < train.steps:
                self.evaluate()
            if self.step % output.save_every == 0 and self.step < train.steps:
                self.save_checkpoint()
        bar.close()
        self.evaluate()
        self.tracker.finish()
        self.save_checkpoint()
        final = self.save_final()
        self.end_processes()
        return final

    @property
    def echo(self):
        """Where a log line is also printed: nowhere under a progress bar."""
        return None if self.progress else lambda text: print(text, flush=True)

    def evaluate(self) -> None:
        """The recipe's `eval.call` on the model as it is now, appended to the log."""
        spec = self.settings.eval
        if not spec.call or not self.is_main:
            return
        result = spec.function(self.pipe, limit=spec.limit)
        self.folder.log({"step": self.step, "eval": result}, self.echo)

    # -- checkpoints ------------------------------------------------------------------------------
    def training_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            **self.extra_state(),
            "config": self.settings.to_config(),
        }

    def save_checkpoint(self) -> None:
        """checkpoint-NNNNNN/ (pipeline + training state) written atomically, then `latest`;
        the run's checkpoints beyond the newest `output.keep` pruned."""
        self.wait_for_everyone()
        if self.is_main:
            state = self.training_state()
            self.folder.write_checkpoint(self.pipe, self.step, state, self.settings.output.keep)
        self.wait_for_everyone()

    def save_final(self) -> Path:
        if self.is_main:
            self.pipe.save_pretrained(self.out / FINAL_DIR)
        self.wait_for_everyone()
        return self.out / FINAL_DIR
