"""Sampler fingerprint: one hash of the sampler's outputs over a grid of settings.

Run it before and after a change that must not change what the sampler writes (a refactor, a new
setting whose default is off); the two printed digests must be equal. Each line is one setting
(profile, mode, temperatures, remasking, guidance, a padded batch of two); the last line hashes
them all. The model is a small random float32 checkpoint built here, on the CPU.

    python benchmarks/sampler_fingerprint.py
"""

from __future__ import annotations

import hashlib

import torch

from paradiff.layout import Layout, TokenSpace
from paradiff.model import MaskPredictor
from paradiff.model_config import tiny_config
from paradiff.sampling import ParallelSampler, SamplerConfig

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
BASE = dict(
    text_steps=8,
    image_steps=5,
    text_gen_length=8,
    text_block_length=4,
    text_temperature=0.0,
    image_temperature=1.0,
    cfg_text=0.0,
    cfg_image=2.0,
    seed=0,
)
SETTINGS: dict[str, dict] = {
    "default": {},
    "text-temperature": dict(text_temperature=0.8),
    "random-remasking": dict(remasking="random", text_temperature=0.5),
    "text-cfg": dict(cfg_text=1.5),
    "greedy-image": dict(image_temperature=0.0),
    "sequential": dict(mode="sequential"),
    "more-image-steps": dict(image_steps=11),
    "reference": dict(profile="reference", text_block_length=8),
    "reference-temperature": dict(
        profile="reference", text_block_length=8, text_temperature=0.7, image_temperature=1.2
    ),
    "reference-random": dict(profile="reference", text_block_length=8, remasking="random"),
}


def build_model() -> MaskPredictor:
    torch.manual_seed(0)
    config = tiny_config(SPACE.vocab_size, d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64)
    return MaskPredictor(config).eval()


def build_batch(prompt_lengths: list[int]):
    layout = Layout(SPACE)
    gen = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 40, (n,), generator=gen).tolist() + [7] for n in prompt_lengths]
    cond = [layout.build(p, GRID, BASE["text_gen_length"]) for p in prompts]
    uncond = [layout.build([3, SPACE.uncondition_id, 7], GRID, BASE["text_gen_length"])] * len(cond)
    return layout.collate(cond + uncond)


def fingerprint(model: MaskPredictor, changes: dict) -> str:
    config = SamplerConfig(**{**BASE, **changes})
    digest = hashlib.sha256()
    for lengths, seeds in (([5], [0]), ([3, 7], [1, 2])):
        out = ParallelSampler(model, SPACE, config)(
            build_batch(lengths), n_cond=len(lengths), seeds=seeds
        )
        for tensor in (out.ids, out.trajectory, out.image_codes, out.text_tokens):
            digest.update(tensor.to(torch.int64).numpy().tobytes())
        digest.update(str(out.forward_rows).encode())
    return digest.hexdigest()[:16]


def main() -> None:
    model = build_model()
    total = hashlib.sha256()
    for name, changes in SETTINGS.items():
        digest = fingerprint(model, changes)
        total.update(digest.encode())
        print(f"{name:>22}  {digest}")
    print(f"{'all':>22}  {total.hexdigest()[:16]}")


if __name__ == "__main__":
    main()
