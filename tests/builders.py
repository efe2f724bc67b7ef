"""Builders of tiny test artefacts (tokenizers, VQ models) written to a folder; no downloads.

Import from tests as `from tests.builders import build_test_text_tokenizer, build_tiny_vqmodel`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.processors import TemplateProcessing
from tokenizers.trainers import BpeTrainer

from paradiff.text_tokenizer import REQUIRED_SPECIAL_TOKENS

# Close to the spread of the random encoder's latents, so that many codes are in use.
CODEBOOK_STD = 0.3
TEST_BOS = "<|startoftext|>"
TEST_EOS = "<|endoftext|>"
TEST_PAD = "<|pad|>"
TRAINING_SENTENCES = (
    "Generate an image according to the text prompt.",
    "Generate an image applying the following editing instruction based on the original image.",
    "A red square to the left of a blue circle on a white background.",
    "Remove the green triangle and move the yellow star to the top right corner.",
    "The shape with three corners is recoloured in the colour of grass.",
    "Two small circles, one large square; the square is above both circles.",
)


def build_test_text_tokenizer(
    out_dir: str | Path,
    extra_special_tokens: Sequence[str] = (),
    *,
    omit_special_tokens: Sequence[str] = (),
) -> Path:
    """A byte-level BPE tokenizer (~400 ids) trained on a few sentences, saved to `out_dir`.

    Its added special tokens are BOS/EOS/PAD, the strings of `REQUIRED_SPECIAL_TOKENS` and
    `extra_special_tokens`, less `omit_special_tokens`; `tokenizer_config.json` names BOS/EOS/PAD.
    Its post-processor prepends BOS (which `TextTokenizer.encode` must not apply).
    Returns `out_dir`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specials = [TEST_BOS, TEST_EOS, TEST_PAD, *REQUIRED_SPECIAL_TOKENS, *extra_special_tokens]
    specials = [token for token in dict.fromkeys(specials) if token not in omit_special_tokens]
    tokenizer = Tokenizer(BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(TRAINING_SENTENCES, trainer)
    if TEST_BOS in specials:  # like LLaMA-style tokenizers, which prepend BOS when asked
        bos_id = tokenizer.token_to_id(TEST_BOS)
        tokenizer.post_processor = TemplateProcessing(
            single=f"{TEST_BOS} $A", special_tokens=[(TEST_BOS, bos_id)]
        )
    tokenizer.save(str(out_dir / "tokenizer.json"))
    config = {"bos_token": TEST_BOS, "eos_token": TEST_EOS, "pad_token": TEST_PAD}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out_dir


def build_tiny_vqmodel(
    out_dir: str | Path, lookup_from_codebook: bool = True, seed: int = 0
) -> Path:
    """A random diffusers VQModel shaped like aMUSEd's VQ, tiny, saved with `save_pretrained`.

    Two blocks (downsample 2), 4 latent channels, a 64-entry codebook drawn at the scale of the
    encoder's latents so that codes vary across an image; `mid_block_add_attention=False` and
    `force_upcast=False` as in aMUSEd's config, `lookup_from_codebook` as asked (aMUSEd: True).
    The same `seed` gives the same weights whatever the flags. Returns `out_dir`.
    """
    from diffusers import VQModel  # here: importing diffusers takes seconds

    out_dir = Path(out_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VQModel(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            block_out_channels=(8, 16),
            layers_per_block=1,
            act_fn="silu",
            latent_channels=4,
            sample_size=8,
            num_vq_embeddings=64,
            norm_num_groups=4,
            mid_block_add_attention=False,
            lookup_from_codebook=lookup_from_codebook,
            force_upcast=False,
        )
        torch.nn.init.normal_(model.quantize.embedding.weight, std=CODEBOOK_STD)
    model.save_pretrained(out_dir)
    return out_dir
