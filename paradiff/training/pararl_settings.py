"""The ParaRL recipe's settings (`paradiff train pararl`): its sections, their keys, defaults and
checks (`paradiff.training.settings`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from paradiff.training.grpo import step_window
from paradiff.training.recipe import RecipeError
from paradiff.training.rewards import Reward, build_reward
from paradiff.training.settings import (
    EvalSettings,
    OutputSettings,
    RecipeSettings,
    Section,
    TrainSettings,
    flag,
    non_negative,
    one_of,
    optional,
    positive,
    required,
    setting,
    whole,
)

REWARD_AT = ("trajectory", "final")
ESTIMATORS = ("steps", "masked")
ADVANTAGES = ("group", "centred", "positive", "best")


def scored_window(name: str, value: Any) -> tuple[float, float]:
    """[start, stop]: the share of the timeline the scored steps are drawn from."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise RecipeError(f"{name} must be [start, stop], got {value!r}")
    try:
        step_window(1, float(value[0]), float(value[1]))
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{name}: {err}") from None
    return float(value[0]), float(value[1])


@dataclass(frozen=True)
class RLModelSettings(Section):
    SECTION: ClassVar[str] = "model"

    # the SFT model: where training starts, and the KL reference
    init: str = setting(None, required("the SFT checkpoint to start from"))


@dataclass(frozen=True)
class RLDataSettings(Section):
    SECTION: ClassVar[str] = "data"

    # training records JSONL (docs/architecture.md; images relative to it)
    records: str = setting(None, required("a training records JSONL"))
    limit: int | None = setting(None, optional(whole(1)))  # the first N records: the prompt pool


@dataclass(frozen=True)
class RolloutSettings(Section):
    """How rollouts are sampled: `prompts` prompts a step, G = `group` rollouts each, at these
    temperatures; the sampler keys left None keep the checkpoint's settings (checked with
    them: `pararl.rollout_sampler_config`)."""

    SECTION: ClassVar[str] = "rollout"
    SAMPLER_KEYS: ClassVar[tuple[str, ...]] = (
        "text_steps",
        "image_steps",
        "remasking",
        "mode",
        "speed",
    )

    prompts: int = setting(4, whole(1))
    group: int = setting(4, whole(2))  # advantages are relative to the group
    text_temperature: float = setting(1.0, positive)  # rollouts are sampled
    image_temperature: float = setting(1.0, positive)
    text_steps: int | None = None
    image_steps: int | None = None
    remasking: str | None = None
    mode: str | None = None
    # a speed preset (fast: cached forwards) makes rollouts cheaper; the loss still scores
    # them with full forwards, so the sampling policy is the scored one only approximately
    speed: str | None = None

    def sampler_changes(self) -> dict[str, Any]:
        """The sampler keys the recipe sets."""
        values = {key: getattr(self, key) for key in self.SAMPLER_KEYS}
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class RewardSettings(Section):
    """What is rewarded and where: `kind` names a reward of the registry
    (`paradiff.training.rewards`), whose own keys (`KIND_KEYS`, in the recipe beside the others)
    are held in `options`; the factory gets the whole section (`build`)."""

    SECTION: ClassVar[str] = "reward"
    KIND_KEYS: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {
            "clip_dir": None,  # kind clip: the CLIP directory
            "colour": None,  # kind colour_share: [r, g, b] in [0, 1]
            "tolerance": 0.1,  # kind colour_share: how near a pixel must be (max over channels)
            "word": None,  # kind word_share: the word whose share of the reasoning's words counts
            "metrics": None,  # kind shapes_judge: {metric: weight} (all six equally when unset)
        }
    )

    # clip, colour_share, word_share, or a registered kind (scene_agreement, shapes_judge)
    kind: str = "clip"
    at: str = setting("trajectory", one_of(REWARD_AT))  # ParaRL, or final (output-level RL)
    steps: int = setting(3, whole(1))  # s: scored steps per rollout batch
    # the share of the timeline they are drawn from ([0.5, 1]: the later half)
    window: tuple[float, float] = setting((0.0, 1.0), scored_window)
    clip_range: float = setting(3.0, positive)  # c: standardised rewards clipped to [-c, c]
    stats_fraction: float = setting(0.01, positive)  # share of prompts for the statistics
    stats_min_prompts: int = setting(32, whole(1))
    options: Mapping[str, Any] = field(default_factory=lambda: RewardSettings.KIND_KEYS)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RewardSettings:
        cls.refuse_unknown(values)  # `options` is no recipe key: its keys are
        common = {key: value for key, value in values.items() if key not in cls.KIND_KEYS}
        options = {key: values.get(key, default) for key, default in cls.KIND_KEYS.items()}
        return cls(**common, options=MappingProxyType(options))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        common = {k: v for k, v in super().defaults().items() if k != "options"}
        return {**common, **cls.KIND_KEYS}

    def to_mapping(self) -> dict[str, Any]:
        common = {k: v for k, v in super().to_mapping().items() if k != "options"}
        return {**common, **self.options}

    def build(self, device: Any = "cpu") -> Reward:
        """The reward of `kind`, built by its factory from this section."""
        return build_reward(self.kind, self.to_mapping(), device)


@dataclass(frozen=True)
class RLTrainSettings(TrainSettings):
    steps: int = 100
    lr: float = 1e-5
    min_lr_ratio: float = 1.0
    warmup_steps: int = 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    clip_eps: float = setting(0.2, positive)  # ratio clip range
    kl_beta: float = setting(0.01, non_negative)  # weight of the KL penalty to the initial model
    updates_per_batch: int = setting(1, whole(1))  # optimizer steps on one rollout batch
    # steps: the loss on the tokens decoded at the scored steps, replayed (the paper's);
    # masked: on the final answer's tokens under `mask_draws` random masks per rollout
    estimator: str = setting("steps", one_of(ESTIMATORS))
    mask_draws: int = setting(1, whole(1))
    # masked: one prompt's rollouts share each mask draw (off: measured to halve the agreement
    # of two gradient estimates, benchmarks/rl_gradient_agreement.py)
    shared_masks: bool = setting(False, flag)
    # group: A = (r - mean) / std of the group (GRPO); centred: A = r - mean (Dr. GRPO, no
    # division by the group's std); positive: only rollouts above their group's mean are
    # learned from (the others get A = 0), reward-filtered self-training; best: A = 1 for each
    # group's best answer when it beats the group's mean, 0 for the rest (reward-ranked
    # fine-tuning; the rows with A = 0 are left out of the loss, KL term included)
    advantage: str = setting("group", one_of(ADVANTAGES))


@dataclass(frozen=True)
class RLOutputSettings(OutputSettings):
    dir: str = "runs/pararl"
    save_every: int = 20
    log_every: int = 1


@dataclass(frozen=True)
class RLSettings(RecipeSettings):
    """`paradiff train pararl`: the SFT model, the prompt pool, rollouts, the reward, the
    optimizer and objective, held-out evaluation (also before the first step) and the run
    folder."""

    model: RLModelSettings
    data: RLDataSettings
    rollout: RolloutSettings
    reward: RewardSettings
    train: RLTrainSettings
    eval: EvalSettings
    output: RLOutputSettings

    def check(self) -> None:
        if self.train.estimator == "masked" and self.reward.at != "final":
            raise RecipeError(
                "train.estimator: masked scores the final answer's tokens; it needs reward.at: final"
            )
        if self.train.advantage == "best" and self.train.shared_masks:
            raise RecipeError(
                "train.shared_masks shares masks within a group; with train.advantage: best "
                "one row per group learns"
            )
