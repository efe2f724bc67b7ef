"""SFT objective on hand-computed values: mask ratios, noise, weighted loss, LR schedule, condition
dropout, recipe files."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from paradiff.pipeline import ParallelPipeline
from paradiff.shapes.image_tokenizer import EMPTY_CODE
from paradiff.training.data import PretokenizedDataset, training_sequence
from paradiff.training.masking import (
    MIN_MASK_PROB,
    NoiseSettings,
    changed_output_codes,
    drawn_output_codes,
    mask_probability,
    masked_diffusion_loss,
    noise_batch,
)
from paradiff.training.recipe import RecipeError, load_recipe, parse_override
from paradiff.training.runs import example_generator, lr_factor
from paradiff.training.sft import DEFAULTS, SFTRun
from tests.conftest import PROJECT_ROOT

TINY_RECIPE = PROJECT_ROOT / "configs" / "tiny-sft.yaml"


@pytest.fixture(scope="module")
def pipe(tiny_shapes_model) -> ParallelPipeline:
    return ParallelPipeline.from_pretrained(str(tiny_shapes_model), dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def dataset(pipe, pretokenized) -> PretokenizedDataset:
    return PretokenizedDataset(pretokenized, pipe.sampler_defaults.text_gen_length)


def sequence(pipe, example, unconditional_prompt=None):
    text_length = pipe.sampler_defaults.text_gen_length
    return training_sequence(
        pipe.layout, example, text_length, pipe.answer_end_ids, unconditional_prompt
    )


def batch_of(pipe, examples):
    return pipe.layout.collate([sequence(pipe, e) for e in examples])


def generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def answer_positions(batch) -> torch.Tensor:
    return torch.cat([batch.output_image, batch.text])


def test_mask_probability_is_affine_in_t_with_a_floor():
    t = torch.tensor([0.0, 0.5, 1.0])
    expected = torch.tensor([MIN_MASK_PROB, 0.5 * (1 - MIN_MASK_PROB) + MIN_MASK_PROB, 1.0])
    assert torch.allclose(mask_probability(t), expected)
    assert torch.allclose(
        mask_probability(torch.tensor([0.0, 0.5]), eps=0.1), torch.tensor([0.1, 0.55])
    )


def test_noise_batch_masks_only_the_answer_with_the_drawn_ratios(pipe, dataset):
    batch = batch_of(pipe, [dataset[0], dataset[1], dataset[2]])
    seeds = (3, 4, 5)
    space = pipe.space
    paper = noise_batch(batch, space, generators(*seeds))
    uniform = noise_batch(batch, space, generators(*seeds), NoiseSettings("uniform"))
    n_image, n_text = len(batch.output_image), len(batch.text)
    assert paper.answer_tokens == 3 * (n_image + n_text)
    assert torch.equal(paper.masked, uniform.masked)
    answer = torch.zeros_like(paper.masked)
    answer[:, answer_positions(batch)] = True
    assert not (paper.masked & ~answer).any()
    assert torch.equal(paper.ids, torch.where(paper.masked, space.mask_id, batch.ids))
    assert torch.equal(paper.targets, batch.ids)
    for row, seed in enumerate(seeds):
        # by hand: t_image, t_text ~ U(0, 1), then one uniform draw per image and text position
        gen = torch.Generator().manual_seed(seed)
        t_image, t_text = torch.rand(2, generator=gen)
        p_image = (1 - MIN_MASK_PROB) * t_image + MIN_MASK_PROB
        p_text = (1 - MIN_MASK_PROB) * t_text + MIN_MASK_PROB
        image_masked = torch.rand(n_image, generator=gen) < p_image
        text_masked = torch.rand(n_text, generator=gen) < p_text
        assert torch.equal(paper.masked[row, batch.output_image], image_masked)
        assert torch.equal(paper.masked[row, batch.text], text_masked)
        assert torch.equal(paper.weight[row, batch.output_image], image_masked.float())
        assert torch.allclose(paper.weight[row, batch.text], text_masked / p_text)
        assert torch.equal(uniform.weight[row], paper.masked[row].float())
        assert paper.weight[row].sum() > 0
    assert not paper.weight[~paper.masked].any()


def assert_only_these_image_codes_weigh_4x(pipe, batch, heavier, settings):
    """Against the paper's noise: the same masks, w x 4 on the `heavier` (B, h*w) output codes,
    every other weight unchanged."""
    plain = noise_batch(batch, pipe.space, generators(1, 2, 3))
    heavy = noise_batch(batch, pipe.space, generators(1, 2, 3), settings)
    assert torch.equal(plain.masked, heavy.masked)
    image = batch.output_image
    expected = plain.weight[:, image] * torch.where(heavier, 4.0, 1.0)
    assert torch.equal(heavy.weight[:, image], expected)
    assert torch.equal(heavy.weight[:, batch.text], plain.weight[:, batch.text])


def test_changed_codes_weigh_more_and_only_in_edits(pipe, dataset):
    edits = [e for e in (dataset[i] for i in range(len(dataset))) if e.input_codes is not None]
    others = [e for e in (dataset[i] for i in range(len(dataset))) if e.input_codes is None]
    examples = [edits[0], edits[1]] + others[:1]
    batch = batch_of(pipe, examples)  # rows left-padded to the longest
    changed = changed_output_codes(batch, pipe.space)
    for row, example in enumerate(examples):
        if example.input_codes is None:  # a generation: nothing to compare with
            assert not changed[row].any()
        else:  # by hand: the raster codes that differ between the clean input and output
            by_hand = torch.as_tensor(example.input_codes != example.output_codes).flatten()
            assert torch.equal(changed[row], by_hand)
    assert changed.any()
    assert_only_these_image_codes_weigh_4x(
        pipe, batch, changed, NoiseSettings(changed_image_weight=4.0)
    )
    with pytest.raises(ValueError, match="changed_image_weight must be > 0"):
        NoiseSettings(changed_image_weight=0.0)


def test_drawn_codes_weigh_more_and_only_in_generations(pipe, dataset):
    examples = [dataset[i] for i in range(len(dataset))]
    generations = [e for e in examples if e.input_codes is None]
    edits = [e for e in examples if e.input_codes is not None]
    chosen = generations[:2] + edits[:1]
    batch = batch_of(pipe, chosen)  # rows left-padded to the longest
    drawn = drawn_output_codes(batch, pipe.space)
    for row, example in enumerate(chosen):
        if example.input_codes is not None:  # an edit: its changed cells have their own weight
            assert not drawn[row].any()
        else:  # by hand: the codes other than the empty canvas's
            codes = torch.as_tensor(example.output_codes).flatten()
            assert torch.equal(drawn[row], codes != EMPTY_CODE)
            assert 0 < drawn[row].sum() < len(codes) / 2
    assert_only_these_image_codes_weigh_4x(
        pipe, batch, drawn, NoiseSettings(drawn_image_weight=4.0)
    )
    with pytest.raises(ValueError, match="drawn_image_weight must be > 0"):
        NoiseSettings(drawn_image_weight=-1.0)


def test_image_from_text_rows_give_the_whole_reasoning_and_mask_the_whole_image(pipe, dataset):
    batch = batch_of(pipe, [dataset[i] for i in range(8)])
    image, text = batch.output_image, batch.text
    plain = noise_batch(batch, pipe.space, generators(*range(8)))
    none = noise_batch(
        batch, pipe.space, generators(*range(8)), NoiseSettings(image_from_text_share=0)
    )
    assert torch.equal(plain.masked, none.masked)  # share 0 draws nothing more: the paper's noise
    every = noise_batch(
        batch, pipe.space, generators(*range(8)), NoiseSettings(image_from_text_share=1)
    )
    assert every.masked[:, image].all() and not every.masked[:, text].any()
    assert (every.weight[:, image] == 1).all()  # w = 1 on every (masked) image code
    assert not every.weight[:, text].any()
    half = noise_batch(
        batch, pipe.space, generators(*range(8)), NoiseSettings(image_from_text_share=0.5)
    )
    switched = half.masked[:, image].all(1) & ~half.masked[:, text].any(1)  # (B,)
    assert 0 < int(switched.sum()) < 8  # these seeds switch some rows and not others
    kept = ~switched
    assert torch.equal(half.masked[kept], plain.masked[kept])  # the other rows keep their noise
    with pytest.raises(ValueError, match=r"image_from_text_share must be in \[0, 1\]"):
        NoiseSettings(image_from_text_share=1.5)


def test_noise_settings_reject_an_unknown_weighting():
    with pytest.raises(ValueError, match="loss_weighting must be one of"):
        NoiseSettings("elbo")


def test_a_rows_noise_does_not_depend_on_its_batch(pipe, dataset):
    by_length = sorted(range(len(dataset)), key=dataset.length)
    short, long = dataset[by_length[0]], dataset[by_length[-1]]
    alone = batch_of(pipe, [short])
    padded = batch_of(pipe, [long, short])  # the short row is left-padded here
    assert padded.ids.shape[1] > alone.ids.shape[1]
    a = noise_batch(alone, pipe.space, generators(7))
    b = noise_batch(padded, pipe.space, generators(9, 7))
    pos_a, pos_b = answer_positions(alone), answer_positions(padded)
    assert torch.equal(a.masked[0, pos_a], b.masked[1, pos_b])
    assert torch.equal(a.weight[0, pos_a], b.weight[1, pos_b])


@pytest.mark.parametrize("weighting", ["paper", "uniform"])
def test_masked_diffusion_loss_matches_a_hand_computation(pipe, dataset, weighting):
    space = pipe.space
    batch = batch_of(pipe, [dataset[i] for i in range(4)])
    noised = noise_batch(batch, space, generators(11, 12, 13, 14), NoiseSettings(weighting))
    model = pipe.model.eval()
    with torch.no_grad():
        parts = masked_diffusion_loss(model, noised, space)
        logits = model(noised.ids, noised.attention_mask).double()  # (B, L, V)
    text_positions = set(batch.text.tolist())
    weighted = 0.0
    ce = {True: [], False: []}
    for row, position in noised.masked.nonzero().tolist():
        text = position in text_positions
        start, stop = (0, space.image_offset) if text else (space.image_offset, space.vocab_size)
        candidates = [i for i in range(start, stop) if i != space.mask_id]  # as the sampler
        log_probs = F.log_softmax(logits[row, position, candidates], dim=-1)
        loss = -float(log_probs[candidates.index(int(noised.targets[row, position]))])
        weighted += float(noised.weight[row, position]) * loss
        ce[text].append(loss)
    assert ce[True] and ce[False]
    assert float(parts.weighted) == pytest.approx(weighted, rel=1e-5)
    assert (parts.text_count, parts.image_count) == (len(ce[True]), len(ce[False]))
    assert parts.text_ce == pytest.approx(sum(ce[True]), rel=1e-5)
    assert parts.image_ce == pytest.approx(sum(ce[False]), rel=1e-5)
    if weighting == "uniform":
        assert float(parts.weighted) == pytest.approx(parts.text_ce + parts.image_ce, rel=1e-5)
    else:  # 1/p_T >= 1 on text
        assert float(parts.weighted) > parts.text_ce + parts.image_ce


def test_lr_factor_warms_up_linearly_then_decays_to_the_floor():
    def cosine(progress):
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    factors = [lr_factor(step, warmup=4, total=10, min_ratio=0.1) for step in range(12)]
    expected = [0.25, 0.5, 0.75, 1.0] + [cosine(k / 6) for k in range(6)] + [0.1, 0.1]
    assert factors == pytest.approx(expected)
    assert lr_factor(7, 4, 10, 0.1) == pytest.approx(0.55)
    assert lr_factor(0, 0, 10, 0.2) == 1.0
    assert lr_factor(10, 0, 10, 0.2) == pytest.approx(0.2)


def test_dropped_condition_has_no_input_image_and_the_uncondition_prompt(pipe, dataset):
    space, layout = pipe.space, pipe.layout
    example = next(e for e in dataset.examples if e.task == "edit")
    unconditional = pipe.text_tokenizer.encode(
        layout.prompt_text("edit", layout.unconditional_instruction())
    )
    kept, dropped = sequence(pipe, example), sequence(pipe, example, unconditional)
    assert kept.input_image.numel() == example.input_codes.size
    assert dropped.input_image.numel() == 0
    assert int((dropped.ids == space.image_start_id).sum()) == 1  # the output image only
    assert torch.equal(dropped.ids[dropped.prompt], torch.tensor(unconditional))
    assert space.uncondition_id in dropped.ids[dropped.prompt].tolist()
    assert space.uncondition_id not in kept.ids.tolist()
    assert torch.equal(kept.ids[kept.output_image], dropped.ids[dropped.output_image])
    assert torch.equal(kept.ids[kept.text], dropped.ids[dropped.text])


def test_about_a_tenth_of_the_examples_drop_their_condition(
    pipe, tiny_shapes_model, pretokenized, tmp_path
):
    overrides = [
        f"model.init={tiny_shapes_model}",
        f"data.pretokenized={pretokenized}",
        f"output.dir={tmp_path}",
    ]
    run = SFTRun(load_recipe(TINY_RECIPE, overrides, DEFAULTS), progress=False)
    settings = run.settings
    seed, rate = settings.train.seed, settings.data.cond_dropout
    assert rate == 0.1
    space = pipe.space
    dropped, expected = [], []
    for step in range(50):
        batches, _ = run.micro_batches(step)
        rows = [ids for batch, _ in batches for ids in batch.ids]
        assert len(rows) == settings.train.batch_size
        for position, ids in enumerate(rows):
            gen = example_generator(seed, step, position)
            expected.append(torch.rand(1, generator=gen).item() < rate)
            dropped.append(space.uncondition_id in ids.tolist())
            if dropped[-1]:
                assert int((ids == space.image_start_id).sum()) == 1
    assert dropped == expected
    assert 0.05 * len(dropped) < sum(dropped) < 0.15 * len(dropped)


def test_without_reasoning_the_answer_text_is_all_fill(
    pipe, tiny_shapes_model, pretokenized, tmp_path
):
    overrides = [
        f"model.init={tiny_shapes_model}",
        f"data.pretokenized={pretokenized}",
        f"output.dir={tmp_path}",
        "data.cond_dropout=0",
    ]
    thinking = SFTRun(load_recipe(TINY_RECIPE, overrides, DEFAULTS), progress=False)
    silent = SFTRun(
        load_recipe(TINY_RECIPE, [*overrides, "data.reasoning=false"], DEFAULTS), progress=False
    )
    (with_text, _), *_ = thinking.micro_batches(0)[0]
    (without, _), *_ = silent.micro_batches(0)[0]
    fill = pipe.space.text_fill_id
    assert (with_text.ids[:, with_text.text] != fill).any()  # the reasoning is there
    assert (without.ids[:, without.text] == fill).all()  # ... and gone
    image = without.output_image
    assert torch.equal(without.ids[:, image], with_text.ids[:, with_text.output_image])
    with pytest.raises(RecipeError, match="data.reasoning"):
        SFTRun(load_recipe(TINY_RECIPE, [*overrides, "data.reasoning=maybe"], DEFAULTS))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.drawn_image_weight=0", "train.drawn_image_weight must be > 0"),
        ("train.changed_image_weight=-2", "train.changed_image_weight must be > 0"),
        ("train.image_from_text_share=1.5", r"train.image_from_text_share must be in \[0, 1\]"),
        ("train.image_from_text_share=-0.1", r"train.image_from_text_share must be in \[0, 1\]"),
        ("train.drawn_image_weight=heavy", "train.drawn_image_weight must be a number"),
        ("train.loss_weighting=elbo", "train.loss_weighting must be one of"),
    ],
)
def test_out_of_range_noise_settings_are_recipe_errors(
    override, message, tiny_shapes_model, pretokenized, tmp_path
):
    overrides = [
        f"model.init={tiny_shapes_model}",
        f"data.pretokenized={pretokenized}",
        f"output.dir={tmp_path}",
        override,
    ]
    with pytest.raises(RecipeError, match=message):
        SFTRun(load_recipe(TINY_RECIPE, overrides, DEFAULTS), progress=False)


def test_recipe_overrides_are_yaml_values_over_the_file_over_the_defaults():
    assert parse_override("train.lr=1e-4") == {"train": {"lr": 1e-4}}
    assert parse_override("train.betas=[0.9, 0.99]") == {"train": {"betas": [0.9, 0.99]}}
    assert parse_override("data.text_length=") == {"data": {"text_length": None}}
    assert parse_override("model.init=runs/a=b") == {"model": {"init": "runs/a=b"}}
    config = load_recipe(TINY_RECIPE, ["train.lr=2e-3", "output.keep=4"], DEFAULTS)
    assert config["train"]["lr"] == 2e-3  # override
    assert config["train"]["steps"] == 5  # file
    assert config["train"]["weight_decay"] == DEFAULTS["train"]["weight_decay"]  # default
    assert config["output"]["keep"] == 4
    assert DEFAULTS["output"]["keep"] == 2  # defaults are not modified


@pytest.mark.parametrize(
    ("file_text", "overrides", "message"),
    [
        ("train:\n  lrr: 1\n", [], "unknown recipe key 'train.lrr'"),
        ("", ["optim.lr=1"], "unknown recipe key 'optim'"),
        ("", ["train=3"], "'train' must be a mapping"),
        ("", ["train.lr"], "not key=value"),
        ("train: [1\n", [], "not valid YAML"),
        ("- 1\n", [], "must hold a mapping"),
    ],
)
def test_recipe_errors(tmp_path, file_text, overrides, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(file_text)
    with pytest.raises(RecipeError, match=message):
        load_recipe(path, overrides, DEFAULTS)


def test_missing_recipe_file_is_an_error(tmp_path):
    with pytest.raises(RecipeError, match="no such file"):
        load_recipe(tmp_path / "none.yaml", [], DEFAULTS)
