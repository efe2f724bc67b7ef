"""ParaRL rewards: normalisation, the exact scene-agreement reward, the CLIP reward, train-clip."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from paradiff.shapes import make_sample
from paradiff.shapes.image_tokenizer import shapes_tokenizer
from paradiff.shapes.reward import SceneAgreementReward
from paradiff.shapes.scene import Obj
from paradiff.shapes.tokenizer import PAD, build_text_tokenizer, save_text_tokenizer
from paradiff.training.rewards import (
    ClipReward,
    PartialState,
    RewardError,
    RewardNormaliser,
    build_reward,
    clip_text_inputs,
    stats_prompt_count,
    within_group_correlation,
)


# -- normalisation ---------------------------------------------------------------------------
def test_normaliser_on_known_numbers(tmp_path):
    norm = RewardNormaliser.fit(torch.tensor([1.0, 2.0, 3.0, 4.0]), clip=1.0)
    assert norm.mean == pytest.approx(2.5)
    assert norm.std == pytest.approx(math.sqrt(1.25))
    assert norm.count == 4
    z = 0.5 / math.sqrt(1.25)  # standardised 2 and 3: -0.447, 0.447; 1 and 4 clip to -1, 1
    expected = [0.0, (1 - z) / 2, (1 + z) / 2, 1.0]
    assert norm(torch.tensor([1.0, 2.0, 3.0, 4.0])).tolist() == pytest.approx(expected, abs=1e-6)
    wide = RewardNormaliser.fit(torch.tensor([1.0, 2.0, 3.0, 4.0]))  # c = 3: nothing clipped
    three_z = 1.5 / math.sqrt(1.25)
    assert wide(torch.tensor([4.0, 100.0, -100.0])).tolist() == pytest.approx(
        [(three_z + 3) / 6, 1.0, 0.0], abs=1e-6
    )
    wide.save(tmp_path / "stats.json")
    assert RewardNormaliser.load(tmp_path / "stats.json") == wide


def test_normaliser_constant_scores_and_bad_input():
    norm = RewardNormaliser.fit(torch.full((5,), 0.25))
    assert norm.std == 1.0
    assert norm(torch.tensor([0.25])).item() == pytest.approx(0.5)
    with pytest.raises(RewardError):
        RewardNormaliser.fit(torch.tensor([]))
    with pytest.raises(RewardError):
        RewardNormaliser.fit(torch.tensor([1.0, 2.0]), clip=0)


def test_stats_prompt_count():
    assert stats_prompt_count(40000) == 400
    assert stats_prompt_count(3201) == 33  # ceil(32.01)
    assert stats_prompt_count(1000) == 32
    assert stats_prompt_count(10) == 10


# -- scene agreement -------------------------------------------------------------------------
def state(sample, text, codes):
    return PartialState(text, codes, torch.zeros(3, 4, 4), sample.to_record(None, "x.png"))


def test_scene_agreement_exact_on_partial_states():
    tokenizer = shapes_tokenizer()
    sample = make_sample("recolour", 5, 1)  # one cell (row 3, col 1) turns orange
    (cell, new) = next(iter(sample.required_changes().items()))
    target = tokenizer.scene_to_codes(sample.scene_out)
    reward = SceneAgreementReward()
    row, col = 2 * cell[0], 2 * cell[1]

    def score(text, codes):
        return reward.score([state(sample, text, codes)]).item()

    assert score(sample.reasoning, target) == 1.0
    hidden_quadrant = target.clone()
    hidden_quadrant[row, col + 1] = -1  # one quadrant of the changed cell still masked:
    assert score(sample.reasoning, hidden_quadrant) == 1.0  # the three shown agree
    other = target.clone()
    other[0 if row else 2, 0 if col else 2] = -1  # an untouched cell still masked
    assert score(sample.reasoning, other) == 1.0
    hidden_cell = target.clone()
    hidden_cell[row : row + 2, col : col + 2] = -1  # the changed cell not shown yet
    assert score(sample.reasoning, hidden_cell) == 0.0
    assert score("", target) == 0.0  # nothing claimed
    unchanged = tokenizer.scene_to_codes(sample.scene_in)  # the image shows no change
    assert score(sample.reasoning, unchanged) == 0.0
    wrong = tokenizer.scene_to_codes(sample.scene_out.with_cells({cell: Obj(new.shape, "pink")}))
    assert score(sample.reasoning, wrong) == 0.0  # the text says orange, the image pink
    broken = target.clone()
    broken[row, col] = 0  # one quadrant of the changed cell empty: a broken cell
    # by hand: 4 claimed quadrants, 4 changed ones shown, 3 of them agree: F1 = 3/4
    assert score(sample.reasoning, broken) == pytest.approx(0.75)


def test_scene_agreement_gives_signal_at_intermediate_steps():
    """A hand-made trajectory of one edit: half the changed cell's quadrants shown, the
    reasoning's locating sentence written but not its change, then the whole answer."""
    tokenizer = shapes_tokenizer()
    sample = make_sample("recolour", 5, 1)
    (cell, _new) = next(iter(sample.required_changes().items()))
    row, col = 2 * cell[0], 2 * cell[1]
    target = tokenizer.scene_to_codes(sample.scene_out)
    early = torch.full_like(target, -1)
    early[row, col : col + 2] = target[row, col : col + 2]  # the cell's top two quadrants
    early[0:2, 0:2] = target[0:2, 0:2]
    reward = SceneAgreementReward()
    first_sentence = sample.reasoning.split(".")[0] + "."  # locates, claims no change yet
    steps = [(first_sentence, early), (sample.reasoning, early), (sample.reasoning, target)]
    scores = [reward.score([state(sample, text, codes)]).item() for text, codes in steps]
    assert scores[0] == 0.0  # the image shows a change the text has not claimed yet
    assert scores[1] == 1.0  # both sides agree on the two quadrants shown
    assert scores[2] == 1.0


def test_scene_agreement_partial_text_and_errors():
    tokenizer = shapes_tokenizer()
    sample = make_sample("add", 11, 2)
    target = tokenizer.scene_to_codes(sample.scene_out)
    full = SceneAgreementReward().score([state(sample, sample.reasoning, target)]).item()
    assert full == 1.0
    half = sample.reasoning.split(".")[0] + "."  # the first sentence only
    assert SceneAgreementReward().score([state(sample, half, target)]).item() < 1.0
    with pytest.raises(RewardError, match="record"):
        SceneAgreementReward().score([PartialState("x", target, torch.zeros(3, 4, 4))])
    with pytest.raises(RewardError, match="code grid"):
        SceneAgreementReward().score([state(sample, "x", target[:4])])


# -- CLIP ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    directory = tmp_path_factory.mktemp("tiny_clip")
    text = build_text_tokenizer()
    eos = text.token_to_id("</answer>")
    tower = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(
            tower,
            vocab_size=text.get_vocab_size(),
            max_position_embeddings=16,
            eos_token_id=eos,
            pad_token_id=text.token_to_id(PAD),
        ),
        vision_config=dict(tower, image_size=32, patch_size=8),
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(str(directory))
    save_text_tokenizer(directory, text)
    return directory


def test_clip_text_inputs_close_with_eos_and_truncate():
    text = build_text_tokenizer()
    eos, pad = text.token_to_id("</answer>"), text.token_to_id(PAD)
    ids, mask = clip_text_inputs(text, ["the red circle", "", "a " * 30], 8, eos, pad)
    assert ids.shape == (3, 8)
    assert ids[0, :4].tolist() == text.encode("the red circle").ids + [eos]
    assert ids[1, 0] == eos and mask[1].tolist() == [1] + [0] * 7
    assert ids[2, -1] == eos and mask[2].all()


def test_clip_reward_is_the_models_cosine(tiny_clip_dir):
    reward = build_reward("clip", {"clip_dir": str(tiny_clip_dir)})
    assert isinstance(reward, ClipReward)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 64, 64, generator=gen)
    texts = ["the red circle is at row 1, column 2.", "", "it becomes blue."]
    states = [PartialState(t, torch.zeros(8, 8), im) for t, im in zip(texts, images, strict=True)]
    scores = reward.score(states)
    assert scores.shape == (3,) and scores.abs().max() <= 1.0
    # independently: CLIP's own forward, logits_per_image / logit_scale on the diagonal
    ids, mask = clip_text_inputs(reward.tokenizer, texts, 16, reward.eos_id, reward.pad_id)
    pixels = torch.nn.functional.interpolate(images, (32, 32), mode="bilinear", antialias=True)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    with torch.no_grad():
        out = reward.model(input_ids=ids, attention_mask=mask, pixel_values=(pixels - mean) / std)
    expected = out.logits_per_image.diagonal() / reward.model.logit_scale.exp()
    assert torch.allclose(scores, expected, atol=1e-5)
    assert not torch.allclose(scores[0], scores[2])  # the text matters


def test_clip_reward_errors(tmp_path):
    with pytest.raises(RewardError, match="CLIP directory"):
        ClipReward(tmp_path)
    with pytest.raises(RewardError, match="clip_dir"):
        build_reward("clip")
    with pytest.raises(RewardError, match="unknown reward"):
        build_reward("aesthetics")


def test_the_shapes_world_registers_its_reward_by_kind():
    """`reward.kind: scene_agreement` reaches the shapes world's reward through the registry
    (the core names it nowhere)."""
    assert isinstance(build_reward("scene_agreement"), SceneAgreementReward)


def test_near_misses_change_one_named_cell():
    import random

    from paradiff.shapes.clip import near_miss
    from paradiff.shapes.scene import Scene

    scene = Scene(4, 4, {(0, 0): Obj("star", "blue"), (2, 3): Obj("circle", "red")})
    rng = random.Random(0)
    kinds = set()
    for _ in range(200):
        miss = near_miss(scene, [(0, 0)], rng)
        changed = scene.diff(miss)
        assert changed and (0, 0) in changed  # the named cell always changes
        new = miss.get((0, 0))
        if new is None:
            kinds.add("move")
            assert len(changed) == 2 and Obj("star", "blue") in changed.values()
        elif new == Obj("circle", "red"):
            kinds.add("swap")
            assert changed[(2, 3)] == Obj("star", "blue")
        else:
            assert len(changed) == 1
            kinds.add("recolour" if new.shape == "star" else "replace")
            assert (new.shape == "star") != (new.colour == "blue")
    assert kinds == {"move", "swap", "recolour", "replace"}
    assert near_miss(scene, [(1, 1)], rng).get((1, 1)) is not None  # an empty cell gets filled


def test_contrastive_loss_by_hand():
    from paradiff.shapes.clip import contrastive_loss

    class Scale(torch.nn.Module):
        logit_scale = torch.nn.Parameter(torch.tensor(math.log(2.0)))

    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    image = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # 2 own images + 1 near miss
    loss = contrastive_loss(Scale(), text, image)
    # by hand: logits = 2 t V^T; text->image over 3 images, image->text over 2 texts
    lt = 2 * text @ image.T
    t2i = -(torch.log_softmax(lt, 1)[0, 0] + torch.log_softmax(lt, 1)[1, 1]) / 2
    li = lt[:, :2].T
    i2t = -(torch.log_softmax(li, 1)[0, 0] + torch.log_softmax(li, 1)[1, 1]) / 2
    assert loss.item() == pytest.approx(float(t2i + i2t) / 2, abs=1e-6)


def test_train_clip_command_writes_a_small_loadable_clip(tmp_path, capsys):
    from paradiff.cli import main

    out = tmp_path / "clip"
    code = main(
        ["shapes", "train-clip", "--out", str(out), "--steps", "2", "--batch-size", "8"]
        + ["--pairs", "64", "--quiet"]
    )
    assert code == 0
    size = sum(p.stat().st_size for p in out.iterdir())
    assert size <= 5 * 2**20
    summary = json.loads((out / "clip_training.json").read_text())
    assert summary["steps"] == 2 and 0 <= summary["retrieval_full_of_8"] <= 1
    assert summary["hard_negatives"] and 0 <= summary["near_miss_partial"] <= 1
    sample = make_sample("add", 3, 1)
    codes = shapes_tokenizer().scene_to_codes(sample.scene_out)
    image = shapes_tokenizer().decode(codes[None])[0]
    score = ClipReward(out).score([PartialState(sample.reasoning, codes, image)])
    assert score.shape == (1,) and -1 <= score.item() <= 1
    assert main(["shapes", "train-clip", "--out", str(tmp_path / "x"), "--steps", "0"]) == 2
    assert "train-clip" in capsys.readouterr().err


def test_within_group_correlation_by_hand():
    # two groups of 3; deviations x: (-1, 0, 1), (-2, 0, 2); y: (-1, 1, 0), (0, -1, 1)
    x = torch.tensor([1.0, 2.0, 3.0, 0.0, 2.0, 4.0])
    y = torch.tensor([4.0, 6.0, 5.0, 1.0, 0.0, 2.0])
    # sum dx dy = (1 + 0 + 0) + (0 + 0 + 2) = 3; sum dx^2 = 2 + 8 = 10; sum dy^2 = 2 + 2 = 4
    assert within_group_correlation(x, y, 3) == pytest.approx(3 / math.sqrt(40))
    # a shift of one group's scores changes nothing: only differences inside a group count
    assert within_group_correlation(x, y + torch.tensor([0, 0, 0, 9.0, 9, 9]), 3) == (
        pytest.approx(3 / math.sqrt(40))
    )
    assert within_group_correlation(x, x, 2) == pytest.approx(1.0)
    assert math.isnan(within_group_correlation(x, torch.ones(6), 3))
    with pytest.raises(ValueError, match="groups of 4"):
        within_group_correlation(x, y, 4)


def test_control_rewards_by_hand():
    black = torch.zeros(3, 2, 2)
    half_red = black.clone()
    half_red[0, 0] = 1.0  # the top row red
    colour = build_reward("colour_share", {"colour": [1, 0, 0]})
    assert colour.score([PartialState("", torch.zeros(1), half_red)]).tolist() == [0.5]
    word = build_reward("word_share", {"word": "Red"})
    states = [PartialState(t, torch.zeros(1), black) for t in ("A red, RED star.", "", "redder")]
    assert word.score(states).tolist() == pytest.approx([0.5, 0.0, 0.0])
    for bad in ({}, {"word": "two words"}, {"word": 3}):
        with pytest.raises(RewardError, match="reward.word"):
            build_reward("word_share", bad)


def test_making_and_loading_a_clip_and_importing_amused_print_nothing(tmp_path):
    """transformers' and diffusers' model classes import torchao when it is installed, which logs
    warnings about kernels it cannot load, and bars of its own: a fresh process that trains,
    saves and loads the shapes CLIP quietly and imports the aMUSEd tokenizer writes nothing to
    stderr."""
    script = (
        "import sys\n"
        "from paradiff.image_tokenizers import amused\n"
        "from paradiff.shapes.clip import train_shapes_clip\n"
        "from paradiff.training.rewards import ClipReward\n"
        "train_shapes_clip(sys.argv[1], steps=1, batch_size=4, n_pairs=40, progress=False)\n"
        "ClipReward(sys.argv[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "clip")], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
