"""Rewards of ParaRL: scores of (partial reasoning, partial image) pairs, and their normalisation.

A reward sees an answer part-way through sampling as the paper scores it: the reasoning with its
still-masked tokens dropped, and the image decoded from the tokens revealed so far with every
masked token's patch painted neutral grey (`PartialState`).

- `ClipReward`: cosine similarity of CLIP's text and image embeddings (the paper's reward), from a
  local `CLIPModel` directory holding `tokenizer.json` (and optionally `preprocessor_config.json`).
- `ColourShareReward`: the share of the image's pixels near one colour, a trivially learnable
  reward that tells a defect of the RL machinery from a weak signal (`benchmarks/rl_control.py`);
  `WordShareReward`, its twin for the reasoning: the share of its words that are one word.
- others registered by kind (`reward.kind` of a recipe): the shapes world registers its exact
  `scene_agreement` and its judge's `shapes_judge` (`paradiff.shapes.reward`).

`RewardNormaliser` turns raw scores into [0, 1]: standardise with statistics of the training
distribution, clip to [-c, c], map linearly, r = (clip((x - mu) / sigma, -c, c) + c) / (2 c).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from paradiff.quantization import quiet_torchao

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESSOR_FILE = "preprocessor_config.json"
TOKENIZER_FILE = "tokenizer.json"


class RewardError(ValueError):
    """A reward that cannot be built or cannot score what it was given."""


@dataclass
class PartialState:
    """One answer part-way through sampling, as a reward sees it.

    text: the reasoning revealed so far, masked tokens dropped.
    codes: (h, w) image codes, -1 where still masked.
    image: (3, H, W) pixels in [0, 1], masked patches neutral grey.
    record: the prompt's training record (rewards that need the prompt read it), or None.
    """

    text: str
    codes: torch.Tensor
    image: torch.Tensor
    record: dict[str, Any] | None = None


class Reward(Protocol):
    """Scores partial states; higher is better. Raw scores, any scale (normalised later)."""

    name: str

    def score(self, states: Sequence[PartialState]) -> torch.Tensor:
        """(N,) float raw scores of `states`."""
        ...


# -- CLIP ------------------------------------------------------------------------------------
def clip_text_inputs(
    tokenizer, texts: Sequence[str], max_length: int, eos_id: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (N, L) and attention mask (N, L) for CLIP's text tower.

    Each text is encoded by `tokenizer` (a `tokenizers.Tokenizer`), cut to `max_length` - 1 ids
    and closed by `eos_id` (CLIP pools the first `eos_id`; a tokenizer that adds it already
    does not get a second one)."""
    rows = []
    for text in texts:
        ids = tokenizer.encode(text).ids
        if ids and ids[-1] == eos_id:
            ids = ids[:-1]
        rows.append(ids[: max_length - 1] + [eos_id])
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def clip_pixel_inputs(
    images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """Images (N, 3, H, W) in [0, 1] -> CLIP pixel values (N, 3, size, size): resized (bilinear,
    antialiased) and normalised per channel, (x - mean) / std."""
    pixels = images.float()
    if tuple(pixels.shape[-2:]) != (size, size):
        pixels = F.interpolate(pixels, (size, size), mode="bilinear", antialias=True)
    mean_t = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device)[:, None, None]
    std_t = torch.tensor(std, dtype=pixels.dtype, device=pixels.device)[:, None, None]
    return (pixels - mean_t) / std_t


@contextmanager
def quiet_transformers():
    """transformers without what it prints on the way: the warnings of the torchao import its
    model classes make when torchao is installed, and its bars for loading and saving weights
    (a CLIP of one small file here)."""
    from transformers.utils import logging as hf_logging

    bars_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with quiet_torchao():
            yield
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()


class ClipReward:
    """cos(E_text(text), E_image(image)) of a local `CLIPModel` directory, in [-1, 1].

    The directory holds the model (`config.json` + weights), `tokenizer.json` and optionally
    `preprocessor_config.json` (`image_mean`, `image_std`; OpenAI's values otherwise). The text
    tower pools the first `text_config.eos_token_id`, which is appended when a text lacks it.
    """

    name = "clip"

    def __init__(self, directory: str | os.PathLike, device: torch.device | str = "cpu") -> None:
        from tokenizers import Tokenizer

        path = Path(directory)
        if not (path / "config.json").is_file() or not (path / TOKENIZER_FILE).is_file():
            raise RewardError(f"{path} is not a CLIP directory (config.json and tokenizer.json)")
        with quiet_transformers():
            from transformers import CLIPModel

            self.model = CLIPModel.from_pretrained(str(path)).to(device).eval()
        self.tokenizer = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        settings = {}
        if (path / PREPROCESSOR_FILE).is_file():
            settings = json.loads((path / PREPROCESSOR_FILE).read_text())
        self.mean = settings.get("image_mean", OPENAI_CLIP_MEAN)
        self.std = settings.get("image_std", OPENAI_CLIP_STD)
        text_config = self.model.config.text_config
        self.eos_id = int(text_config.eos_token_id)
        self.pad_id = int(text_config.pad_token_id if text_config.pad_token_id is not None else 0)
        self.max_length = int(text_config.max_position_embeddings)
        self.image_size = int(self.model.config.vision_config.image_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) unit-norm text embeddings."""
        ids, mask = clip_text_inputs(
            self.tokenizer, texts, self.max_length, self.eos_id, self.pad_id
        )
        features = self.model.get_text_features(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
        )
        return F.normalize(feature_tensor(features), dim=-1)

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """(N, D) unit-norm image embeddings of images (N, 3, H, W) in [0, 1]."""
        pixels = clip_pixel_inputs(images.to(self.device), self.image_size, self.mean, self.std)
        return F.normalize(
            feature_tensor(self.model.get_image_features(pixel_values=pixels)), dim=-1
        )

    @torch.no_grad()
    def score(self, states: Sequence[PartialState]) -> torch.Tensor:
        texts = self.text_embeddings([s.text for s in states])
        images = self.image_embeddings(torch.stack([s.image for s in states]))
        return (texts * images).sum(-1).float().cpu()


def feature_tensor(features) -> torch.Tensor:
    """`get_*_features` returns a tensor (transformers 4) or an output with `pooler_output` (5)."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


# -- a control reward --------------------------------------------------------------------------
class ColourShareReward:
    """The share of an image's pixels within `tolerance` (max over channels) of `colour`, in
    [0, 1]: a reward any image model can learn, whatever its reasoning says."""

    name = "colour_share"

    def __init__(self, colour: Sequence[float], tolerance: float = 0.1) -> None:
        if len(colour) != 3 or not all(0 <= float(c) <= 1 for c in colour):
            raise RewardError(f"reward.colour must be [r, g, b] in [0, 1], got {list(colour)}")
        if not 0 < float(tolerance) <= 1:
            raise RewardError(f"reward.tolerance must be in (0, 1], got {tolerance}")
        self.colour = torch.tensor([float(c) for c in colour])
        self.tolerance = float(tolerance)

    def score(self, states: Sequence[PartialState]) -> torch.Tensor:
        images = torch.stack([s.image.float().cpu() for s in states])  # (N, 3, H, W)
        distance = (images - self.colour[:, None, None]).abs().amax(1)  # (N, H, W)
        return (distance <= self.tolerance).float().mean((1, 2))


class WordShareReward:
    """The share of the reasoning's words (runs of letters, case-insensitive) that equal `word`,
    in [0, 1]: the colour share's control for the text side, whatever the image shows."""

    name = "word_share"

    def __init__(self, word: str) -> None:
        if not isinstance(word, str) or not re.fullmatch(r"[A-Za-z]+", word):
            raise RewardError(f"reward.word must be one word of letters, got {word!r}")
        self.word = word.lower()

    def score(self, states: Sequence[PartialState]) -> torch.Tensor:
        shares = []
        for state in states:
            words = re.findall(r"[a-z]+", state.text.lower())
            shares.append(words.count(self.word) / len(words) if words else 0.0)
        return torch.tensor(shares, dtype=torch.float32)


# -- the registry -----------------------------------------------------------------------------
# factory(settings, device) -> Reward; settings: the recipe's `reward` section (each reward reads
# its own keys: clip_dir, colour, metrics, ...)
RewardFactory = Callable[[Mapping[str, Any], Any], Reward]
ENTRY_POINTS = "paradiff.rewards"


def _clip_reward(settings: Mapping[str, Any], device="cpu") -> ClipReward:
    if not settings.get("clip_dir"):
        raise RewardError("the clip reward needs a CLIP directory (reward.clip_dir)")
    return ClipReward(settings["clip_dir"], device)


def _colour_share_reward(settings: Mapping[str, Any], device="cpu") -> ColourShareReward:
    if settings.get("colour") is None:
        raise RewardError("the colour_share reward needs reward.colour: [r, g, b] in [0, 1]")
    colour = settings["colour"]
    if not isinstance(colour, list | tuple) or not all(
        isinstance(c, int | float) and not isinstance(c, bool) for c in colour
    ):
        raise RewardError(f"reward.colour must be [r, g, b] in [0, 1], got {colour!r}")
    tolerance = settings.get("tolerance", 0.1)
    if not isinstance(tolerance, int | float) or isinstance(tolerance, bool):
        raise RewardError(f"reward.tolerance must be a number, got {tolerance!r}")
    return ColourShareReward(colour, tolerance)


def _word_share_reward(settings: Mapping[str, Any], device="cpu") -> WordShareReward:
    if settings.get("word") is None:
        raise RewardError("the word_share reward needs reward.word: one word")
    return WordShareReward(settings["word"])


_REWARDS: dict[str, RewardFactory] = {
    "clip": _clip_reward,
    "colour_share": _colour_share_reward,
    "word_share": _word_share_reward,
}
_loaded_entry_points = False


def register_reward(kind: str, factory: RewardFactory) -> None:
    """Make `reward.kind: <kind>` build `factory(settings, device)`."""
    _REWARDS[kind] = factory


def reward_kinds() -> dict[str, RewardFactory]:
    """The rewards by kind: CLIP's, the colour share, those registered, and the
    `paradiff.rewards` entry points of installed packages (the shapes world's), read on first
    use."""
    global _loaded_entry_points
    if not _loaded_entry_points:
        _loaded_entry_points = True
        for point in entry_points(group=ENTRY_POINTS):
            _REWARDS.setdefault(point.name, point.load())
    return _REWARDS


def build_reward(kind: str, settings: Mapping[str, Any] | None = None, device="cpu") -> Reward:
    """The reward named `kind` (one of `reward_kinds()`), built from `settings` (a recipe's
    `reward` section)."""
    kinds = reward_kinds()
    if kind not in kinds:
        raise RewardError(f"unknown reward {kind!r} (expected one of {tuple(kinds)})")
    return kinds[kind](dict(settings or {}), device)


# -- normalisation ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardNormaliser:
    """r = (clip((x - mean) / std, -c, c) + c) / (2 c), in [0, 1]; `count` raw scores were used."""

    mean: float
    std: float
    clip: float = 3.0
    count: int = 0

    @classmethod
    def fit(cls, raw: torch.Tensor, clip: float = 3.0) -> RewardNormaliser:
        """Statistics of raw scores (population std; a constant sample gets std 1)."""
        raw = raw.double().flatten()
        if raw.numel() == 0:
            raise RewardError("no raw scores to estimate the reward statistics from")
        if not clip > 0:
            raise RewardError(f"the reward clip range must be positive, got {clip}")
        std = float(raw.std(unbiased=False))
        return cls(float(raw.mean()), std if std > 1e-8 else 1.0, float(clip), raw.numel())

    def __call__(self, raw: torch.Tensor) -> torch.Tensor:
        standard = (raw.double() - self.mean) / self.std
        return ((standard.clamp(-self.clip, self.clip) + self.clip) / (2 * self.clip)).float()

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> RewardNormaliser:
        raw = json.loads(Path(path).read_text())
        return cls(float(raw["mean"]), float(raw["std"]), float(raw["clip"]), int(raw["count"]))


def stats_prompt_count(n_prompts: int, fraction: float = 0.01, minimum: int = 32) -> int:
    """How many prompts estimate the statistics: ceil(fraction * n), at least `minimum`
    (never more than there are)."""
    return min(n_prompts, max(minimum, math.ceil(fraction * n_prompts)))


def within_group_correlation(x: torch.Tensor, y: torch.Tensor, group: int) -> float:
    """Pearson correlation of two rewards' scores after each group's mean is removed from each:
    x, y (N,) with G = `group` consecutive rows per prompt, as ParaRL's advantages compare them.

        r = sum(dx * dy) / sqrt(sum(dx^2) sum(dy^2)),  dx = x - mean of x over its group

    NaN when either reward is constant within every group."""
    if x.shape != y.shape or x.dim() != 1 or group < 2 or x.numel() % group:
        raise ValueError(f"scores of shape {tuple(x.shape)} do not make groups of {group}")
    dx = x.double().view(-1, group)
    dy = y.double().view(-1, group)
    dx = dx - dx.mean(1, keepdim=True)
    dy = dy - dy.mean(1, keepdim=True)
    denominator = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    return float((dx * dy).sum()) / denominator if denominator > 0 else math.nan
