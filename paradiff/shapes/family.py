"""Family S: the shapes world's token space and freshly initialised shapes-world pipelines.

Token space S uses the `<system>…<answer>` template of family A with the world's word-level
vocabulary (special ids 0..12, `paradiff.shapes.tokenizer.SPECIAL_TOKENS`) and the quadrant
codebook at `image_offset = len(text vocabulary)`. The reasoning is followed by `</answer>` in
every remaining text position, so `</answer>` is both the fill and the end marker.
"""

from __future__ import annotations

from typing import Any

import torch

from paradiff.layout import TOKEN_SPACE_KEY, TokenSpace
from paradiff.model import MaskPredictor
from paradiff.model_config import tiny_config
from paradiff.pipeline import ParallelPipeline
from paradiff.sampling import SamplerConfig
from paradiff.shapes.image_tokenizer import ShapesImageTokenizer, shapes_tokenizer
from paradiff.shapes.render import DEFAULT_CELL_PX
from paradiff.shapes.sample import SYSTEM_PROMPTS
from paradiff.shapes.scene import DEFAULT_GRID
from paradiff.shapes.tasks import MAX_INSTRUCTION_TOKENS, MAX_REASONING_TOKENS
from paradiff.shapes.tokenizer import MASK, PAD, build_text_tokenizer
from paradiff.text_tokenizer import TextTokenizer

TEXT_GEN_LENGTH = MAX_REASONING_TOKENS  # 48 text positions: the longest reasoning fits
SHAPES_SAMPLER = SamplerConfig(
    text_steps=TEXT_GEN_LENGTH,  # one text token per step: two per step break the sentences
    image_steps=TEXT_GEN_LENGTH,  # an image reveal on every step of the text's timeline
    text_gen_length=TEXT_GEN_LENGTH,
    text_block_length=TEXT_GEN_LENGTH // 3,
    text_temperature=0.0,
    image_temperature=0.0,
    cfg_text=0.0,
    cfg_image=0.0,
    seed=0,
)
MODEL_SIZES: dict[str, Any] = dict(d_model=128, n_heads=4, n_layers=6, mlp_hidden_size=352)
# Family S's other defaults: RoPE theta for ~230-token sequences (not the 8B models' 5e5), and
# image-grid positions for the 8 x 8 code grid (docs/results.md: what they do for locating).
MODEL_DEFAULTS: dict[str, Any] = dict(rope_theta=1.0e4, image_grid_size=2 * DEFAULT_GRID)


def shapes_token_space(text: TextTokenizer, codebook_size: int) -> TokenSpace:
    """Family S ids read from the world's text tokenizer."""
    sid = text.special_id
    return TokenSpace(
        family="S",
        mask_id=sid(MASK),
        image_offset=text.vocab_size,
        codebook_size=codebook_size,
        image_start_id=sid("<image>"),
        image_end_id=sid("</image>"),
        pad_id=sid(PAD),
        text_fill_id=sid("</answer>"),
        row_break_id=sid("<br>"),
        answer_start_id=sid("<answer>"),
        uncondition_id=sid("<uncondition>"),
        edit_system_prompt=SYSTEM_PROMPTS["edit"],
        generate_system_prompt=SYSTEM_PROMPTS["generation"],
    )


def max_sequence_tokens(grid: int = DEFAULT_GRID) -> int:
    """Longest family-S editing sequence: prompt, input and output image rows, text."""
    codes = 2 * grid
    image = codes * (codes + 1) + 2  # rows with row-breaks, <image> </image>
    prompt = 8 + 6 + MAX_INSTRUCTION_TOKENS  # markers, system prompt words, instruction
    return prompt + 2 * image + 2 + TEXT_GEN_LENGTH + 1


def new_shapes_pipeline(seed: int = 0, cell_px: int = DEFAULT_CELL_PX, **sizes: Any):
    """A randomly initialised shapes-world pipeline (the starting point of SFT).

    `sizes` override ModelConfig fields (MODEL_SIZES, MODEL_DEFAULTS); image-code embeddings
    start from the codebook's pixels (`MaskPredictor.init_code_embeddings`)."""
    text = TextTokenizer(
        build_text_tokenizer(),
        {"pad_token": PAD, "mask_token": MASK},
        required_special_tokens=(),
        source="shapes tokenizer",
    )
    image: ShapesImageTokenizer = shapes_tokenizer(cell_px)
    space = shapes_token_space(text, image.codebook_size)
    config = tiny_config(
        space.vocab_size,
        **{
            **MODEL_SIZES,
            **MODEL_DEFAULTS,
            "max_sequence_length": 2 * max_sequence_tokens(),
            **sizes,
        },
        extra={TOKEN_SPACE_KEY: space.to_dict()},
    )
    torch.manual_seed(seed)
    model = MaskPredictor(config).eval()
    # codes of one colour start alike: the embeddings begin as a projection of their pixels
    model.init_code_embeddings(image.codebook.flatten(1).float() / 255.0, space.image_offset, seed)
    side = DEFAULT_GRID * cell_px
    return ParallelPipeline(model, text, image, SHAPES_SAMPLER, (side, side), fixed_size=True)
