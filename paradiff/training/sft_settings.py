"""The SFT recipe's settings (`paradiff train sft`): its sections, their keys, defaults and
checks (`paradiff.training.settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from paradiff.training.masking import WEIGHTINGS, NoiseSettings
from paradiff.training.recipe import RecipeError
from paradiff.training.settings import (
    EvalSettings,
    OutputSettings,
    RecipeSettings,
    Section,
    TrainSettings,
    below_one,
    flag,
    number,
    one_of,
    optional,
    required,
    setting,
    whole,
)

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class SFTModelSettings(Section):
    SECTION: ClassVar[str] = "model"

    # checkpoint dir / hub id / bundled name to start from
    init: str = setting(None, required("a checkpoint to start from"))
    activation_checkpointing: bool = setting(False, flag)


@dataclass(frozen=True)
class SFTDataSettings(Section):
    SECTION: ClassVar[str] = "data"

    # folder written by `paradiff pretokenize`
    pretokenized: str = setting(None, required("run `paradiff pretokenize` first"))
    # default: the checkpoint's sampler text_gen_length
    text_length: int | None = setting(None, optional(whole(1)))
    cond_dropout: float = setting(0.1, below_one)  # share of examples without condition (CFG)
    # false: the answer's text is all fill (a model that does not think)
    reasoning: bool = setting(True, flag)


@dataclass(frozen=True)
class SFTTrainSettings(TrainSettings):
    batch_size: int = setting(32, whole(1))  # global batch (all processes, all micro-batches)
    # per process and forward; default: the whole share
    micro_batch_size: int | None = setting(None, optional(whole(1)))
    loss_weighting: str = setting("paper", one_of(WEIGHTINGS))  # paper (text 1/t, image 1)
    # weight of the output codes an edit changes (1 = paper)
    changed_image_weight: float = setting(1.0, number)
    # weight of a generation's non-background codes (1 = paper)
    drawn_image_weight: float = setting(1.0, number)
    # rows with the reasoning clean, the image masked (0 = paper)
    image_from_text_share: float = setting(0.0, number)
    # auto (bf16 where the device supports it), fp32, bf16
    precision: str = setting("auto", one_of(PRECISIONS))

    def check(self) -> None:
        """The noise keys' ranges (`NoiseSettings`')."""
        _ = self.noise

    @property
    def noise(self) -> NoiseSettings:
        """The objective's noise settings (`paradiff.training.masking`)."""
        try:
            return NoiseSettings(
                self.loss_weighting,
                self.changed_image_weight,
                self.drawn_image_weight,
                self.image_from_text_share,
            )
        except ValueError as err:
            raise RecipeError(f"train.{err}") from None


@dataclass(frozen=True)
class SFTSettings(RecipeSettings):
    """`paradiff train sft`: the model to start from, the pre-tokenized data, the optimizer and
    objective, evaluation and the run folder."""

    model: SFTModelSettings
    data: SFTDataSettings
    train: SFTTrainSettings
    eval: EvalSettings
    output: OutputSettings
