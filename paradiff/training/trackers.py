"""Training metrics to an experiment tracker, beside the JSONL log: a recipe's
`output.log_with: tensorboard` sends every logged line to TensorBoard through accelerate's
tracker (event files under `<output.dir>/tensorboard/<recipe>/`); null keeps the JSONL log only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paradiff.training.recipe import RecipeError

LOG_WITH = ("tensorboard",)
TRACKER_DIR = "tensorboard"


def check_log_with(kind: Any) -> str | None:
    """`output.log_with`: null or a tracker that can run here (RecipeError otherwise)."""
    if kind is None:
        return None
    if not isinstance(kind, str) or kind not in LOG_WITH:
        raise RecipeError(f"output.log_with must be null or one of {LOG_WITH}, got {kind!r}")
    from accelerate.utils import is_tensorboard_available

    if not is_tensorboard_available():
        raise RecipeError(
            "output.log_with: tensorboard needs tensorboard (pip install tensorboard)"
        )
    return kind


class Tracker:
    """Forwards logged lines (their numbers) to the tracker a recipe asked for (`log_with`,
    event files under `root`/tensorboard/`run_name`), if any."""

    def __init__(
        self, log_with: str | None, root: Path, run_name: str, config: dict[str, Any]
    ) -> None:
        self.tracker = None
        if check_log_with(log_with) is None:
            return
        from accelerate.tracking import TensorBoardTracker

        self.tracker = TensorBoardTracker(run_name, Path(root) / TRACKER_DIR)
        self.tracker.start()
        self.tracker.store_init_configuration(flat(config))

    def log(self, line: dict[str, Any], step: int) -> None:
        if self.tracker is not None:
            numbers = {k: v for k, v in line.items() if k != "step" and isinstance(v, int | float)}
            self.tracker.log(numbers, step=step)

    def finish(self) -> None:
        if self.tracker is not None:
            self.tracker.finish()


def flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A recipe as `section.key` hyperparameters (lists and other values as strings)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            scalar = isinstance(value, bool | int | float | str)
            out[f"{prefix}{key}"] = value if scalar else str(value)
    return out
