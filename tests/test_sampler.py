"""The parallel sampler: schedules, guidance, batching, modes, token ranges, seeds, fast settings."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paradiff.layout import Batch, Layout, TokenSpace
from paradiff.model import MaskPredictor
from paradiff.model_config import tiny_config
from paradiff.sampling import (
    ParallelSampler,
    SamplerConfig,
    SamplerConfigError,
    make_plan,
    sampler_for,
)
from paradiff.sampling.best_of import image_given_text_score
from paradiff.sampling.config import (
    CACHE_STRATEGIES,
    EXACT_FAST_SETTINGS,
    SPEED_PRESETS,
    unset_exact_values,
)
from paradiff.sampling.plan import step_refresh
from paradiff.sampling.sampler import guide
from paradiff.sampling.schedules import (
    block_text_plan,
    cosine_masked,
    halton_order,
    linear_reveal_counts,
    radical_inverse,
    spread_steps,
)

# A small family-A-template token space: text ids 0..47 (mask 40), image codes 48..63.
SPACE = TokenSpace(
    family="A",
    mask_id=40,
    image_offset=48,
    codebook_size=16,
    image_start_id=41,
    image_end_id=42,
    pad_id=43,
    text_fill_id=44,
    row_break_id=45,
    answer_start_id=46,
    uncondition_id=47,
)
GRID = (3, 4)
TEXT_LENGTH = 8
BASE = SamplerConfig(
    text_steps=8,
    image_steps=5,
    text_gen_length=TEXT_LENGTH,
    text_block_length=4,
    text_temperature=0.0,
    image_temperature=1.0,
    cfg_text=0.0,
    cfg_image=2.0,
    seed=0,
)


class TemptingModel(MaskPredictor):
    """A random model whose head favours the mask id (+8) and image ids (+4) everywhere, so a
    sampler that let them through at the wrong place would write them."""

    def __init__(self, config) -> None:
        super().__init__(config)
        bias = torch.zeros(config.embedding_size, dtype=torch.float64)
        bias[SPACE.mask_id] = 8.0
        bias[SPACE.image_offset :] = 4.0
        self.register_buffer("bias", bias)

    def logits(self, hidden, positions=None, vocab_range=None):
        out = super().logits(hidden, positions, vocab_range)
        start, stop = vocab_range or (0, self.config.embedding_size)
        return out + self.bias[start:stop].to(out.dtype)


@pytest.fixture(scope="module")
def model() -> MaskPredictor:
    torch.manual_seed(0)
    config = tiny_config(SPACE.vocab_size, d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64)
    # float64: a padded row's hidden states equal the row alone's to far below sampling noise
    return TemptingModel(config).double().eval()


def prompt(length: int, seed: int) -> list[int]:
    ids = torch.randint(0, 40, (length,), generator=torch.Generator().manual_seed(seed)).tolist()
    return ids[:-1] + [7]  # the last id stands for the token closing the user turn


def build(prompt_lengths: list[int], guided: bool = True) -> Batch:
    """Conditional rows of the given prompt lengths, then (if `guided`) their twins."""
    layout = Layout(SPACE)
    cond = [layout.build(prompt(n, n), GRID, TEXT_LENGTH) for n in prompt_lengths]
    uncond = [layout.build([3, SPACE.uncondition_id, 7], GRID, TEXT_LENGTH) for _ in cond]
    return layout.collate(cond + (uncond if guided else []))


def sample(model, config, prompt_lengths=(6,), seeds=None, guided=True):
    batch = build(list(prompt_lengths), guided)
    seeds = list(seeds) if seeds is not None else [config.seed] * len(prompt_lengths)
    out = ParallelSampler(model, SPACE, config)(batch, n_cond=len(prompt_lengths), seeds=seeds)
    return batch, out


def answer_spans(batch: Batch, out) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns of the text and of the output image inside the trajectory's answer part."""
    start = out.answer_start
    return batch.text - start, batch.output_image - start


# -- schedules ------------------------------------------------------------------------------------
@given(st.integers(0, 300), st.integers(1, 200))
def test_linear_counts_sum_to_the_total(n_tokens, steps):
    counts = linear_reveal_counts(n_tokens, steps)
    assert len(counts) == steps and sum(counts) == n_tokens and min(counts) >= 0


@given(st.integers(1, 64), st.integers(1, 8), st.integers(0, 64))
def test_block_plan_fills_each_block_before_the_next(block_length, n_blocks, extra_steps):
    steps = n_blocks + extra_steps
    plan = block_text_plan(block_length * n_blocks, block_length, steps)
    assert len(plan) == steps
    blocks = [block for block, _ in plan]
    assert blocks == sorted(blocks) and set(blocks) == set(range(n_blocks))
    for block in range(n_blocks):
        assert sum(k for b, k in plan if b == block) == block_length


def test_block_plan_refuses_a_block_length_not_dividing_the_text():
    with pytest.raises(ValueError, match="does not divide"):
        block_text_plan(10, 4, 10)


@given(st.integers(0, 5000), st.floats(0, 1), st.floats(0, 1))
def test_cosine_schedule_starts_full_ends_empty_and_decreases(n_tokens, a, b):
    assert cosine_masked(n_tokens, 0.0) == n_tokens and cosine_masked(n_tokens, 1.0) == 0
    low, high = sorted((a, b))
    assert 0 <= cosine_masked(n_tokens, high) <= cosine_masked(n_tokens, low) <= n_tokens


def test_radical_inverse_mirrors_the_digits():
    assert radical_inverse(0, 2) == 0.0
    assert radical_inverse(1, 2) == 0.5 and radical_inverse(6, 2) == 0.375  # 110 -> 0.011
    assert radical_inverse(5, 3) == pytest.approx(2 / 3 + 1 / 9)  # 12 -> 0.21


@given(st.integers(1, 24), st.integers(1, 24))
def test_halton_order_visits_every_cell_once(height, width):
    assert sorted(halton_order(height, width)) == list(range(height * width))


@pytest.mark.parametrize("side", [4, 8, 16])
def test_halton_order_spreads_its_first_cells_over_every_row(side):
    first = halton_order(side, side)[:side]
    assert sorted(cell // side for cell in first) == list(range(side))  # base 2: one per row


@given(st.integers(1, 300), st.data())
def test_spread_steps_end_on_the_last_step_without_collapsing(timeline, data):
    first = data.draw(st.integers(0, timeline - 1))
    count = data.draw(st.integers(1, timeline - first))
    steps = spread_steps(timeline, count, first)
    assert len(steps) == count and steps == sorted(steps)
    assert steps[-1] == timeline - 1 and steps[0] >= (first if count > 1 else 0)


@settings(max_examples=60)
@given(st.integers(1, 6), st.integers(1, 8), st.integers(0, 40), st.integers(1, 80), st.booleans())
def test_plan_reveals_every_token_on_one_timeline(n_blocks, block_length, extra, images, seq):
    config = SamplerConfig(
        text_steps=n_blocks + extra,
        image_steps=images,
        text_gen_length=n_blocks * block_length,
        text_block_length=block_length,
        mode="sequential" if seq else "parallel",
    )
    plan = make_plan(config)
    text = [step.text for step in plan if step.text is not None]
    image = [i for i, step in enumerate(plan) if step.image is not None]
    assert sum(k for _, k in text) == config.text_gen_length
    assert len(text) == config.text_steps and len(image) == config.image_steps
    assert [i for i, step in enumerate(plan) if step.last_image] == [image[-1]]
    assert plan[image[-1]].image == 1.0
    if seq:
        assert len(plan) == config.text_steps + config.image_steps
        assert max(i for i, step in enumerate(plan) if step.text) < image[0]
    else:
        assert len(plan) == max(config.text_steps, config.image_steps)


# -- guidance -------------------------------------------------------------------------------------
def test_guide_composes_conditional_and_unconditional_logits():
    cond = torch.tensor([[[1.0, -2.0, 0.5]], [[0.0, 3.0, -1.0]]])
    uncond = torch.tensor([[[0.5, 1.0, 0.5]], [[2.0, -1.0, 1.0]]])
    for weight in (0.0, 1.5, 4.0):
        expected = uncond + (1 + weight) * (cond - uncond)
        guided = guide(torch.cat([cond, uncond]), n_cond=2, weight=weight)
        torch.testing.assert_close(guided, expected)
    assert guide(cond, n_cond=2, weight=4.0) is cond  # no unconditional rows: unchanged


@pytest.mark.parametrize("cfg_text, cfg_image", [(0.0, 0.0), (0.0, 3.0), (2.0, 0.0), (1.0, 3.0)])
def test_unconditional_rows_join_the_same_forward_only_when_guided(model, cfg_text, cfg_image):
    config = BASE.replace(cfg_text=cfg_text, cfg_image=cfg_image)
    calls = []
    original = model.hidden_states

    def counting(ids, mask=None):
        calls.append(ids.shape[0])
        return original(ids, mask)

    model.hidden_states = counting
    try:
        _, out = sample(model, config, prompt_lengths=(5, 7))
    finally:
        del model.hidden_states
    plan = out.plan
    guided = [
        (s.text is not None and cfg_text > 0) or (s.image is not None and cfg_image > 0)
        for s in plan
    ]
    assert calls == [4 if g else 2 for g in guided]  # one forward per step
    assert out.forward_rows == sum(calls)


# -- batching, seeds, determinism -----------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"text_temperature": 0.8, "remasking": "random", "cfg_text": 1.5, "cfg_image": 0.0},
        {"mode": "sequential", "image_temperature": 0.5},
        {"cache_refresh": 3, "guidance_reuse": 2, "text_threshold": 0.5},
        {"speed": "fastest", "cfg_text": 1.5, "text_temperature": 0.8},
        {"cache_refresh": 3, "image_recompute": "active", "uncond_recompute": "guided"},
    ],
)
def test_a_batch_of_two_equals_two_single_runs(model, changes):
    config = BASE.replace(**changes)
    batch, out = sample(model, config, prompt_lengths=(4, 9), seeds=(11, 12))
    assert batch.attention_mask[0].sum() < batch.attention_mask[1].sum()  # row 0 is padded
    for row, (length, seed) in enumerate(((4, 11), (9, 12))):
        _, alone = sample(model, config, prompt_lengths=(length,), seeds=(seed,))
        assert torch.equal(out.trajectory[:, row], alone.trajectory[:, 0])
        assert torch.equal(out.text_tokens[row], alone.text_tokens[0])
        assert torch.equal(out.image_codes[row], alone.image_codes[0])


def test_batch_marks_its_unconditional_rows(model):
    layout = Layout(SPACE)
    cond = [layout.build(prompt(n, n), GRID, TEXT_LENGTH) for n in (4, 6)]
    uncond = [layout.build([3, SPACE.uncondition_id, 7], GRID, TEXT_LENGTH) for _ in cond]
    marked = layout.collate(cond, uncond)
    assert (marked.n_cond, marked.n_uncond) == (2, 2)
    assert layout.collate(cond).n_uncond == 0
    config = BASE.replace(text_temperature=0.5)
    out = ParallelSampler(model, SPACE, config)(marked, seeds=[1, 2])
    _, counted = sample(model, config, (4, 6), seeds=(1, 2))  # the same rows marked by n_cond
    assert torch.equal(out.trajectory, counted.trajectory)
    assert out.forward_rows == counted.forward_rows > len(out.plan) * 2  # guided steps ran 4 rows
    with pytest.raises(ValueError, match="unconditional rows"):
        marked.with_unconditional(1)
    with pytest.raises(ValueError, match="unknown sampler profile"):
        sampler_for("upstream")


def test_same_seed_same_output_other_seed_other_output(model):
    config = BASE.replace(text_temperature=1.0)
    _, first = sample(model, config, seeds=(3,))
    _, again = sample(model, config, seeds=(3,))
    _, other = sample(model, config, seeds=(4,))
    assert torch.equal(first.trajectory, again.trajectory)
    assert not torch.equal(first.image_codes, other.image_codes)
    assert not torch.equal(first.trajectory, other.trajectory)


def test_temperature_zero_is_deterministic_whatever_the_seed(model):
    config = BASE.replace(text_temperature=0.0, image_temperature=0.0)
    _, first = sample(model, config, seeds=(1,))
    _, second = sample(model, config, seeds=(2,))
    assert torch.equal(first.trajectory, second.trajectory)


# -- what the trajectory shows ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"cfg_text": 2.0},
        {"text_temperature": 1.0, "remasking": "random"},
        {"mode": "sequential", "cfg_image": 0.0},
        {"image_steps": 8, "image_temperature": 0.0},
        {"cache_refresh": 4, "guidance_reuse": 3, "text_threshold": 0.3},
        {"speed": "fast", "mode": "sequential"},
        {"speed": "fastest", "cfg_text": 2.0},
        {"cache_refresh": 5, "image_recompute": "active", "uncond_recompute": "guided"},
        {"speed": "fast", "image_recompute": "active", "cfg_text": 2.0, "image_steps": 8},
    ],
)
def test_every_position_gets_an_id_of_its_modality_and_is_revealed(model, changes):
    batch, out = sample(model, BASE.replace(**changes), prompt_lengths=(5, 8), seeds=(1, 2))
    text, image = answer_spans(batch, out)
    states = out.trajectory.long()  # (T + 1, B, A)
    text_ids, image_ids = states[..., text], states[..., image]
    mask = SPACE.mask_id
    assert ((text_ids == mask) | (text_ids < SPACE.image_offset)).all()  # text ids only
    assert ((image_ids == mask) | (image_ids >= SPACE.image_offset)).all()  # image ids only
    assert (image_ids < SPACE.vocab_size).all()
    assert (states[0, :, text] == mask).all() and (states[0, :, image] == mask).all()
    assert not (states[-1] == mask).any()  # every token revealed by the end
    assert (out.image_codes >= 0).all() and (out.image_codes < SPACE.codebook_size).all()


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_the_plan_knows_how_many_tokens_of_the_open_block_are_masked(model, mode):
    config = BASE.replace(text_steps=7, text_block_length=4, mode=mode)
    batch, out = sample(model, config)
    text, _ = answer_spans(batch, out)
    masked = out.trajectory[:, 0, text].long() == SPACE.mask_id  # (T + 1, N)
    for s, plan in enumerate(out.plan):
        if plan.text is not None:
            block = plan.text[0]
            assert plan.text_open == int(masked[s, 4 * block : 4 * block + 4].sum())


def test_text_blocks_complete_in_order(model):
    batch, out = sample(model, BASE.replace(text_steps=8, text_block_length=2))
    text, _ = answer_spans(batch, out)
    revealed = out.trajectory[:, 0, text].long() != SPACE.mask_id  # (T + 1, N)
    blocks = revealed.view(len(revealed), -1, 2)
    for state in blocks:
        opened = state.any(-1)
        complete = state.all(-1)
        for block in range(1, len(opened)):
            assert not opened[block] or complete[block - 1]


def test_sequential_mode_decodes_no_image_token_before_the_text_is_complete(model):
    batch, out = sample(model, BASE.replace(mode="sequential"), prompt_lengths=(5, 8))
    text, image = answer_spans(batch, out)
    states = out.trajectory.long()
    text_done = (states[..., text] != SPACE.mask_id).all(-1)  # (T + 1, B)
    image_started = (states[..., image] != SPACE.mask_id).any(-1)
    assert not (image_started & ~text_done).any()
    assert image_started[-1].all()
    assert len(out.plan) == BASE.text_steps + BASE.image_steps
    # in parallel mode the picture starts while the text is still being written
    batch, out = sample(model, BASE, prompt_lengths=(5, 8))
    states = out.trajectory.long()
    text_done = (states[..., text] != SPACE.mask_id).all(-1)
    image_started = (states[..., image] != SPACE.mask_id).any(-1)
    assert (image_started & ~text_done).any()


# -- the fast settings: cached partial forwards, reused guidance, threshold decoding, presets ----


@pytest.mark.parametrize(
    "changes",
    [
        {"cache_refresh": 1},  # a full forward every step, through the cache
        {"guidance_reuse": 1},  # the unconditional rows on every guided step
        {"text_threshold": 1.0, "cfg_text": 1.0},  # no confidence reaches 1: the schedule only
        {"cache_refresh": 1, "guidance_reuse": 1, "text_temperature": 0.7, "cfg_text": 1.0},
        {"cache_refresh": 1, "image_recompute": "active", "uncond_recompute": "guided"},
    ],
)
def test_fast_settings_at_their_exact_limits_give_exact_modes_tokens(model, changes):
    exact_config = BASE.replace(
        **{k: v for k, v in changes.items() if k in ("cfg_text", "text_temperature")}
    )
    _, exact = sample(model, exact_config, prompt_lengths=(4, 9), seeds=(1, 2))
    _, fast = sample(model, exact_config.replace(**changes), prompt_lengths=(4, 9), seeds=(1, 2))
    assert torch.equal(fast.trajectory, exact.trajectory)
    assert fast.forward_rows == exact.forward_rows


def test_a_cache_computes_fewer_positions(model):
    _, exact = sample(model, BASE, prompt_lengths=(6,))
    _, cached = sample(model, BASE.replace(cache_refresh=4), prompt_lengths=(6,))
    assert cached.forward_positions < exact.forward_positions
    length = exact.ids.shape[1]
    rows_per_step = exact.forward_rows
    assert exact.forward_positions == rows_per_step * length


def test_guidance_reuse_skips_unconditional_rows(model):
    config = BASE.replace(cfg_image=2.0)
    _, exact = sample(model, config, prompt_lengths=(6,))
    _, reused = sample(model, config.replace(guidance_reuse=3), prompt_lengths=(6,))
    guided_steps = sum(p.image is not None for p in exact.plan)
    n_steps = len(exact.plan)
    assert exact.forward_rows == n_steps + guided_steps
    assert reused.forward_rows == n_steps + -(-guided_steps // 3)  # every third guided step


def record_partial_forwards(model, monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Record (ids (R, L), positions (R, P)) of every partial forward the sampler runs."""
    calls = []
    partial = model.partial_hidden_states

    def recording(ids, cache, at=None, mask=None):
        if at is not None:
            calls.append((ids.clone(), at.clone()))
        return partial(ids, cache, at, mask)

    monkeypatch.setattr(model, "partial_hidden_states", recording)
    return calls


def test_active_image_recompute_computes_what_a_step_reads_and_what_was_just_revealed(
    model, monkeypatch
):
    config = BASE.replace(cache_refresh=100, image_steps=8, cfg_image=0.0)
    calls = record_partial_forwards(model, monkeypatch)
    batch, out = sample(model, config.replace(image_recompute="active"), (4, 9), seeds=(1, 2))
    image = batch.output_image
    states = out.trajectory.long()  # (T + 1, B, A)
    image_cols = image - out.answer_start
    partial_image_steps = [s for s, p in enumerate(out.plan) if p.image is not None and s > 0]
    assert len(calls) == len(out.plan) - 1  # one full forward, then partial ones
    previous_image_step = 0  # step 0 is the first image step and the full forward
    for s in partial_image_steps:
        _, at = calls[s - 1]
        for row in range(2):
            computed = set(at[row].tolist())
            before_previous = states[previous_image_step, row, image_cols] == SPACE.mask_id
            needed = set(image[before_previous].tolist())  # still masked, or revealed since
            assert needed <= computed
        previous_image_step = s
    _, every = sample(model, config, (4, 9), seeds=(1, 2))
    assert out.forward_positions < every.forward_positions
    assert not (states[-1] == SPACE.mask_id).any()


def test_guided_uncond_recompute_runs_the_unconditional_rows_on_the_image_only(model, monkeypatch):
    config = BASE.replace(cache_refresh=100, cfg_text=0.0, cfg_image=2.0)
    calls = record_partial_forwards(model, monkeypatch)
    batch, out = sample(model, config.replace(uncond_recompute="guided"), (6,))
    image = set(batch.output_image.tolist())
    uncond_calls = [at for ids, at in calls if (ids[0] == SPACE.uncondition_id).any()]
    assert uncond_calls and all(set(at[0].tolist()) == image for at in uncond_calls)
    cond_calls = [at for ids, at in calls if not (ids[0] == SPACE.uncondition_id).any()]
    assert any(not set(at[0].tolist()) <= image for at in cond_calls)  # the text block too
    _, every = sample(model, config, (6,))
    assert out.forward_positions < every.forward_positions


def test_answer_refresh_recomputes_the_answer_on_every_a_th_step_between_full_forwards():
    kinds = [step_refresh(s, BASE.replace(cache_refresh=6, answer_refresh=2)) for s in range(13)]
    assert kinds == ["full", "partial", "answer", "partial", "answer", "partial"] * 2 + ["full"]
    on_r = [step_refresh(s, BASE.replace(cache_refresh=4, answer_refresh=4)) for s in range(8)]
    assert on_r == ["full", "partial", "partial", "partial"] * 2  # a >= r: never
    assert {step_refresh(s, BASE.replace(cache_refresh=3)) for s in range(9)} == {"full", "partial"}
    assert {step_refresh(s, BASE) for s in range(9)} == {"full"}  # no cache: every step full


def test_answer_refresh_is_off_in_exact_mode_and_the_presets():
    for config in (BASE, BASE.replace(speed="fast"), BASE.replace(speed="fastest")):
        assert config.resolved().answer_refresh == 0
    assert not BASE.replace(answer_refresh=0).fast
    assert BASE.replace(speed="fast", answer_refresh=3).resolved().answer_refresh == 3


def test_an_answer_step_computes_every_answer_position_against_the_cached_prefix(
    model, monkeypatch
):
    config = BASE.replace(cache_refresh=100, answer_refresh=3, cfg_image=0.0)
    calls = record_partial_forwards(model, monkeypatch)
    batch, out = sample(model, config, (4, 9), seeds=(1, 2))
    length = out.ids.shape[1]
    answer = set(range(out.answer_start, length))
    assert len(calls) == len(out.plan) - 1  # one full forward, then partial ones
    for s, (_, at) in enumerate(calls, start=1):
        for row in range(2):
            computed = set(at[row].tolist())
            assert (computed == answer) == (s % 3 == 0)
            assert computed <= answer  # the prefix is never recomputed
    _, plain = sample(model, config.replace(answer_refresh=0), (4, 9), seeds=(1, 2))
    assert plain.forward_positions < out.forward_positions


@pytest.mark.parametrize(
    "changes",
    [
        {"cache_refresh": 100, "answer_refresh": 1},
        {"cache_refresh": 3, "answer_refresh": 1, "image_recompute": "active", "cfg_text": 1.0},
    ],
)
def test_with_one_layer_an_answer_refresh_every_step_gives_exact_modes_tokens(changes):
    """With one layer the prefix's keys/values are those of its own tokens, whatever the answer,
    so a cache refreshed on the whole answer every step serves every key/value fresh."""
    torch.manual_seed(1)
    config = tiny_config(SPACE.vocab_size, d_model=32, n_heads=2, n_layers=1, mlp_hidden_size=64)
    one_layer = TemptingModel(config).double().eval()
    exact_config = BASE.replace(cfg_text=changes.get("cfg_text", 0.0))
    _, exact = sample(one_layer, exact_config, prompt_lengths=(4, 9), seeds=(1, 2))
    _, fast = sample(one_layer, BASE.replace(**changes), prompt_lengths=(4, 9), seeds=(1, 2))
    assert torch.equal(fast.trajectory, exact.trajectory)
    assert fast.forward_positions < exact.forward_positions


@pytest.mark.parametrize("changes", [{}, {"cache_refresh": 3, "image_temperature": 0.0}])
def test_halton_order_reveals_the_image_in_the_order_of_the_sequence(model, changes):
    config = BASE.replace(image_order="halton", image_steps=5, **changes)
    batch, out = sample(model, config, (4, 9), seeds=(1, 2))
    order = torch.tensor(halton_order(*GRID))
    image = out.trajectory.long()[..., batch.output_image - out.answer_start]  # (T + 1, B, P)
    revealed = (image != SPACE.mask_id)[:, :, order]  # in the Halton order
    counts = revealed.sum(-1)  # (T + 1, B)
    places = torch.arange(len(order))
    assert torch.equal(revealed, places < counts[..., None])  # always a prefix of the order
    assert (counts[-1] == len(order)).all()
    _, confident = sample(model, config.replace(image_order="confidence"), (4, 9), seeds=(1, 2))
    assert not torch.equal(confident.trajectory, out.trajectory)


def test_a_low_threshold_reveals_a_block_in_its_first_step(model):
    config = BASE.replace(text_steps=8, text_block_length=4, text_threshold=1e-6)
    batch, out = sample(model, config)
    text, _ = answer_spans(batch, out)
    revealed = (out.trajectory[:, 0, text].long() != SPACE.mask_id).sum(-1)  # (T + 1,)
    text_steps = [s for s, p in enumerate(out.plan) if p.text is not None]
    first_of_block = {}
    for s in text_steps:
        first_of_block.setdefault(out.plan[s].text[0], s)
    for block, s in first_of_block.items():
        assert revealed[s + 1] == 4 * (block + 1)  # the whole block at once
    _, exact = sample(model, config.replace(text_threshold=None))
    exact_revealed = (exact.trajectory[:, 0, text].long() != SPACE.mask_id).sum(-1)
    assert (revealed >= exact_revealed).all() and (revealed > exact_revealed).any()


def test_speed_presets_scale_the_steps_and_keep_explicit_settings():
    base = SamplerConfig(text_steps=64, image_steps=32, text_gen_length=256, text_block_length=32)
    fast = base.replace(speed="fast").resolved()
    assert (fast.text_steps, fast.image_steps) == (64, 32) and fast.speed == "exact"
    assert fast.cache_refresh == SPEED_PRESETS["fast"]["cache_refresh"]
    explicit = base.replace(speed="fastest", cache_refresh=2).resolved()
    assert explicit.cache_refresh == 2 and (explicit.text_steps, explicit.image_steps) == (32, 16)
    assert explicit.guidance_reuse == SPEED_PRESETS["fastest"]["guidance_reuse"]
    few = base.replace(text_steps=8, speed="fastest").resolved()
    assert few.text_steps == 8  # never fewer steps than text blocks
    exact = base.resolved()
    assert exact.to_dict() == {**base.to_dict(), **EXACT_FAST_SETTINGS}
    assert exact.resolved() is exact and not exact.fast


@pytest.mark.parametrize("speed", ["fast", "fastest"])
@pytest.mark.parametrize(
    "explicit",
    [
        {"image_recompute": "all"},
        {"uncond_recompute": "all", "image_recompute": "all"},
        {"cache_refresh": 0},
        {"cache_refresh": 2},
        {"guidance_reuse": 0},
        {"cache_refresh": 3, "answer_refresh": 4},
        {"answer_refresh": 0},
        {"text_threshold": 0.0},
        {"text_threshold": 0.5, "compile": False},
    ],
)
def test_a_fast_setting_set_keeps_its_value_under_a_preset_whatever_it_is(speed, explicit):
    preset = {**EXACT_FAST_SETTINGS, **SPEED_PRESETS[speed]}
    for config in (
        BASE.replace(speed=speed, **explicit),
        SamplerConfig(**{**BASE.to_dict(), "speed": speed, **explicit}),
        BASE.replace(**explicit).replace(speed=speed),
    ):
        ran = config.resolved()
        assert ran.speed == "exact" and ran.resolved() is ran
        for name, value in EXACT_FAST_SETTINGS.items():
            if name in explicit:
                assert getattr(ran, name) == explicit[name]
            elif name in CACHE_STRATEGIES and not ran.cache_refresh:
                assert getattr(ran, name) == value  # no cache: the cache strategies stay off
            else:
                assert getattr(ran, name) == preset[name]


def test_a_preset_with_its_cache_turned_off_samples_as_exact_mode(model):
    """--speed fast --cache-refresh 0: `fast` is a cache and nothing else (every step kept)."""
    _, exact = sample(model, BASE, prompt_lengths=(5, 8), seeds=(1, 2))
    _, uncached = sample(model, BASE.replace(speed="fast", cache_refresh=0), (5, 8), (1, 2))
    _, cached = sample(model, BASE.replace(speed="fast"), (5, 8), (1, 2))
    assert torch.equal(uncached.trajectory, exact.trajectory)
    assert uncached.forward_rows == exact.forward_rows
    assert not torch.equal(cached.trajectory, exact.trajectory)


def test_settings_written_before_fast_settings_could_be_unset_read_their_exact_values_as_unset():
    old = {**BASE.to_dict(), **EXACT_FAST_SETTINGS, "text_threshold": None, "speed": "fast"}
    ran = SamplerConfig.from_dict(unset_exact_values(old)).resolved()
    assert ran.cache_refresh == SPEED_PRESETS["fast"]["cache_refresh"]
    assert ran.image_recompute == "active" and ran.text_threshold == 0.0
    kept = unset_exact_values({**old, "cache_refresh": 3, "seed": 0})
    assert kept["cache_refresh"] == 3 and kept["seed"] == 0 and kept["image_recompute"] is None


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"text_threshold": -0.5}, "text_threshold must be in [0, 1] (0 turns it off)"),
        ({"text_threshold": 1.5}, "text_threshold must be in [0, 1]"),
        ({"cache_refresh": -1}, "cache_refresh must be at least 1"),
        ({"guidance_reuse": -2}, "guidance_reuse must be at least 1"),
        ({"speed": "warp"}, "speed must be one of"),
        ({"text_threshold": 0.9, "remasking": "random"}, "needs remasking 'low_confidence'"),
        ({"profile": "reference", "speed": "fast"}, "need the default profile"),
        ({"profile": "reference", "cache_refresh": 2}, "need the default profile"),
        ({"image_recompute": "active"}, "image_recompute 'active' needs cache_refresh"),
        (
            {"speed": "fast", "cache_refresh": 0, "image_recompute": "active"},
            "image_recompute 'active' needs cache_refresh",
        ),
        ({"speed": "fastest", "remasking": "random"}, "needs remasking 'low_confidence'"),
        ({"uncond_recompute": "guided"}, "uncond_recompute 'guided' needs cache_refresh"),
        ({"image_recompute": "some", "cache_refresh": 2}, "image_recompute must be one of"),
        ({"answer_refresh": -1, "cache_refresh": 2}, "answer_refresh must be at least 1 (0 turns"),
        ({"answer_refresh": 5000, "cache_refresh": 2}, "answer_refresh must be at most 4096"),
        ({"answer_refresh": 1.5, "cache_refresh": 2}, "answer_refresh must be a whole number"),
        ({"answer_refresh": 2}, "answer_refresh 2 needs cache_refresh"),
        ({"speed": "fast", "cache_refresh": 0, "answer_refresh": 2}, "needs cache_refresh"),
        ({"profile": "reference", "image_order": "halton"}, "needs the default profile"),
    ],
)
def test_out_of_range_fast_settings_are_refused(changes, message):
    with pytest.raises(SamplerConfigError, match=None) as err:
        BASE.replace(**changes)
    assert message in str(err.value) and "\n" not in str(err.value)


# -- best of K ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("guided", [False, True])
def test_best_of_keeps_per_row_the_best_scored_of_the_seeded_runs(model, guided):
    config = BASE.replace(text_temperature=1.0, cfg_image=2.0 if guided else 0.0)
    seeds = (5, 11)
    batch, best = sample(model, config.replace(best_of=3), (6, 9), seeds=seeds, guided=guided)
    runs = [
        sample(model, config, (6, 9), seeds=[s + k for s in seeds], guided=guided)[1]
        for k in range(3)
    ]
    scores = torch.stack([image_given_text_score(model, SPACE, r.ids, batch) for r in runs])
    assert not torch.equal(runs[0].image_codes, runs[1].image_codes)  # the candidates differ
    for row, k in enumerate(scores.argmax(0).tolist()):
        assert torch.equal(best.ids[row], runs[k].ids[row])
        assert torch.equal(best.image_codes[row], runs[k].image_codes[row])
        assert torch.equal(best.trajectory[:, row], runs[k].trajectory[:, row])
    assert best.forward_rows > sum(r.forward_rows for r in runs)  # the scoring forwards count


def test_best_of_one_is_a_single_run(model):
    _, once = sample(model, BASE, seeds=(2,))
    _, single = sample(model, BASE.replace(best_of=1), seeds=(2,))
    assert torch.equal(once.trajectory, single.trajectory)


def test_the_score_is_highest_for_the_codes_the_model_finds_likeliest(model):
    # With the image masked, each code's distribution does not depend on the candidate's
    # image, so the argmax codes beat any other codes under the same reasoning.
    batch, out = sample(model, BASE, (7,), seeds=(1,), guided=False)
    masked = out.ids.clone()
    masked[:, batch.output_image] = SPACE.mask_id
    hidden = model.hidden_states(masked, batch.attention_mask)
    logits = model.logits(hidden[:, batch.output_image], vocab_range=SPACE.image_vocab)
    likeliest = out.ids.clone()
    likeliest[:, batch.output_image] = logits.argmax(-1) + SPACE.image_vocab[0]
    expected = torch.log_softmax(logits.float(), -1).max(-1).values.sum()
    best = image_given_text_score(model, SPACE, likeliest, batch)
    assert torch.allclose(best, expected.reshape(1).to(best.dtype))
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        other = likeliest.clone()
        codes = torch.randint(*SPACE.image_vocab, (len(batch.output_image),), generator=generator)
        other[0, batch.output_image] = codes
        assert image_given_text_score(model, SPACE, other, batch) <= best


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"best_of": 0}, "best_of must be at least 1"),
        ({"best_of": 2, "text_temperature": 0.0, "image_temperature": 0.0}, "needs a text or"),
    ],
)
def test_best_of_out_of_range_is_refused(changes, message):
    with pytest.raises(SamplerConfigError) as err:
        BASE.replace(**changes)
    assert message in str(err.value) and "\n" not in str(err.value)
