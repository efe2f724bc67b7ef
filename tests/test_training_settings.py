"""Typed recipe settings: every shipped recipe loads through them, unknown keys are refused as
the loader refuses them, a reward kind's factory gets its section, and the runs read the
settings, never a recipe dict."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from paradiff.training import pararl, rewards, sft
from paradiff.training.pararl_settings import RewardSettings, RLSettings
from paradiff.training.recipe import RecipeError, load_recipe
from paradiff.training.settings import RecipeSettings, recorded
from paradiff.training.sft_settings import SFTSettings
from tests.conftest import PROJECT_ROOT

CONFIGS = sorted((PROJECT_ROOT / "configs").glob("*.yaml"))


def settings_class(path: Path) -> type[RecipeSettings]:
    return RLSettings if "rl" in path.stem else SFTSettings


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_recipe_loads_through_its_settings(path):
    cls = settings_class(path)
    settings = cls.load(path, [])
    merged = load_recipe(path, [], cls.defaults())
    assert settings.to_config() == merged  # every key, as the file and the defaults say
    assert cls.from_config(settings.to_config()) == settings
    assert settings.train.lr == merged["train"]["lr"] and isinstance(settings.train.lr, float)
    assert settings.train.betas == tuple(merged["train"]["betas"])


def test_the_defaults_are_the_dataclasses():
    assert sft.DEFAULTS == SFTSettings.defaults()
    assert pararl.DEFAULTS == RLSettings.defaults()
    assert sft.DEFAULTS["train"]["weight_decay"] == 0.01 and sft.DEFAULTS["train"]["lr"] == 3e-4
    assert (
        pararl.DEFAULTS["train"]["weight_decay"] == 0.0 and pararl.DEFAULTS["train"]["lr"] == 1e-5
    )
    assert pararl.DEFAULTS["output"]["save_every"] == 20 and sft.DEFAULTS["output"]["keep"] == 2
    # the reward kinds' own keys stand in the reward section, as in a recipe file
    assert {"clip_dir", "colour", "tolerance", "word", "metrics"} <= set(pararl.DEFAULTS["reward"])
    assert "options" not in pararl.DEFAULTS["reward"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"optim": {"lr": 1}}, "unknown recipe key 'optim'"),
        ({"train": {"lrr": 1}}, "unknown recipe key 'train.lrr'"),
        ({"train": 3}, "recipe key 'train' must be a mapping"),
        ({"reward": {"clip_dirr": "x"}}, "unknown recipe key 'reward.clip_dirr'"),
        ({"reward": {"options": {}}}, "unknown recipe key 'reward.options'"),
        ({"data": {"records": "r.jsonl"}}, "model.init is not set (the SFT checkpoint"),
    ],
)
def test_the_settings_refuse_what_the_loader_refuses(config, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(")):
        RLSettings.from_config(config)


SFT_PATHS = ("model.init=m", "data.pretokenized=d")
RL_PATHS = ("model.init=m", "data.records=r.jsonl")


@pytest.mark.parametrize(
    ("recipe", "override", "message"),
    [
        ("sft", "data.text_length=0", "data.text_length must be a whole number of at least 1"),
        ("sft", "data.text_length=abc", "data.text_length must be a whole number of at least 1"),
        ("sft", "model.activation_checkpointing=1", "must be true or false, got 1"),
        ("sft", "train.changed_image_weight=.inf", "changed_image_weight must be a number"),
        ("sft", "eval.every=-1", "eval.every must be a whole number of at least 0, got -1"),
        ("pararl", "eval.limit=0", "eval.limit must be a whole number of at least 1, got 0"),
        ("pararl", "train.kl_beta=true", "train.kl_beta must be a non-negative number"),
        ("pararl", "train.kl_beta=.nan", "train.kl_beta must be a non-negative number"),
        ("pararl", "rollout.text_temperature=.inf", "must be a positive number, got inf"),
        ("pararl", "reward.clip_range=0", "reward.clip_range must be a positive number"),
    ],
)
def test_every_value_is_checked_whether_or_not_it_is_used(recipe, override, message):
    """Values once read as they came (`int(text_length or default)`, `bool(...)`) or checked
    only when used (eval.every without eval.call) are refused in the settings."""
    cls, paths = (SFTSettings, SFT_PATHS) if recipe == "sft" else (RLSettings, RL_PATHS)
    with pytest.raises(RecipeError, match=message):
        cls.load(None, [*paths, override])


def test_a_reward_kind_gets_its_section(monkeypatch):
    """The registry's factory interface is kept: factory(settings, device) with the recipe's
    whole reward section, the kind's own keys (`options`) among the others."""
    seen = {}

    def factory(settings, device):
        seen.update(settings=dict(settings), device=device)
        return "a reward"

    monkeypatch.setitem(rewards.reward_kinds(), "capture", factory)
    section = RewardSettings.from_mapping({"kind": "capture", "metrics": {"a": 1}, "steps": 2})
    assert section.options["metrics"] == {"a": 1} and section.options["clip_dir"] is None
    assert section.build("cpu") == "a reward"
    assert seen["device"] == "cpu"
    assert seen["settings"]["metrics"] == {"a": 1} and seen["settings"]["kind"] == "capture"
    assert seen["settings"]["steps"] == 2 and seen["settings"]["tolerance"] == 0.1
    assert recorded({"reward": {"at": "final"}}, "reward.at") == "final"
    assert recorded({"reward": {}}, "reward.at") is None


SECTIONS = {"model", "data", "train", "rollout", "reward", "eval", "output"}


def base_name(node: ast.expr) -> str:
    """The name a chain of subscripts and attributes starts from: `self.config["a"]["b"]` ->
    'config'."""
    while isinstance(node, ast.Subscript):
        node = node.value
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


@pytest.mark.parametrize("module", ["sft.py", "pararl.py", "loop.py"])
def test_the_runs_read_no_recipe_dict(module):
    """No `config["train"]["lr"]`: every recipe setting is read from its dataclass."""
    path = PROJECT_ROOT / "paradiff" / "training" / module
    found = [
        f"{module}:{node.lineno}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Constant)
        and node.slice.value in SECTIONS
        and any(word in base_name(node.value) for word in ("config", "recipe", "cfg"))
    ]
    assert found == []
    assert "self.settings." in path.read_text() or module == "loop.py"
