"""Family-A backbone and layout against the upstream reference data (PARADIFF_REFERENCE_DIR)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paradiff.layout import FAMILY_A, Layout
from paradiff.model import MaskPredictor
from tests.reference_data import load_llada_reference

pytestmark = pytest.mark.reference


def check_logits(root: Path) -> None:
    """Upstream logits for the reference sequence: alone, and padded inside a batch of two."""
    ref = load_llada_reference(root)
    model = MaskPredictor.from_pretrained(str(ref["checkpoint"]), dtype=torch.float32)
    ids = ref["input_ids"][None]  # (1, L)
    columns = torch.tensor(ref["logit_columns"])
    other = torch.randint(0, 1000, (1, 7))  # a shorter second row: the reference row is unpadded
    padded_ids = torch.cat([ids, torch.cat([torch.zeros(1, ids.shape[1] - 7).long(), other], 1)])
    mask = torch.ones_like(padded_ids)
    mask[1, : ids.shape[1] - 7] = 0
    # the same reference row left-padded behind the shorter one
    shifted = torch.cat([torch.zeros(1, 5).long(), ids], 1)
    with torch.no_grad():
        alone = model(ids)[0]
        in_batch = model(padded_ids, attention_mask=mask)[0]
        left_padded = model(
            torch.cat([shifted, torch.cat([ids, torch.zeros(1, 5).long()], 1)]),
            attention_mask=torch.cat(
                [
                    torch.cat([torch.zeros(1, 5), torch.ones_like(ids)], 1),
                    torch.cat([torch.ones_like(ids), torch.zeros(1, 5)], 1),
                ]
            ).long(),
        )
    for logits in (alone, in_batch, left_padded[0, 5:], left_padded[1, :-5]):
        assert (logits[:, columns] - ref["logits_cols"]).abs().max() <= 1e-4
        assert (logits.logsumexp(-1) - ref["logits_logsumexp"]).abs().max() <= 1e-4
        assert torch.equal(logits.argmax(-1), ref["logits_argmax"])


def check_layout(root: Path) -> None:
    """Our family-A builder reproduces the reference sequence and its spans."""
    ref = load_llada_reference(root)
    seq = ref["sequence"]
    space = FAMILY_A
    first_image = seq.index(space.image_start_id)
    first_image_end = seq.index(space.image_end_id)
    input_ids = [t for t in seq[first_image + 1 : first_image_end] if t != space.row_break_id]
    codes = torch.tensor(input_ids).view(ref["grid_h"], ref["grid_w"]) - space.image_offset
    prompt = seq[:first_image] + [seq[first_image_end + 1]]
    built = Layout(space).build(
        prompt,
        (ref["grid_h"], ref["grid_w"]),
        ref["text_gen_length"],
        input_codes=codes,
        answer_end_ids=seq[ref["text_end"] :],
    )
    assert built.ids.tolist() == seq
    assert int(built.output_image[0]) == ref["image_start"]
    assert seq[ref["image_end"]] == space.image_end_id
    assert int(built.output_image[-1]) < ref["image_end"]
    assert built.text.tolist() == list(range(ref["text_start"], ref["text_end"]))
    assert len(built.output_image) == ref["grid_h"] * ref["grid_w"]


def test_logits_match_reference(reference_root):
    check_logits(reference_root)


def test_layout_matches_reference(reference_root):
    check_layout(reference_root)


def test_reference_checks_hold_on_other_folders(other_reference_root):
    """The same checks on folders of the same format with other sizes, seeds and dtype keys."""
    check_logits(other_reference_root)
    check_layout(other_reference_root)


def test_malformed_reference_folder_fails(tmp_path):
    (tmp_path / "llada_a").mkdir()
    with pytest.raises(OSError):
        load_llada_reference(tmp_path)
