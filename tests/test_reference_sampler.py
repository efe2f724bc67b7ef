"""The sampler's reference profile against upstream generate_ti2ti runs (PARADIFF_REFERENCE_DIR)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from paradiff.layout import FAMILY_A, Layout
from paradiff.model import MaskPredictor
from paradiff.sampling import ParallelSampler, SamplerConfig
from tests.reference_data import load_llada_reference

pytestmark = pytest.mark.reference


def reference_batch(ref: dict):
    seq, space = ref["sequence"], FAMILY_A
    first_image, first_end = seq.index(space.image_start_id), seq.index(space.image_end_id)
    grid = (ref["grid_h"], ref["grid_w"])
    codes = [t for t in seq[first_image + 1 : first_end] if t != space.row_break_id]
    layout = Layout(space)
    built = layout.build(
        seq[:first_image] + [seq[first_end + 1]],
        grid,
        ref["text_gen_length"],
        input_codes=torch.tensor(codes).view(grid) - space.image_offset,
        answer_end_ids=seq[ref["text_end"] :],
    )
    return layout.collate([built])


def check_sampler_runs(root: Path) -> None:
    ref = load_llada_reference(root)
    if not ref.get("sampler_runs"):
        raise KeyError(f"{root}/llada_a/expected.json has no sampler_runs")
    model = MaskPredictor.from_pretrained(str(ref["checkpoint"]), dtype=torch.float32)
    batch = reference_batch(ref)
    for run in ref["sampler_runs"]:
        config = SamplerConfig(
            text_steps=run["text_steps"],
            image_steps=run["timesteps"],
            text_gen_length=ref["text_gen_length"],
            text_block_length=ref["text_gen_length"],
            text_temperature=0.0,
            image_temperature=0.0,
            cfg_text=0.0,
            cfg_image=0.0,
            profile="reference",
        )
        out = ParallelSampler(model, FAMILY_A, config)(batch)
        states = run["states_before_each_forward"]
        assert len(states) == len(out.plan) == run["text_steps"]
        for step, expected in enumerate(states):
            ours = batch.ids[0].clone()
            ours[out.answer_start :] = out.trajectory[step, 0].long()
            assert ours.tolist() == expected, f"state before forward {step} differs"
        assert out.text_tokens[0].tolist() == run["text_tokens"]
        codes = out.image_codes[0].flatten().tolist()
        for ours, theirs in zip(codes, run["image_tokens"], strict=True):
            assert theirs == -1 or ours == theirs
        # upstream leaves positions masked (-1); paradiff fills every one
        assert all(0 <= c < FAMILY_A.codebook_size for c in codes)


def test_reference_profile_reproduces_upstream(reference_root):
    check_sampler_runs(reference_root)


def test_reference_profile_on_other_folders(other_reference_root):
    check_sampler_runs(other_reference_root)
