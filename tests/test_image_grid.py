"""Image-grid positions (ModelConfig.image_grid_size) and code embeddings from the codebook."""

from __future__ import annotations

import json

import pytest
import torch

from paradiff.layout import FAMILY_A, Layout, LayoutError, family_m, image_grid_positions
from paradiff.model import MaskPredictor
from paradiff.model_config import ModelConfig, tiny_config
from paradiff.shapes.family import new_shapes_pipeline


@pytest.fixture(scope="module")
def grid_pipe():
    return new_shapes_pipeline(seed=1, d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64)


def test_grid_positions_of_a_hand_made_sequence():
    space = FAMILY_A
    layout = Layout(space)
    codes = torch.arange(6).view(2, 3)
    seq = layout.build([5, 6, 7], (2, 2), 3, input_codes=codes)
    row, col, inside = image_grid_positions(seq.ids[None], space)
    # input image: rows of 3 codes, output image: rows of 2 masks, each row ended by a row-break
    assert row[0, seq.input_image].tolist() == [0, 0, 0, 1, 1, 1]
    assert col[0, seq.input_image].tolist() == [0, 1, 2, 0, 1, 2]
    assert row[0, seq.output_image].tolist() == [0, 0, 1, 1]
    assert col[0, seq.output_image].tolist() == [0, 1, 0, 1]
    expected = torch.zeros(len(seq.ids), dtype=torch.bool)
    expected[seq.input_image] = True
    expected[seq.output_image] = True
    assert torch.equal(inside[0], expected)  # markers, row-breaks, prompt and text are outside


def test_grid_positions_ignore_left_padding():
    space = FAMILY_A
    seq = Layout(space).build([5, 6], (2, 2), 2, input_codes=torch.zeros(2, 2, dtype=torch.long))
    padded = torch.cat([torch.full((4,), space.pad_id), seq.ids])[None]
    row, col, inside = image_grid_positions(padded, space)
    alone = image_grid_positions(seq.ids[None], space)
    assert torch.equal(inside[:, 4:], alone[2]) and not inside[:, :4].any()
    where = alone[2]  # the values that matter: those inside image spans
    assert torch.equal(row[:, 4:][where], alone[0][where])
    assert torch.equal(col[:, 4:][where], alone[1][where])


def test_family_without_row_breaks_is_refused():
    with pytest.raises(LayoutError, match="row-breaks"):
        image_grid_positions(torch.zeros(1, 4, dtype=torch.long), family_m())


def test_off_means_the_released_layout_and_config():
    config = tiny_config(300)
    model = MaskPredictor(config)
    assert not any("grid" in name for name in model.state_dict())
    assert "image_grid_size" not in config.to_dict()  # config.json written back unchanged
    assert ModelConfig.from_dict(config.to_dict()).image_grid_size == 0


def test_off_gives_the_same_logits_as_wte_alone():
    torch.manual_seed(0)
    model = MaskPredictor(tiny_config(300)).eval()
    ids = torch.randint(0, 300, (2, 10))
    with torch.no_grad():
        assert torch.equal(model.embed(ids), model.transformer.wte(ids))


def test_grid_tables_change_only_image_tokens(grid_pipe):
    pipe = grid_pipe
    seq = pipe.layout.build(
        pipe.text_tokenizer.encode(pipe.layout.prompt_text("edit", "Remove the star.")),
        (8, 8),
        4,
        input_codes=torch.zeros(8, 8, dtype=torch.long),
    )
    ids = seq.ids[None]
    with torch.no_grad():
        shift = pipe.model.embed(ids) - pipe.model.transformer.wte(ids)  # (1, L, d)
    moved = shift.abs().sum(-1)[0] > 0
    expected = torch.zeros(len(seq.ids), dtype=torch.bool)
    expected[seq.input_image] = True
    expected[seq.output_image] = True
    assert torch.equal(moved, expected)
    # the same cell of the input and the output image gets the same grid vector
    assert torch.allclose(shift[0, seq.input_image[9]], shift[0, seq.output_image[9]], atol=1e-5)


def test_grid_model_round_trips_through_save_and_load(tmp_path, grid_pipe):
    grid_pipe.model.save_pretrained(str(tmp_path / "ckpt"))
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["image_grid_size"] == 8
    loaded = MaskPredictor.from_pretrained(str(tmp_path / "ckpt"))
    ids = torch.randint(0, grid_pipe.space.vocab_size, (1, 30))
    ids[0, 3], ids[0, 12], ids[0, 20] = (
        grid_pipe.space.image_start_id,
        grid_pipe.space.row_break_id,
        grid_pipe.space.image_end_id,
    )
    with torch.no_grad():
        assert torch.equal(loaded(ids), grid_pipe.model(ids))


def test_grid_model_padded_row_matches_the_row_alone(grid_pipe):
    pipe = grid_pipe
    prompt = pipe.text_tokenizer.encode(pipe.layout.prompt_text("edit", "Remove the star."))
    longer = pipe.text_tokenizer.encode(pipe.layout.prompt_text("edit", "Please remove the star."))
    codes = torch.randint(0, pipe.space.codebook_size, (8, 8))
    seqs = [pipe.layout.build(p, (8, 8), 6, input_codes=codes) for p in (prompt, longer)]
    batch = pipe.layout.collate(seqs)
    with torch.no_grad():
        batched = pipe.model(batch.ids, batch.attention_mask)
        alone = pipe.model(seqs[0].ids[None])
    pad = batch.ids.shape[1] - len(seqs[0].ids)
    assert pad > 0
    assert torch.allclose(batched[0, pad:], alone[0], atol=1e-5)


def test_code_embeddings_start_from_the_codebook():
    torch.manual_seed(0)
    model = MaskPredictor(tiny_config(40, d_model=32))
    vectors = torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 0, 1.0], [0, 1.0, 0]])
    before = model.transformer.wte.weight.detach().clone()
    model.init_code_embeddings(vectors, image_offset=30)
    after = model.transformer.wte.weight.detach()
    assert torch.equal(after[:30], before[:30]) and torch.equal(after[34:], before[34:])
    codes = after[30:34]
    cos = torch.nn.functional.cosine_similarity
    assert cos(codes[0], codes[1], dim=0) > 0.9 > cos(codes[0], codes[2], dim=0)
    rms = before[30:34].pow(2).mean().sqrt()
    assert torch.allclose(codes.pow(2).mean(1).sqrt(), rms.expand(4), rtol=1e-4)
