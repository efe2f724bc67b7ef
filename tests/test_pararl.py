"""ParaRL: advantages, the clipped ratio / k3 loss, replayed step log-probabilities against the
sampler's own, one update raising a reward, exact resume, and `paradiff train pararl`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import paradiff.sampling.sampler as sampler_module
import paradiff.training.pararl as pararl_module
from paradiff import cli
from paradiff.pipeline import ParallelPipeline
from paradiff.training.grpo import (
    KL_TOKEN_BOUND,
    best_of_group,
    group_advantages,
    grpo_terms,
    random_answer_masks,
    replay_log_probs,
    select_steps,
    step_window,
)
from paradiff.training.pararl import DEFAULTS, STATS_FILE, ParaRLRun
from paradiff.training.recipe import load_recipe
from paradiff.training.rewards import PartialState, RewardNormaliser
from paradiff.training.rollouts import RolloutSampler, load_records
from tests.conftest import PROJECT_ROOT
from tests.test_training_runs import (
    WEIGHTS,
    assert_same_weights,
    log_lines,
    one_thread,  # noqa: F401 (a fixture: runs set the threads)
)

pytestmark = pytest.mark.usefixtures("one_thread")
SHAPES_RECIPE = PROJECT_ROOT / "configs" / "shapes-pararl.yaml"
SMALL_ROLLOUTS = ("rollout.text_steps=6", "rollout.image_steps=4", "reward.stats_min_prompts=4")


def recipe(model: Path, records: Path, out: Path, *overrides: str) -> dict:
    paths = (f"model.init={model}", f"data.records={records}", f"output.dir={out}")
    settings = ("rollout.prompts=2", "rollout.group=4", "train.threads=1")
    return load_recipe(None, [*paths, *settings, *SMALL_ROLLOUTS, *overrides], DEFAULTS)


# -- advantages and the loss -------------------------------------------------------------------
def test_group_advantages_on_known_numbers():
    rewards = torch.tensor([[1.0, 0.5], [3.0, 0.5], [2.0, 0.0], [2.0, 1.0]])  # 2 groups of 2
    advantages = group_advantages(rewards, 2)
    expected = [[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]]
    torch.testing.assert_close(advantages, torch.tensor(expected), atol=1e-5, rtol=0)
    three = group_advantages(torch.tensor([[0.0], [1.0], [2.0]]), 3)  # population std sqrt(2/3)
    assert three[:, 0].tolist() == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)], abs=1e-5)
    hair = torch.tensor([[0.5], [0.5], [0.5], [0.51]])  # one rollout better by a hair
    assert group_advantages(hair, 4)[3, 0] == pytest.approx(math.sqrt(3), abs=1e-3)  # a full unit
    centred = group_advantages(hair, 4, scaled=False)[:, 0].tolist()
    assert centred == pytest.approx([-0.0025, -0.0025, -0.0025, 0.0075], abs=1e-6)
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.zeros(4, 1), 3)


def test_best_of_group_marks_each_groups_best_above_its_mean():
    rewards = torch.tensor([[0.2, 0.5], [0.7, 0.5], [0.7, 0.5], [0.1, 0.4], [0.3, 0.9], [0.3, 0.1]])
    best = best_of_group(rewards, 3)  # groups of 3: rows 0-2 and 3-5, two scored steps
    expected = [[0, 0], [1, 0], [0, 0], [0, 0], [1, 1], [0, 0]]  # ties: the first; equal: none
    assert best.tolist() == expected
    with pytest.raises(ValueError, match="groups of 4"):
        best_of_group(rewards, 4)


def test_best_leaves_the_rows_that_learn_nothing_out(
    tmp_path, tiny_shapes_model, shapes_records, monkeypatch
):
    """advantage best: only each group's best row enters the loss (one forward per kept row and
    mask draw), and a step whose groups are all equal takes no optimizer step."""
    config = recipe(tiny_shapes_model, shapes_records, tmp_path / "run", "reward.at=final", *BEST)
    run = ParaRLRun(config, progress=False, reward=TargetCodeReward(target=5))
    run.normaliser = RewardNormaliser(0.0, 100.0)  # rewards 0..7 stay apart
    rows_seen = []
    real = pararl_module.replay_log_probs

    def counting(model, batch, *args):
        rows_seen.append(batch.ids.shape[0])
        return real(model, batch, *args)

    monkeypatch.setattr(pararl_module, "replay_log_probs", counting)
    monkeypatch.setattr(run.reward, "score", lambda states: torch.arange(len(states)).float())
    run.train_step()
    prompts = run.settings.rollout.prompts
    assert rows_seen and set(rows_seen) == {prompts}  # the last row of each group is its best
    rows_seen.clear()
    before = [p.detach().clone() for p in run.pipe.model.parameters()]
    monkeypatch.setattr(run.reward, "score", lambda states: torch.ones(len(states)))
    line = run.train_step()
    assert rows_seen == [] and line["loss"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, run.pipe.model.parameters(), strict=True))


def test_grpo_terms_against_a_hand_computation():
    log = math.log
    # unit 0 (A = 1): ratios 1.25 (clipped to 1.2) and 1; unit 1 (A = -2): ratio 0.6 -> 0.8
    # (min picks the clipped -1.6); unit 2 decodes nothing
    new = torch.tensor([[log(0.5), log(0.2), 0.0], [log(0.3), 0, 0], [0, 0, 0]], requires_grad=True)
    old = torch.tensor([[log(0.4), log(0.2), -5.0], [log(0.5), 0, 0], [0, 0, 0]])
    ref = torch.tensor([[log(0.25), log(0.4), -1.0], [log(0.3), 0, 0], [0, 0, 0]])
    tokens = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    advantages = torch.tensor([1.0, -2.0, 3.0])
    terms = grpo_terms(new, old, ref, advantages, tokens, clip_eps=0.2, beta=0.1)

    k3_a = 0.5 - log(0.5) - 1  # d = ref - new = log 0.5
    k3_b = 2 - log(2) - 1  # d = log 2
    unit0 = (-(1.2 - 0.1 * k3_a) - (1.0 - 0.1 * k3_b)) / 2
    close = dict(atol=1e-6, rtol=0)
    torch.testing.assert_close(terms.loss, torch.tensor([unit0, 1.6, 0.0]), **close)
    torch.testing.assert_close(terms.kl, torch.tensor([(k3_a + k3_b) / 2, 0.0, 0.0]), **close)
    torch.testing.assert_close(terms.clipped, torch.tensor([0.5, 1.0, 0.0]), **close)
    assert terms.has_tokens.tolist() == [True, True, False]

    terms.loss.sum().backward()
    # clipped tokens pass no surrogate gradient, only the KL's beta (1 - exp(d)) (/ 2 tokens);
    # the unclipped one gets -A r + beta (1 - exp(d))
    expected = [[0.1 * (1 - 0.5) / 2, (-1.0 + 0.1 * (1 - 2)) / 2, 0.0], [0.0, 0, 0], [0, 0, 0]]
    torch.testing.assert_close(new.grad, torch.tensor(expected), **close)


def test_a_token_the_policy_dropped_cannot_swamp_the_kl():
    """k3 grows as exp(ref - new): a token whose probability fell by e^-30 would weigh e^30; it is
    held at KL_TOKEN_BOUND and passes no gradient, while a moderate one keeps its exact k3."""
    new = torch.tensor([[-31.0, math.log(0.5)]], requires_grad=True)
    ref = torch.tensor([[-1.0, math.log(0.25)]])
    tokens = torch.ones(1, 2, dtype=torch.bool)
    terms = grpo_terms(new, new.detach(), ref, torch.zeros(1), tokens, clip_eps=0.2, beta=1.0)
    moderate = 0.5 - math.log(0.5) - 1
    assert float(terms.kl[0]) == pytest.approx((KL_TOKEN_BOUND + moderate) / 2, abs=1e-6)
    terms.loss.sum().backward()
    assert new.grad[0, 0] == 0 and new.grad[0, 1] == pytest.approx((1 - 0.5) / 2, abs=1e-6)


def test_select_steps_are_distinct_sorted_and_seeded():
    steps = select_steps(10, 3, torch.Generator().manual_seed(5))
    assert len(set(steps)) == 3 and steps == sorted(steps) and 0 <= min(steps) <= max(steps) < 10
    assert steps == select_steps(10, 3, torch.Generator().manual_seed(5))
    assert select_steps(4, 4, torch.Generator()) == [0, 1, 2, 3]


def test_scored_steps_come_from_the_window():
    assert step_window(24) == range(0, 24)
    assert step_window(24, 0.5) == range(12, 24)  # the later half
    assert step_window(10, 0.25, 0.5) == range(2, 5)  # floor(2.5), ceil(5)
    assert step_window(4, 0.9, 0.95) == range(3, 4)  # never empty
    for seed in range(20):
        steps = select_steps(24, 3, torch.Generator().manual_seed(seed), step_window(24, 0.5))
        assert len(set(steps)) == 3 and min(steps) >= 12
    for start, stop in ((0.5, 0.5), (-0.1, 1.0), (0.2, 1.5)):
        with pytest.raises(ValueError, match="window"):
            step_window(24, start, stop)


# -- replay against the sampler ----------------------------------------------------------------
class SamplerProbe:
    """Records what the sampler drew at every step: sequence positions, the logits and
    temperature the draw used, and the drawn vocabulary indices."""

    def __init__(self, monkeypatch, model) -> None:
        self.steps: list[list[dict]] = []
        forward, logits, pick, codes = (
            model.hidden_states,
            sampler_module.ParallelSampler._logits,
            sampler_module.pick,
            sampler_module.sample_codes,
        )

        def hidden_states(*args, **kwargs):
            self.steps.append([])  # one forward per sampler step
            return forward(*args, **kwargs)

        def probe_logits(sampler, hidden, at, *args):
            self.steps[-1].append({"at": at.clone()})
            return logits(sampler, hidden, at, *args)

        def probe_pick(logits, temperature, noise):
            chosen = pick(logits, temperature, noise)
            self.steps[-1][-1].update(logits=logits.clone(), temperature=temperature, chosen=chosen)
            return chosen

        def probe_codes(logits, temperature, uniforms):
            chosen, log_probs = codes(logits, temperature, uniforms)
            self.steps[-1][-1].update(logits=logits.clone(), temperature=temperature, chosen=chosen)
            return chosen, log_probs

        monkeypatch.setattr(model, "hidden_states", hidden_states)
        monkeypatch.setattr(sampler_module.ParallelSampler, "_logits", probe_logits)
        monkeypatch.setattr(sampler_module, "pick", probe_pick)
        monkeypatch.setattr(sampler_module, "sample_codes", probe_codes)


def test_replayed_log_probs_are_the_samplers_own(monkeypatch, tiny_shapes_model, shapes_records):
    pipe = ParallelPipeline.from_pretrained(str(tiny_shapes_model), "float32", "cpu")
    space = pipe.space
    with torch.no_grad():
        head = pipe.model.head_weight()
        head.mul_(5)  # sharper distributions than a fresh model's near-uniform ones
        head[space.mask_id] = head[space.text_fill_id]  # a mask the sampler must not draw
    config = pipe.sampler_defaults.replace(
        text_steps=6, image_steps=4, text_temperature=0.7, image_temperature=1.3
    )
    records, root = load_records(shapes_records, limit=3)
    probe = SamplerProbe(monkeypatch, pipe.model)
    rollouts = RolloutSampler(pipe, config, root).sample(records, [1, 2, 3], [])
    monkeypatch.undo()
    trajectory, start = rollouts.trajectory.long(), rollouts.answer_start
    assert len(probe.steps) == trajectory.shape[0] - 1
    checked = {"text": 0, "image": 0}
    for t, draws in enumerate(probe.steps):
        before, after = trajectory[t], trajectory[t + 1]
        replayed, decoded = replay_log_probs(
            pipe.model, rollouts.batch, start, before, after, config
        )
        expected = torch.zeros_like(replayed)
        written_here = torch.zeros_like(decoded)
        for draw in draws:
            is_image = draw["logits"].shape[-1] == space.codebook_size
            offset = space.image_offset if is_image else 0
            columns = draw["at"] - start  # (B, P)
            written = after.gather(1, columns) != before.gather(1, columns)
            chosen = draw["chosen"] + offset
            assert torch.equal(after.gather(1, columns)[written], chosen[written])
            log_p = torch.log_softmax(draw["logits"] / draw["temperature"], -1)
            own = log_p.gather(-1, draw["chosen"][..., None])[..., 0]
            expected.scatter_(1, columns, torch.where(written, own, 0.0))
            written_here.scatter_(1, columns, written)
            checked["image" if is_image else "text"] += int(written.sum())
        assert torch.equal(decoded, written_here)
        assert torch.allclose(replayed, expected, atol=1e-5), t
    assert checked["text"] == 3 * 48 and checked["image"] == 3 * 64  # every token, once


# -- training ----------------------------------------------------------------------------------
class TargetCodeReward:
    """Share of the revealed image tokens that are code `target` (0 with none revealed)."""

    name = "target_code"

    def __init__(self, target: int) -> None:
        self.target = target

    def score(self, states: list[PartialState]) -> torch.Tensor:
        scores = []
        for state in states:
            revealed = state.codes[state.codes >= 0]
            scores.append(float((revealed == self.target).float().mean()) if len(revealed) else 0)
        return torch.tensor(scores)


def uncommon_code(run: ParaRLRun, rows: int = 64) -> int:
    """A code the untrained policy draws now and then (share of the final codes nearest 2%),
    so one update has a signal to learn from whatever the random initialisation."""
    records = [run.records[i % len(run.records)] for i in range(rows)]
    rollouts = run.rollouts.sample(records, list(range(rows)), [])
    codes = torch.cat([s.codes.flatten() for s in run.rollouts.partial_states(rollouts, -1)])
    share = torch.bincount(codes[codes >= 0]).float() / max(1, int((codes >= 0).sum()))
    return int((share - 0.01).abs().argmin())


def expected_final_reward(run: ParaRLRun, reward, rows: int = 64) -> float:
    """Mean final reward of `rows` rollouts of fixed prompts and seeds (common random numbers)."""
    records = [run.records[i % len(run.records)] for i in range(rows)]
    rollouts = run.rollouts.sample(records, list(range(rows)), [])
    return float(reward.score(run.rollouts.partial_states(rollouts, -1)).mean())


ONE_UPDATE = ("train.steps=1", "train.lr=0.1")
MASKED = ("train.estimator=masked", "train.mask_draws=2", "train.steps=2", "train.lr=0.05")


BEST = (*MASKED, "train.advantage=best")


@pytest.mark.parametrize(
    ("reward_at", "settings"),
    [("trajectory", ONE_UPDATE), ("final", ONE_UPDATE), ("final", MASKED), ("final", BEST)],
    ids=["trajectory", "final", "final-masked", "final-masked-best"],
)
def test_one_update_raises_the_expected_reward(
    tmp_path, tiny_shapes_model, shapes_records, reward_at, settings
):
    """A few updates at a large learning rate on a tiny random model raise a reward it can
    learn: the estimator points the right way (the masked one, scoring every token under a
    random mask, gets two smaller steps)."""
    reward = TargetCodeReward(target=5)
    config = recipe(
        tiny_shapes_model,
        shapes_records,
        tmp_path / "run",
        "train.kl_beta=0",
        "rollout.prompts=4",
        "rollout.group=8",
        f"reward.at={reward_at}",
        *settings,
    )
    run = ParaRLRun(config, progress=False, reward=reward)
    reward.target = uncommon_code(run)
    before = expected_final_reward(run, reward)
    run.run()
    after = expected_final_reward(run, reward)
    assert after > 2 * before + 0.01, (before, after)


def test_resume_repeats_an_uninterrupted_run(
    monkeypatch, tmp_path, tiny_shapes_model, shapes_records
):
    settings = ("train.steps=4", "output.save_every=2", "train.warmup_steps=1")
    settings += ("train.min_lr_ratio=0.1", "train.updates_per_batch=2", "train.lr=0.01")
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    reward = TargetCodeReward(target=5)  # (scene agreement is 0 for a random model: no signal)
    config = recipe(tiny_shapes_model, shapes_records, straight, *settings)
    ParaRLRun(config, progress=False, reward=reward).run()
    initial = load_file(tiny_shapes_model / WEIGHTS)
    trained = load_file(straight / "final" / WEIGHTS)
    assert all(not torch.equal(initial[name], trained[name]) for name in initial)

    train_step = ParaRLRun.train_step

    def stop_after_two(run):
        if run.step == 2:
            raise KeyboardInterrupt  # killed right after the step-2 checkpoint
        return train_step(run)

    monkeypatch.setattr(ParaRLRun, "train_step", stop_after_two)
    config = recipe(tiny_shapes_model, shapes_records, stopped, *settings)
    with pytest.raises(KeyboardInterrupt):
        ParaRLRun(config, progress=False, reward=reward).run()
    assert (stopped / "latest").read_text().strip() == "checkpoint-000002"
    monkeypatch.undo()

    def no_new_statistics(run):
        raise AssertionError("a resumed run re-estimated the reward statistics")

    monkeypatch.setattr(ParaRLRun, "estimate_statistics", no_new_statistics)
    resumed = ParaRLRun(config, resume=True, progress=False, reward=reward)
    assert resumed.step == 2
    assert resumed.normaliser == RewardNormaliser.load(stopped / STATS_FILE)
    resumed.run()
    assert_same_weights(straight / "final", stopped / "final")
    assert_same_weights(straight / "checkpoint-000004", stopped / "checkpoint-000004")
    assert untimed(log_lines(stopped)) == untimed(log_lines(straight))
    assert [line["step"] for line in log_lines(stopped)] == [1, 2, 3, 4]


def test_random_answer_masks_cover_the_answer_at_every_ratio():
    answer = torch.zeros(400, 10, dtype=torch.bool)
    answer[:, 2:9] = True
    answer[0] = False  # a row with nothing to mask stays unmasked
    masks = random_answer_masks(answer, torch.Generator().manual_seed(0))
    assert not (masks & ~answer).any() and not masks[0].any()
    assert masks[1:].any(1).all()  # every other row masks at least one token
    counts = masks[1:].sum(1).float()
    assert counts.min() == 1 and counts.max() == 7  # ratios spread over (0, 1)
    assert 0.4 < float(counts.mean()) / 7 < 0.65  # E[t] = 1/2 (plus the at-least-one rule)
    again = random_answer_masks(answer, torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)


def test_a_groups_rollouts_share_their_mask():
    answer = torch.ones(12, 30, dtype=torch.bool)
    masks = random_answer_masks(answer, torch.Generator().manual_seed(1), group=4)
    for start in range(0, 12, 4):
        assert (masks[start : start + 4] == masks[start]).all()
    assert not torch.equal(masks[0], masks[4])  # groups draw their own
    with pytest.raises(ValueError, match="groups of 5"):
        random_answer_masks(answer, torch.Generator(), group=5)


def test_masked_units_score_the_final_answer_under_a_mask(
    tmp_path, tiny_shapes_model, shapes_records
):
    """estimator masked: each unit is (masked final answer, final answer) with the final
    answer's advantages, masking only positions the sampler decoded; its replayed
    log-probabilities are those of the final tokens at the masked positions."""
    config = recipe(
        tiny_shapes_model,
        shapes_records,
        tmp_path / "run",
        "reward.at=final",
        "train.estimator=masked",
        "train.mask_draws=3",
        "train.shared_masks=true",
    )
    run = ParaRLRun(config, progress=False, reward=TargetCodeReward(target=5))
    rollouts = run.step_rollouts(0)
    advantages = torch.randn(len(rollouts.records), 3)
    units = run.loss_units(rollouts, advantages)
    mask_id = run.pipe.space.mask_id
    final, decodable = rollouts.trajectory[-1], rollouts.trajectory[0] == mask_id
    assert len(units) == 3
    for before, after, advantage in units:
        masked = before == mask_id
        assert torch.equal(after, final) and torch.equal(advantage, advantages[:, 0])
        assert masked.any(1).all() and not (masked & ~decodable).any()
        assert torch.equal(before[~masked], final[~masked])
        log_probs, decoded = replay_log_probs(
            run.pipe.model, rollouts.batch, rollouts.answer_start, before, after, run.sampler_config
        )
        assert torch.equal(decoded, masked) and (log_probs[masked] < 0).all()
    assert not torch.equal(units[0][0], units[1][0])  # independent draws
    group = int(config["rollout"]["group"])
    shared = units[0][0] == mask_id
    for start in range(0, shared.shape[0], group):  # a prompt's rollouts share the mask
        assert (shared[start : start + group] == shared[start]).all()


def untimed(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if not k.endswith("_s")} for line in lines]


# -- the command -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    from paradiff.shapes.clip import train_shapes_clip

    out = tmp_path_factory.mktemp("clip") / "clip"
    train_shapes_clip(out, steps=1, batch_size=8, n_pairs=64, progress=False)
    return out


def pararl_argv(model: Path, records: Path, clip: Path, out: Path, *extra: str) -> list[str]:
    """The shipped recipe on a tiny model, 2 steps of 2 prompts x 2 rollouts."""
    paths = (f"model.init={model}", f"data.records={records}", f"reward.clip_dir={clip}")
    size = ("train.steps=2", "rollout.prompts=2", "rollout.group=2", f"output.dir={out}")
    argv = ["train", "pararl", "--config", str(SHAPES_RECIPE), "--quiet"]
    return [*argv, *paths, *size, *SMALL_ROLLOUTS, *extra]


def test_command_trains_with_the_shipped_recipe(
    tmp_path, tiny_shapes_model, shapes_records, tiny_clip, capsys
):
    out = tmp_path / "pararl"
    assert cli.main(pararl_argv(tiny_shapes_model, shapes_records, tiny_clip, out)) == 0
    assert f"trained model written to {out / 'final'}" in capsys.readouterr().out
    ParallelPipeline.from_pretrained(str(out / "final"))
    stats = RewardNormaliser.load(out / STATS_FILE)
    assert stats.count == 4 * 3 and stats.std > 0  # 4 prompts, scored at 3 steps each
    lines = log_lines(out)
    assert [line["step"] for line in lines] == [1, 2]
    for line in lines:
        assert len(line["scored_steps"]) == 3 and 0 <= line["reward"] <= 1
        assert len(line["reward_by_step"]) == 3
        assert sum(line["reward_by_step"]) / 3 == pytest.approx(line["reward"], abs=1e-4)
    # partial answers score differently from the final ones
    assert any(line["reward_raw"] != line["final_raw"] for line in lines)


def test_reward_at_final_scores_the_answer_at_every_scored_step(
    tmp_path, tiny_shapes_model, shapes_records, tiny_clip
):
    out = tmp_path / "output-level"
    argv = pararl_argv(tiny_shapes_model, shapes_records, tiny_clip, out, "--reward-at", "final")
    assert cli.main(argv) == 0
    for line in log_lines(out):
        assert line["reward_raw"] == line["final_raw"]
    assert json.loads((out / STATS_FILE).read_text())["count"] == 4 * 3
    trajectory = pararl_argv(tiny_shapes_model, shapes_records, tiny_clip, out, "--resume")
    assert cli.main(trajectory) == 2  # a run cannot switch what it rewards


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("rollout.group=1", "rollout.group must be a whole number of at least 2, got 1"),
        ("reward.at=middle", "reward.at must be one of ('trajectory', 'final'), got 'middle'"),
        ("train.kl=0.1", "unknown recipe key 'train.kl'"),
        ("reward.steps=50", "reward.steps 50 exceeds the 6 sampler steps"),
        ("reward.window=[0.9,0.95]", "reward.steps 3 exceeds the 1 sampler steps"),
        ("reward.window=[0.5,0.2]", "reward.window: the scored-step window needs"),
        ("data.records=missing.jsonl", "cannot read records file missing.jsonl: no such file"),
        ("reward.clip_dir=nowhere", "nowhere is not a CLIP directory"),
        ("train.estimator=masked", "train.estimator: masked scores the final answer's tokens"),
        ("train.estimator=exact", "train.estimator must be one of ('steps', 'masked')"),
        ("train.mask_draws=0", "train.mask_draws must be a whole number of at least 1, got 0"),
        ("train.shared_masks=1", "train.shared_masks must be true or false, got 1"),
        ("train.advantage=top", "must be one of ('group', 'centred', 'positive', 'best')"),
        (
            "train.estimator=masked reward.at=final train.advantage=best train.shared_masks=true",
            "with train.advantage: best one row per group learns",
        ),
        ("train.steps=true", "train.steps must be a whole number of at least 1, got True"),
        ("train.lr=true", "train.lr must be a number in [0, 1], got True"),
        ("train.grad_clip=-1", "train.grad_clip must be a number in [0, 1e+06], got -1"),
        ("train.betas=x", "train.betas must be [beta1, beta2] in [0, 1), got 'x'"),
        ("train.min_lr_ratio=-5", "train.min_lr_ratio must be a number in [0, 1], got -5"),
        ("eval.call=os:nothing", "eval.call 'os:nothing' is not an importable"),
        ("reward.kind=colour_share", "the colour_share reward needs reward.colour"),
        ("reward.kind=word_share", "the word_share reward needs reward.word"),
        ('reward.kind=shapes_judge reward.metrics={"x":1}', "unknown metric 'x'"),
    ],
)
def test_a_bad_recipe_exits_2_with_one_line(
    tmp_path, tiny_shapes_model, shapes_records, tiny_clip, capsys, override, message
):
    out = tmp_path / "bad"
    argv = pararl_argv(tiny_shapes_model, shapes_records, tiny_clip, out, *override.split(" "))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("paradiff train pararl: ") and message in err
    assert not out.exists()
