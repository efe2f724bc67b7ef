"""What SFT and ParaRL share, checked on both: weight decay on matrices only, every optimizer
setting refused before the run folder is touched, the global generators saved in each
checkpoint and restored on resume (a resumed run that draws from them repeats an uninterrupted
one), and a ParaRL checkpoint written before these rules still resuming."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torch import nn

import paradiff.training.sft as sft
from paradiff.training import pararl
from paradiff.training.loop import adamw
from paradiff.training.recipe import RecipeError, load_recipe
from paradiff.training.rewards import RewardNormaliser
from paradiff.training.runs import lr_factor, warmup_cosine_schedule
from tests.conftest import PROJECT_ROOT
from tests.test_pararl import TargetCodeReward, untimed
from tests.test_pararl import recipe as pararl_recipe
from tests.test_training_runs import (
    assert_same_weights,
    log_lines,
    one_thread,  # noqa: F401 (a fixture: runs set the threads)
)

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_RECIPE = PROJECT_ROOT / "configs" / "tiny-sft.yaml"
RECIPES = ("sft", "pararl")


def recipe(kind: str, model, pretokenized, records, out: Path, *overrides: str) -> dict:
    if kind == "sft":
        paths = (f"model.init={model}", f"data.pretokenized={pretokenized}", f"output.dir={out}")
        return load_recipe(TINY_RECIPE, [*paths, "train.threads=1", *overrides], sft.DEFAULTS)
    return pararl_recipe(model, records, out, *overrides)


def start(kind: str, config: dict, reward=None, **options):
    if kind == "sft":
        return sft.SFTRun(config, progress=False, **options)
    return pararl.ParaRLRun(config, progress=False, reward=reward, **options)


def run_killed_after_step_two(kind: str, config: dict, reward, monkeypatch) -> None:
    """Start a run and kill it right after its step-2 checkpoint."""
    run_class = sft.SFTRun if kind == "sft" else pararl.ParaRLRun
    train_step = run_class.train_step

    def stop_after_two(run):
        if run.step == 2:
            raise KeyboardInterrupt
        return train_step(run)

    with monkeypatch.context() as patch:
        patch.setattr(run_class, "train_step", stop_after_two)
        with pytest.raises(KeyboardInterrupt):
            start(kind, config, reward).run()


# -- (a) weight decay ----------------------------------------------------------------------------
def test_adamw_decays_the_matrices_and_leaves_the_vectors():
    """With zero gradients AdamW's step is the decay alone: p <- p (1 - lr wd) on the embedding
    and the linear weight, nothing on the bias and the norm's gain."""
    model = nn.ModuleDict(
        {"embed": nn.Embedding(5, 4), "linear": nn.Linear(4, 3), "norm": nn.LayerNorm(3)}
    )
    with torch.no_grad():
        model["norm"].weight.uniform_(0.5, 1.5)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = adamw(model, lr=0.1, betas=(0.9, 0.95), weight_decay=0.5)
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    for name, parameter in model.named_parameters():
        factor = 1 - 0.1 * 0.5 if parameter.dim() >= 2 else 1.0
        torch.testing.assert_close(parameter.detach(), before[name] * factor, msg=name)
    assert {name for name, p in model.named_parameters() if p.dim() >= 2} == {
        "embed.weight",
        "linear.weight",
    }


@pytest.mark.parametrize("kind", RECIPES)
def test_weight_decay_falls_on_matrices_only_in_both_recipes(
    kind, tmp_path, tiny_shapes_model, pretokenized, shapes_records
):
    config = recipe(
        kind, tiny_shapes_model, pretokenized, shapes_records, tmp_path, "train.weight_decay=0.25"
    )
    run = start(kind, config, reward=TargetCodeReward(target=5))
    groups = run.optimizer.param_groups
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in groups}
    parameters = list(run.pipe.model.parameters())
    assert sorted(by_decay) == [0.0, 0.25] and sum(len(g["params"]) for g in groups) == len(
        parameters
    )
    assert by_decay[0.25] == {id(p) for p in parameters if p.dim() >= 2}
    assert by_decay[0.0] == {id(p) for p in parameters if p.dim() < 2} != set()


# -- (b) every optimizer setting checked in both ---------------------------------------------------
BAD_OPTIMIZER_SETTINGS = [
    ("train.steps=0", "train.steps must be a whole number of at least 1, got 0"),
    ("train.warmup_steps=-1", "train.warmup_steps must be a whole number of at least 0, got -1"),
    ("train.seed=1.5", "train.seed must be a whole number of at least 0, got 1.5"),
    ("train.lr=0", "train.lr must be a positive number, got 0"),
    ("train.lr=fast", "train.lr must be a number in [0, 1], got 'fast'"),
    ("train.lr=2", "train.lr must be a number in [0, 1], got 2"),
    ("train.lr=.nan", "train.lr must be a number in [0, 1], got nan"),
    ("train.min_lr_ratio=1.5", "train.min_lr_ratio must be a number in [0, 1], got 1.5"),
    ("train.weight_decay=-0.5", "train.weight_decay must be a number in [0, 1], got -0.5"),
    ("train.grad_clip=-1", "train.grad_clip must be a number in [0, 1e+06], got -1"),
    ("train.betas=[0.9]", "train.betas must be [beta1, beta2] in [0, 1), got [0.9]"),
    ("train.betas=[0.9,1]", "train.betas must be [beta1, beta2] in [0, 1), got [0.9, 1]"),
    ("train.threads=0", "train.threads must be a whole number of at least 1, got 0"),
]


@pytest.mark.parametrize("kind", RECIPES)
@pytest.mark.parametrize(("override", "message"), BAD_OPTIMIZER_SETTINGS)
def test_every_optimizer_setting_is_checked_in_both_recipes_before_the_folder(
    kind, override, message, tmp_path
):
    out = tmp_path / "run"
    config = recipe(kind, "no-model", "no-data", "no-records.jsonl", out, override)
    with pytest.raises(RecipeError, match=f"^{re.escape(message)}$"):
        start(kind, config)
    assert not out.exists()


# -- (c) the global generators -------------------------------------------------------------------
class NoisyTargetCodeReward(TargetCodeReward):
    """TargetCodeReward plus noise from torch's global generator."""

    def score(self, states):
        return super().score(states) + 0.5 * torch.rand(len(states))


def noisy_noise_batch(batch, space, generators, settings):
    """SFT's noise with the loss weights scaled by a draw of torch's global generator."""
    noised = sft_noise_batch(batch, space, generators, settings)
    return dataclasses.replace(noised, weight=noised.weight * (0.5 + torch.rand(())))


sft_noise_batch = sft.noise_batch


@pytest.mark.parametrize("kind", RECIPES)
def test_a_resumed_run_that_draws_from_the_global_generators_repeats_an_uninterrupted_one(
    kind, monkeypatch, tmp_path, tiny_shapes_model, pretokenized, shapes_records
):
    """Both recipes seed the global generators at a run's start and carry them in every
    checkpoint: with a reward (ParaRL) or a loss weight (SFT) drawn from torch's generator, a
    run stopped after its step-2 checkpoint and resumed ends with the straight run's weights
    and log, whatever the process drew in between."""
    monkeypatch.setattr(sft, "noise_batch", noisy_noise_batch)
    settings = ("train.steps=4", "output.save_every=2", "train.lr=0.01")
    reward = NoisyTargetCodeReward(target=5)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"

    def config(out: Path) -> dict:
        return recipe(kind, tiny_shapes_model, pretokenized, shapes_records, out, *settings)

    torch.rand(3)  # whatever came before
    start(kind, config(straight), reward).run()

    run_killed_after_step_two(kind, config(stopped), reward, monkeypatch)
    assert (stopped / "latest").read_text().strip() == "checkpoint-000002"
    torch.rand(5)  # a different history before the resume
    resumed = start(kind, config(stopped), reward, resume=True)
    assert resumed.step == 2
    resumed.run()
    assert_same_weights(straight / "final", stopped / "final")
    assert untimed(log_lines(stopped)) == untimed(log_lines(straight))


def test_resume_without_a_checkpoint_says_it_starts_at_step_0(
    capsys, tmp_path, tiny_shapes_model, pretokenized
):
    """`--resume` where no checkpoint was saved yet (a run killed before its first) starts the run
    and says so; one with a checkpoint says nothing."""
    out = tmp_path / "run"
    config = recipe("sft", tiny_shapes_model, pretokenized, None, out, "train.steps=1")
    run = start("sft", config, resume=True)
    assert run.step == 0
    assert capsys.readouterr().err == (
        f"--resume: {out} holds no checkpoint yet; starting at step 0\n"
    )
    run.run()
    assert start("sft", config, resume=True).step == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", RECIPES)
def test_a_run_resumed_with_another_learning_rate_uses_it_and_says_so(
    kind, capsys, monkeypatch, tmp_path, tiny_shapes_model, pretokenized, shapes_records
):
    """The checkpoint's optimizer state carries the old rate; the recipe's train.lr wins from
    the resumed step on (on the recipe's schedule), and one line names what changed."""
    out = tmp_path / "run"
    settings = ("train.steps=4", "train.warmup_steps=2", "output.save_every=2")

    def config(*more: str) -> dict:
        return recipe(kind, tiny_shapes_model, pretokenized, shapes_records, out, *settings, *more)

    run_killed_after_step_two(kind, config("train.lr=0.01"), TargetCodeReward(5), monkeypatch)
    capsys.readouterr()
    resumed = start(kind, config("train.lr=0.002"), TargetCodeReward(target=5), resume=True)
    factor = lr_factor(2, 2, 4, resumed.settings.train.min_lr_ratio)
    assert resumed.step == 2
    assert [group["lr"] for group in resumed.optimizer.param_groups] == pytest.approx(
        [0.002 * factor] * len(resumed.optimizer.param_groups)
    )
    assert resumed.scheduler.get_last_lr()[0] == pytest.approx(0.002 * factor)
    assert capsys.readouterr().err == (
        "--resume: from step 2 on, the recipe differs from the checkpoint's: "
        "train.lr 0.01 -> 0.002\n"
    )


# -- an old ParaRL checkpoint ------------------------------------------------------------------
def test_a_pararl_checkpoint_from_before_these_rules_still_resumes(
    tmp_path, tiny_shapes_model, shapes_records
):
    """ParaRL's states used to hold one AdamW group over every parameter and no generators:
    resumed, each parameter keeps its moments, both groups their rate, and the run goes on."""
    out = tmp_path / "run"
    config = pararl_recipe(tiny_shapes_model, shapes_records, out, "train.steps=2")
    reward = TargetCodeReward(target=5)
    run = pararl.ParaRLRun(config, progress=False, reward=reward)
    model = run.pipe.model
    old = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.99), weight_decay=0.0)
    schedule = warmup_cosine_schedule(old, run.settings.train)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    old.step()
    schedule.step()
    moments = {name: old.state[p]["exp_avg"].clone() for name, p in model.named_parameters()}
    state = {
        "step": 1,
        "optimizer": old.state_dict(),
        "scheduler": schedule.state_dict(),
        "normaliser": asdict(RewardNormaliser(0.0, 1.0)),
        "config": config,
    }
    run.folder.write_checkpoint(run.pipe, 1, state, keep=2)

    resumed = pararl.ParaRLRun(config, resume=True, progress=False, reward=reward)
    assert resumed.step == 1 and len(resumed.optimizer.param_groups) == 2
    for name, parameter in resumed.pipe.model.named_parameters():
        assert torch.equal(resumed.optimizer.state[parameter]["exp_avg"], moments[name]), name
    assert resumed.scheduler.get_last_lr() == [1e-5, 1e-5]
    resumed.run()
    assert [line["step"] for line in log_lines(out)] == [2]
    assert [group["lr"] for group in resumed.optimizer.param_groups] == [1e-5, 1e-5]
