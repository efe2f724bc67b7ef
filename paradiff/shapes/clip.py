"""A small CLIP of the shapes world, the reward model of ParaRL on the bundled model.

Pairs are (reasoning, output image) of `training_samples` (ShapeBench prompts never occur). Half of
each batch is made partial the way ParaRL's rewards see answers mid-sampling: with mask ratios
t_text, t_image drawn per pair (one shared t ~ U(0, 1) for half of them, as the parallel sampler
reveals both modalities together; independent ones for the rest), each word of the reasoning is
dropped with probability t_text and each image token (a cell quadrant, one 8x8 patch of the
vision tower) is painted neutral grey with probability t_image.

With `hard_negatives`, every pair also brings a near-miss image: its scene with one of the cells
the reasoning speaks of moved, recoloured, replaced or swapped (`near_miss`), greyed like its
positive. The loss is CLIP's symmetric InfoNCE with those B extra images as further candidates of
every text: with unit embeddings t_i, v_j (j < B the positives, B <= j < 2B the near misses) and
the learned scale s,

    L = 1/2 [ CE(s t V^T, i) over the 2B images  +  CE(s v_i T^T, i) over the B texts ].

The text tower reads the world's word-level tokenizer and pools at `</answer>`, appended to every
text.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from paradiff.shapes.dataset import training_samples
from paradiff.shapes.image_tokenizer import shapes_tokenizer
from paradiff.shapes.render import DEFAULT_CELL_PX
from paradiff.shapes.scene import COLOUR_NAMES, DEFAULT_GRID, SHAPES, Obj, Pos, Scene
from paradiff.shapes.tasks import MAX_REASONING_TOKENS
from paradiff.shapes.tokenizer import PAD, build_text_tokenizer, save_text_tokenizer
from paradiff.training.rewards import (
    PREPROCESSOR_FILE,
    clip_pixel_inputs,
    clip_text_inputs,
    feature_tensor,
    quiet_transformers,
)
from paradiff.trajectory import grey_out

CLIP_MEAN = (0.5, 0.5, 0.5)
CLIP_STD = (0.5, 0.5, 0.5)
EOS = "</answer>"
TRAINING_FILE = "clip_training.json"
SIZES: dict[str, int] = dict(hidden_size=64, intermediate_size=128, layers=2, heads=4)


def new_shapes_clip(vocab_size: int, eos_id: int, pad_id: int, seed: int = 0):
    """A randomly initialised CLIPModel sized for the shapes world (under 1 M parameters)."""
    with quiet_transformers():
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


def near_miss(scene: Scene, cells: list[Pos], rng: random.Random) -> Scene:
    """`scene` with one of `cells` changed the way a near-miss answer would: its object moved to
    an empty cell, recoloured, replaced by another shape or swapped with another object (an
    empty named cell gets an object instead). Always differs from `scene`."""
    pos = rng.choice(cells)
    obj = scene.get(pos)
    if obj is None:
        return scene.with_cells({pos: Obj(rng.choice(SHAPES), rng.choice(COLOUR_NAMES))})
    empty = [p for p in scene.positions() if scene.get(p) is None]
    others = [(p, o) for p, o in scene.objects() if p != pos and o != obj]
    kinds = ["recolour", "replace"] + ["move"] * bool(empty) + ["swap"] * bool(others)
    kind = rng.choice(kinds)
    if kind == "recolour":
        colour = rng.choice([c for c in COLOUR_NAMES if c != obj.colour])
        return scene.with_cells({pos: Obj(obj.shape, colour)})
    if kind == "replace":
        return scene.with_cells(
            {pos: Obj(rng.choice([s for s in SHAPES if s != obj.shape]), obj.colour)}
        )
    if kind == "move":
        return scene.with_cells({pos: None, rng.choice(empty): obj})
    other_pos, other = rng.choice(others)
    return scene.with_cells({pos: other, other_pos: obj})


class PairSource:
    """(reasoning, output image) pairs of shapes-world samples, made partial on request, each with
    the cells its reasoning speaks of (an edit's changed cells, a generation's objects)."""

    def __init__(self, n: int, seed: int) -> None:
        self.text_tokenizer = build_text_tokenizer()
        self.image_tokenizer = shapes_tokenizer(DEFAULT_CELL_PX)
        samples = list(training_samples(n, seed=seed))
        self.texts = [sample.reasoning for sample in samples]
        self.scenes = [sample.scene_out for sample in samples]
        self.named = [list(sample.required_changes()) or [(0, 0)] for sample in samples]
        codes = torch.stack([self.image_tokenizer.scene_to_codes(s) for s in self.scenes])
        self.codes = codes  # (n, h, w)

    def masks(
        self, indices: list[int], partial: torch.Tensor, gen: torch.Generator
    ) -> tuple[list[str], torch.Tensor]:
        """Texts of `indices` and (B, h, w) grey masks; rows where `partial` is True get words
        dropped and image tokens greyed with mask ratios drawn as the module docstring says."""
        texts, masks = [], []
        h, w = self.codes.shape[1:]
        for index, make_partial in zip(indices, partial.tolist(), strict=True):
            text, masked = self.texts[index], torch.zeros(h, w, dtype=torch.bool)
            if make_partial:
                t_text, t_image, shared = torch.rand(3, generator=gen).tolist()
                if shared < 0.5:  # one timeline for both modalities
                    t_image = t_text
                ids = self.text_tokenizer.encode(text).ids
                keep = torch.rand(len(ids), generator=gen) >= t_text
                text = self.text_tokenizer.decode([i for i, k in zip(ids, keep, strict=True) if k])
                masked = torch.rand(h, w, generator=gen) < t_image
            texts.append(text)
            masks.append(masked)
        return texts, torch.stack(masks)

    def images(self, codes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) -> pixels (B, 3, H, W) with the masked tokens grey."""
        pixels = self.image_tokenizer.decode(codes)
        return grey_out(pixels, masks, self.image_tokenizer.downsample)

    def near_misses(self, indices: list[int], masks: torch.Tensor, gen: torch.Generator):
        """Images (B, 3, H, W): each pair's near miss (`near_miss`), greyed by its mask."""
        rng = random.Random(int(torch.randint(2**31 - 1, (1,), generator=gen)))
        scenes = [near_miss(self.scenes[i], self.named[i], rng) for i in indices]
        codes = torch.stack([self.image_tokenizer.scene_to_codes(s) for s in scenes])
        return self.images(codes, masks)


def retrieval_accuracy(model, texts, images, eos_id, pad_id, tokenizer) -> float:
    """Share of images whose most similar text (of the batch) is their own."""
    ids, mask = clip_text_inputs(tokenizer, texts, _max_length(model), eos_id, pad_id)
    pixels = clip_pixel_inputs(images, _image_size(model), CLIP_MEAN, CLIP_STD)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, pixel_values=pixels).logits_per_image
    return float((logits.argmax(1) == torch.arange(len(texts))).float().mean())


def embeddings(model, texts, images, eos_id, pad_id, tokenizer):
    """Unit text (B, D) and image (N, D) embeddings of the CLIP."""
    ids, mask = clip_text_inputs(tokenizer, texts, _max_length(model), eos_id, pad_id)
    pixels = clip_pixel_inputs(images, _image_size(model), CLIP_MEAN, CLIP_STD)
    text = model.get_text_features(input_ids=ids, attention_mask=mask)
    image = model.get_image_features(pixel_values=pixels)
    return F.normalize(feature_tensor(text), dim=-1), F.normalize(feature_tensor(image), dim=-1)


def contrastive_loss(model, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of B texts against N >= B images, the first B their own (the rest are
    extra candidates of every text, see the module docstring)."""
    scale = model.logit_scale.exp()
    logits = scale * text @ image.T  # (B, N)
    own = torch.arange(len(text))
    return (F.cross_entropy(logits, own) + F.cross_entropy(logits[:, : len(text)].T, own)) / 2


def near_miss_accuracy(model, texts, images, misses, eos_id, pad_id, tokenizer) -> float:
    """Share of texts more similar to their own image than to its near miss."""
    with torch.no_grad():
        text, image = embeddings(
            model, texts, torch.cat([images, misses]), eos_id, pad_id, tokenizer
        )
    own, miss = (text * image[: len(text)]).sum(-1), (text * image[len(text) :]).sum(-1)
    return float((own > miss).float().mean())


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
    hard_negatives: bool = True,
) -> dict[str, Any]:
    """Train the shapes CLIP and save it (model, tokenizer, preprocessing, training summary) into
    `out`; return the summary (held-out retrieval among the batch and near-miss accuracy, on full
    and partial pairs)."""
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
        texts, masks = source.masks(indices, partial, gen)
        images = source.images(source.codes[indices], masks)
        if hard_negatives:
            images = torch.cat([images, source.near_misses(indices, masks, gen)])
        text, image = embeddings(model, texts, images, eos_id, pad_id, tokenizer)
        contrastive_loss(model, text, image).backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    evaluation = list(range(train_pool, train_pool + batch_size))
    summary = {"steps": steps, "batch_size": batch_size, "lr": lr, "pairs": n_pairs, "seed": seed}
    summary["hard_negatives"] = hard_negatives
    for name, share in (("full", False), ("partial", True)):
        partial = torch.full((batch_size,), share)
        gen = torch.Generator().manual_seed(seed + 1)
        texts, masks = source.masks(evaluation, partial, gen)
        images = source.images(source.codes[evaluation], masks)
        accuracy = retrieval_accuracy(model, texts, images, eos_id, pad_id, tokenizer)
        summary[f"retrieval_{name}_of_{batch_size}"] = round(accuracy, 4)
        misses = source.near_misses(evaluation, masks, gen)
        beats = near_miss_accuracy(model, texts, images, misses, eos_id, pad_id, tokenizer)
        summary[f"near_miss_{name}"] = round(beats, 4)
    path = Path(out)
    with quiet_transformers():
        model.save_pretrained(str(path))
    save_text_tokenizer(path, tokenizer)
    preprocessing = {"image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD)}
    (path / PREPROCESSOR_FILE).write_text(json.dumps(preprocessing, indent=1) + "\n")
    (path / TRAINING_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    return summary
