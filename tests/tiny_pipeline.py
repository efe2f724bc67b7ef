"""A tiny random family-A-template pipeline (test BPE tokenizer, tiny VQModel) for end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import torch

from paradiff.image_tokenizers.amused import AmusedTokenizer
from paradiff.layout import TOKEN_SPACE_KEY, TokenSpace
from paradiff.model import MaskPredictor
from paradiff.model_config import tiny_config
from paradiff.pipeline import ParallelPipeline
from paradiff.sampling import SamplerConfig
from paradiff.text_tokenizer import TextTokenizer
from tests.builders import TEST_EOS, TEST_PAD, build_test_text_tokenizer, build_tiny_vqmodel

EXTRA_SPECIALS = ("<mask>", "<image>", "</image>", "<answer>", "<br>")
SMALL_SAMPLER = SamplerConfig(
    text_steps=8,
    image_steps=4,
    text_gen_length=8,
    text_block_length=4,
    image_temperature=1.0,
    cfg_image=2.0,
    seed=3,
)


def build_tiny_pipeline(directory: Path, seed: int = 0, max_sequence_length: int = 1024) -> Path:
    """Write a loadable checkpoint directory: random model, tokenizer, VQ, sampler settings."""
    tok_dir = build_test_text_tokenizer(directory / "_tok", extra_special_tokens=EXTRA_SPECIALS)
    text = TextTokenizer.from_pretrained(tok_dir)
    vq = AmusedTokenizer.from_pretrained(build_tiny_vqmodel(directory / "_vq", seed=seed))
    sid = text.special_id
    space = TokenSpace(
        family="A",
        mask_id=sid("<mask>"),
        image_offset=text.vocab_size,
        codebook_size=vq.codebook_size,
        image_start_id=sid("<image>"),
        image_end_id=sid("</image>"),
        pad_id=sid(TEST_PAD),
        text_fill_id=sid(TEST_EOS),
        row_break_id=sid("<br>"),
        answer_start_id=sid("<answer>"),
        uncondition_id=sid("<uncondition>"),
    )
    torch.manual_seed(seed)
    config = tiny_config(
        space.vocab_size,
        d_model=32,
        n_heads=2,
        mlp_hidden_size=64,
        max_sequence_length=max_sequence_length,
        extra={TOKEN_SPACE_KEY: space.to_dict()},
    )
    pipe = ParallelPipeline(MaskPredictor(config).eval(), text, vq, SMALL_SAMPLER, (16, 16))
    pipe.save_pretrained(directory / "model")
    return directory / "model"
