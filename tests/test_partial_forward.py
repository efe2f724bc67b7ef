"""Partial forwards: a subset of positions against cached keys/values of the others."""

from __future__ import annotations

import pytest
import torch

from paradiff.model import MaskPredictor
from paradiff.model_config import tiny_config

VOCAB = 300
CLOSE = dict(atol=1e-10, rtol=0)


@pytest.fixture(scope="module")
def model() -> MaskPredictor:
    torch.manual_seed(0)
    config = tiny_config(VOCAB, d_model=32, n_heads=4, n_kv_heads=2, n_layers=3)
    return MaskPredictor(config).double().eval()  # GQA: 2 key/value heads for 4 query heads


def padded_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of 12 positions, the second left-padded by 4."""
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (2, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    return ids, mask


@torch.no_grad()
def test_full_partial_forward_equals_hidden_states_and_fills_the_cache(model):
    ids, mask = padded_batch()
    cache = model.new_cache(2, ids.shape[1])
    full = model.partial_hidden_states(ids, cache, None, mask)
    torch.testing.assert_close(full, model.hidden_states(ids, mask), **CLOSE)
    assert cache.store.abs().sum() > 0


@torch.no_grad()
def test_a_cache_of_fresh_values_gives_the_full_forwards_hidden_states(model):
    ids, mask = padded_batch()
    cache = model.new_cache(2, ids.shape[1])
    model.partial_hidden_states(ids, cache, None, mask)
    at = torch.tensor([[0, 3, 7, 11], [4, 5, 9, 10]])  # other positions in each row
    partial = model.partial_hidden_states(ids, cache, at, mask)  # (2, 4, d)
    full = model.hidden_states(ids, mask)
    torch.testing.assert_close(partial, full.gather(1, at[..., None].expand_as(partial)), **CLOSE)


@torch.no_grad()
def test_a_partial_forward_writes_its_positions_keys_with_their_rope_positions(model):
    """After new tokens at `at`, the first block's cached keys there are those of a full forward
    of the new sequence (they depend only on the token and its RoPE position)."""
    ids, mask = padded_batch()
    cache = model.new_cache(2, ids.shape[1])
    model.partial_hidden_states(ids, cache, None, mask)
    at = torch.tensor([[2, 8], [6, 11]])
    changed = ids.scatter(1, at, torch.tensor([[5, 6], [7, 8]]))
    model.partial_hidden_states(changed, cache, at, mask)
    fresh = model.new_cache(2, ids.shape[1])
    model.partial_hidden_states(changed, fresh, None, mask)
    torch.testing.assert_close(cache.store[0], fresh.store[0], **CLOSE)
    # deeper blocks' keys elsewhere are stale (they attended to the old tokens)
    assert not torch.allclose(cache.store[1], fresh.store[1])


@torch.no_grad()
def test_a_partial_forward_reads_the_cache(model):
    ids, mask = padded_batch()
    at = torch.tensor([[1, 2], [5, 6]])
    empty = model.new_cache(2, ids.shape[1])
    partial = model.partial_hidden_states(ids, empty, at, mask)
    full = model.hidden_states(ids, mask).gather(1, at[..., None].expand_as(partial))
    assert not torch.allclose(partial, full)


@torch.no_grad()
def test_fewer_rows_than_the_cache_use_its_first_rows(model):
    ids, mask = padded_batch()
    cache = model.new_cache(2, ids.shape[1])
    model.partial_hidden_states(ids, cache, None, mask)
    at = torch.tensor([3, 4, 5])  # the same positions in every row
    partial = model.partial_hidden_states(ids[:1], cache, at, mask[:1])
    torch.testing.assert_close(partial[0], model.hidden_states(ids, mask)[0, 3:6], **CLOSE)


@torch.no_grad()
def test_image_grid_positions_reach_the_partial_forward():
    """With image-grid positions on (the shapes models), the positions computed get the row and
    column embeddings of their place in the whole row's image span."""
    from paradiff.shapes.family import new_shapes_pipeline

    pipe = new_shapes_pipeline(seed=1, d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64)
    model = pipe.model.double().eval()
    assert model.config.image_grid_size
    layout = pipe.layout
    seq = layout.build([5, 6, 7], (3, 3), 4)
    ids = seq.ids[None]
    cache = model.new_cache(1, ids.shape[1])
    model.partial_hidden_states(ids, cache)
    at = seq.output_image[None]
    partial = model.partial_hidden_states(ids, cache, at)
    full = model.hidden_states(ids).gather(1, at[..., None].expand_as(partial))
    torch.testing.assert_close(partial, full, **CLOSE)


@torch.no_grad()
def test_a_row_slice_of_the_cache_serves_and_takes_those_rows(model):
    ids, mask = padded_batch()
    cache = model.new_cache(2, ids.shape[1])
    model.partial_hidden_states(ids, cache, None, mask)
    at = torch.tensor([[5, 6, 9]])
    changed = ids.scatter(1, torch.tensor([[0], [5]]), torch.tensor([[1], [2]]))
    partial = model.partial_hidden_states(changed[1:], cache.rows(1, 2), at, mask[1:])
    alone = model.new_cache(1, ids.shape[1])
    model.partial_hidden_states(ids[1:], alone, None, mask[1:])
    expected = model.partial_hidden_states(changed[1:], alone, at, mask[1:])
    torch.testing.assert_close(partial, expected, **CLOSE)
    torch.testing.assert_close(cache.store[:, :, 1:], alone.store, **CLOSE)  # written through
