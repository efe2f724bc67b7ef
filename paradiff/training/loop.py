"""What every training run shares: the optimizer (AdamW, weight decay on matrices only), its
state across a resume, and the global random generators a checkpoint carries."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's two groups: `weight_decay` on the matrices (every parameter of two or more
    dimensions: the linear layers' weights and the embedding tables, one of which is the output
    head when weights are tied), none on the vectors (norm gains, biases).

    Why: decay pulls a weight toward 0, the right prior for a matrix that mixes features (it
    bounds their scale); a norm's gain scales a unit-size activation and belongs near 1, a bias
    near whatever offset the data asks for, so decaying them only fights the normalisation and
    buys no regularisation. The shipped SFT models were trained with this rule; the RL recipes
    set no decay."""
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
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: dict[str, Any],
    model: nn.Module,
) -> None:
    """A checkpoint's optimizer and schedule into `optimizer` and `scheduler`. A state of one
    group over all of `model`'s parameters (ParaRL's, before its weight decay fell on matrices
    only) is split into the optimizer's groups, each keeping its parameters' moments."""
    saved, schedule = state["optimizer"], dict(state["scheduler"])
    groups = optimizer.param_groups
    if len(saved["param_groups"]) == 1 and len(groups) > 1:
        old = saved["param_groups"][0]
        position = {id(p): i for i, p in enumerate(model.parameters())}
        if len(old["params"]) == len(position):
            regrouped = [
                {
                    **old,
                    "params": [old["params"][position[id(p)]] for p in group["params"]],
                    "weight_decay": group["weight_decay"],
                }
                for group in groups
            ]
            saved = {"state": saved["state"], "param_groups": regrouped}
            for key in ("base_lrs", "_last_lr"):  # one rate per group
                if len(schedule.get(key) or ()) == 1:
                    schedule[key] = list(schedule[key]) * len(groups)
    optimizer.load_state_dict(saved)
    scheduler.load_state_dict(schedule)


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
