"""A small CLIP of the shapes world, the reward model of ParaRL on the bundled model.

Pairs are (reasoning, output image) of `training_samples` (ShapeBench prompts never occur). Half of each batch is made partial the way ParaRL's rewards see answers mid-sampling:
with mask ratios t_text, t_image ~ U(0, 1) drawn per pair, each word of the reasoning is dropped
with probability t_text and each image token (a cell quadrant, one 8x8 patch of the vision
tower) is painted neutral grey with probability t_image. Training minimises CLIP's symmetric
InfoNCE loss over the batch. The text tower reads the world's word-level tokenizer and pools at
`</answer>`, appended to every text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from paradiff.shapes.dataset import training_samples
from paradiff.shapes.image_tokenizer import shapes_tokenizer
from paradiff.shapes.render import DEFAULT_CELL_PX
from paradiff.shapes.scene import DEFAULT_GRID
from paradiff.shapes.tasks import MAX_REASONING_TOKENS
from paradiff.shapes.tokenizer import PAD, build_text_tokenizer, save_text_tokenizer
from paradiff.training.rewards import PREPROCESSOR_FILE, clip_pixel_inputs, clip_text_inputs
from paradiff.trajectory import grey_out

CLIP_MEAN = (0.5, 0.5, 0.5)
CLIP_STD = (0.5, 0.5, 0.5)
EOS = "</answer>"
TRAINING_FILE = "clip_training.json"
SIZES: dict[str, int] = dict(hidden_size=64, intermediate_size=128, layers=2, heads=4)


def new_shapes_clip(vocab_size: int, eos_id: int, pad_id: int, seed: int = 0):
    """A randomly initialised CLIPModel sized for the shapes world (under 1 M parameters)."""
    from transformers import CLIPConfig, CLIPModel

    tower = dict(
        hidden_size=SIZES["hidden_size"],
        intermediate_size=SIZES["intermediate_size"],
        num_hidden_layers=SIZES["layers"],
        num_attention_heads=SIZES["heads"],
    )
    config = CLIPConfig(
        text_config=dict(
            tower,
            vocab_size=vocab_size,
            max_position_embeddings=MAX_REASONING_TOKENS + 16,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
            bos_token_id=pad_id,
        ),
        vision_config=dict(
            tower, image_size=2 * DEFAULT_GRID * (DEFAULT_CELL_PX // 2), patch_size=8
        ),
        projection_dim=SIZES["hidden_size"],
    )
    torch.manual_seed(seed)
    return CLIPModel(config)


class PairSource:
    """(reasoning, output image) pairs of shapes-world samples, made partial on request."""

    def __init__(self, n: int, seed: int) -> None:
        self.text_tokenizer = build_text_tokenizer()
        self.image_tokenizer = shapes_tokenizer(DEFAULT_CELL_PX)
        samples = list(training_samples(n, seed=seed))
        self.texts = [sample.reasoning for sample in samples]
        codes = torch.stack([self.image_tokenizer.scene_to_codes(s.scene_out) for s in samples])
        self.codes = codes  # (n, h, w)

    def batch(
        self, indices: list[int], partial: torch.Tensor, gen: torch.Generator
    ) -> tuple[list[str], torch.Tensor]:
        """Texts and images (B, 3, H, W) of `indices`; rows where `partial` is True get words
        dropped and image tokens greyed with per-pair mask ratios t ~ U(0, 1)."""
        texts, masks = [], []
        h, w = self.codes.shape[1:]
        for index, make_partial in zip(indices, partial.tolist(), strict=True):
            text, masked = self.texts[index], torch.zeros(h, w, dtype=torch.bool)
            if make_partial:
                t_text, t_image = torch.rand(2, generator=gen).tolist()
                ids = self.text_tokenizer.encode(text).ids
                keep = torch.rand(len(ids), generator=gen) >= t_text
                text = self.text_tokenizer.decode([i for i, k in zip(ids, keep, strict=True) if k])
                masked = torch.rand(h, w, generator=gen) < t_image
            texts.append(text)
            masks.append(masked)
        codes = self.codes[indices]
        pixels = self.image_tokenizer.decode(codes)  # (B, 3, H, W)
        return texts, grey_out(pixels, torch.stack(masks), self.image_tokenizer.downsample)


def retrieval_accuracy(model, texts, images, eos_id, pad_id, tokenizer) -> float:
    """Share of images whose most similar text (of the batch) is their own."""
    ids, mask = clip_text_inputs(tokenizer, texts, _max_length(model), eos_id, pad_id)
    pixels = clip_pixel_inputs(images, _image_size(model), CLIP_MEAN, CLIP_STD)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits_per_image
    return float((logits.argmax(1) == torch.arange(len(texts))).float().mean())


def _max_length(model) -> int:
    return int(model.config.text_config.max_position_embeddings)


def _image_size(model) -> int:
    return int(model.config.vision_config.image_size)


def train_shapes_clip(
    out: str | os.PathLike,
    steps: int = 500,
    batch_size: int = 64,
    lr: float = 2e-3,
    n_pairs: int = 20000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the shapes CLIP and save it (model, tokenizer, preprocessing, training summary) into
    `out`; return the summary (held-out retrieval accuracy on full and partial pairs)."""
    if steps < 1 or batch_size < 2 or n_pairs < batch_size:
        raise ValueError(
            f"need steps >= 1, batch size >= 2 and at least one batch of pairs, got {steps}, "
            f"{batch_size}, {n_pairs}"
        )
    source = PairSource(n_pairs, seed=seed)
    tokenizer = source.text_tokenizer
    eos_id, pad_id = tokenizer.token_to_id(EOS), tokenizer.token_to_id(PAD)
    model = new_shapes_clip(tokenizer.get_vocab_size(), eos_id, pad_id, seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    held_out = max(batch_size, n_pairs // 20)
    train_pool = n_pairs - held_out
    for _ in tqdm(range(steps), desc="shapes clip", disable=not progress):
        indices = torch.randperm(train_pool, generator=gen)[:batch_size].tolist()
        partial = torch.rand(batch_size, generator=gen) < 0.5
        texts, images = source.batch(indices, partial, gen)
        ids, mask = clip_text_inputs(tokenizer, texts, _max_length(model), eos_id, pad_id)
        pixels = clip_pixel_inputs(images, _image_size(model), CLIP_MEAN, CLIP_STD)
        loss = model(input_ids=ids, attention_mask=mask, pixel_values=pixels, return_loss=True).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    evaluation = list(range(train_pool, train_pool + batch_size))
    summary = {"steps": steps, "batch_size": batch_size, "lr": lr, "pairs": n_pairs, "seed": seed}
    for name, share in (("full", False), ("partial", True)):
        partial = torch.full((batch_size,), share)
        texts, images = source.batch(evaluation, partial, torch.Generator().manual_seed(seed + 1))
        accuracy = retrieval_accuracy(model, texts, images, eos_id, pad_id, tokenizer)
        summary[f"retrieval_{name}_of_{batch_size}"] = round(accuracy, 4)
    path = Path(out)
    model.save_pretrained(str(path))
    save_text_tokenizer(path, tokenizer)
    preprocessing = {"image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD)}
    (path / PREPROCESSOR_FILE).write_text(json.dumps(preprocessing, indent=1) + "\n")
    (path / TRAINING_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary
