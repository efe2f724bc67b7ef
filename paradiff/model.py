"""MaskPredictor: the LLaDA "llama"-block bidirectional transformer (upstream weight layout).

One forward pass maps a token sequence to logits over the joint vocabulary (text ids, special ids
and image codes) at every position; masked positions are what the samplers and the training
objective read. Parameter names follow upstream (`model.transformer.blocks.{i}.q_proj.weight` …)
so released checkpoints load without renaming.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from paradiff.checkpoint import load_model, save_model
from paradiff.layout import image_grid_positions, token_space_from_config
from paradiff.model_config import ModelConfig


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode inside the block; its train/eval mode as before afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


class RMSNorm(nn.Module):
    """y = w * x / sqrt(mean(x^2) + eps), computed in float32 and cast back before the weight."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """NeoX half-split rotation: (x1, x2) -> (-x2, x1)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope_angles(
    positions: torch.Tensor, head_dim: int, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of angle(p, i) = p / theta^(2i/d) for positions (B, L) -> (B, 1, L, head_dim), fp32."""
    exponents = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float) / head_dim
    inv_freq = 1.0 / (theta**exponents)  # (head_dim / 2,)
    angles = positions.float()[..., None] * inv_freq  # (B, L, head_dim / 2)
    angles = torch.cat((angles, angles), dim=-1)[:, None]  # (B, 1, L, head_dim)
    return angles.cos(), angles.sin()


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, full_precision: bool
) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin for x (B, H, L, D); in float32 when `full_precision`."""
    work = x.float() if full_precision else x
    out = work * cos.to(work.dtype) + rotate_half(work) * sin.to(work.dtype)
    return out.to(x.dtype)


def rope_positions(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RoPE positions (B, L) counting real tokens only, and the key mask (B, 1, 1, L) (None
    without padding) broadcast over heads and queries."""
    B, L = input_ids.shape
    if attention_mask is None:
        return torch.arange(L, device=input_ids.device).expand(B, L), None
    attention_mask = attention_mask.to(device=input_ids.device, dtype=torch.bool)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, L)
    return positions, attention_mask[:, None, None, :]


class LayerCache:
    """One block's keys and values (B, H_kv, L, D) after RoPE, and the sequence positions (B, P)
    of the queries being computed (None: all L): `write` puts their fresh keys/values in place
    and returns the whole sequence's."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, at: torch.Tensor | None):
        self.keys, self.values, self.at = keys, values, at

    def write(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.at is None:
            self.keys.copy_(k)
            self.values.copy_(v)
        else:
            index = self.at[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[-1])
            self.keys.scatter_(2, index, k)
            self.values.scatter_(2, index, v)
        return self.keys, self.values


class KVCache:
    """Keys and values of every block for a batch of R rows of length L (in the model's dtype).

    A partial forward (`MaskPredictor.partial_hidden_states`) computes some positions and reads
    the others from here; it writes the positions it computes, so the cache holds the newest
    values of each position."""

    def __init__(self, store: torch.Tensor) -> None:
        self.store = store  # (layers, 2, R, H_kv, L, D)

    @classmethod
    def empty(cls, config: ModelConfig, rows: int, length: int, device, dtype) -> KVCache:
        shape = (config.n_layers, 2, rows, config.kv_heads, length, config.head_dim)
        return cls(torch.zeros(shape, device=device, dtype=dtype))

    def rows(self, start: int, stop: int) -> KVCache:
        """Rows start..stop of this cache, sharing its storage (a partial forward on them writes
        here)."""
        return KVCache(self.store[:, :, start:stop])

    def layers(self, rows: int, at: torch.Tensor | None) -> list[LayerCache]:
        """Per-block views of the first `rows` rows, writing the positions `at` (B, P)."""
        return [LayerCache(kv[0, :rows], kv[1, :rows], at) for kv in self.store]


class Block(nn.Module):
    """Pre-norm transformer block: bidirectional attention, then a SwiGLU MLP."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d, kv_dim = config.d_model, config.kv_heads * config.head_dim
        self.config = config
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv_dim, bias=False)
        self.v_proj = nn.Linear(d, kv_dim, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps)
        self.ff_proj = nn.Linear(d, config.hidden_size, bias=False)  # the gate
        self.up_proj = nn.Linear(d, config.hidden_size, bias=False)
        self.ff_out = nn.Linear(config.hidden_size, d, bias=False)

    def attention(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        key_mask: torch.Tensor | None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """Attention of the L positions of x against themselves, or (with `cache`) against every
        position of the cached sequence, their own keys/values written into it first."""
        cfg = self.config
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, cfg.n_heads, cfg.head_dim).transpose(1, 2)  # (B, H, L, D)
        k = self.k_proj(x).view(B, L, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, L, cfg.kv_heads, cfg.head_dim).transpose(1, 2)
        q = apply_rope(q, *rope, cfg.rope_full_precision)
        k = apply_rope(k, *rope, cfg.rope_full_precision)
        if cache is not None:
            k, v = cache.write(k, v)  # (B, H_kv, L_all, D)
        if cfg.kv_heads != cfg.n_heads:
            k = k.repeat_interleave(cfg.n_heads // cfg.kv_heads, dim=1)
            v = v.repeat_interleave(cfg.n_heads // cfg.kv_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)  # (B, H, L, D)
        return self.attn_out(y.transpose(1, 2).reshape(B, L, cfg.d_model))

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        key_mask: torch.Tensor | None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        x = x + self.attention(self.attn_norm(x), rope, key_mask, cache)
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class Transformer(nn.Module):
    """Holds the upstream-named modules: wte, blocks, ln_f, ff_out."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.embedding_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = RMSNorm(config.d_model, config.rms_norm_eps)
        if not config.weight_tying:
            self.ff_out = nn.Linear(config.d_model, config.embedding_size, bias=False)
        if config.image_grid_size:
            # paradiff's image-grid positions (off for the released models): e_row[r] + e_col[c]
            self.grid_row = nn.Embedding(config.image_grid_size, config.d_model)
            self.grid_col = nn.Embedding(config.image_grid_size, config.d_model)


class _Wrapper(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.transformer = Transformer(config)


class MaskPredictor(nn.Module):
    """The mask predictor p(x_0 | x_t): bidirectional transformer over the joint vocabulary.

    `forward(input_ids, attention_mask=None, logits_at=None, vocab_range=None)`:
    - `input_ids` (B, L) token ids.
    - `attention_mask` (B, L), 1 for real tokens and 0 for padding. Padded keys are ignored and
      RoPE positions count only real tokens, so a padded row gives the logits of the same row alone.
    - `logits_at` (B, P) or (P,) positions: the head runs only there and returns (B, P, V').
    - `vocab_range` (start, stop): only those vocabulary columns are computed (V' = stop - start).
    Returns float logits (B, L or P, V') in the model's dtype.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = _Wrapper(config)
        self.gradient_checkpointing = False
        self.space = token_space_from_config(config) if config.image_grid_size else None

    @property
    def transformer(self) -> Transformer:
        return self.model.transformer

    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.wte.weight.dtype

    def head_weight(self) -> torch.Tensor:
        """The output head's (V, d) weight (the embedding when weights are tied)."""
        t = self.transformer
        return t.wte.weight if self.config.weight_tying else t.ff_out.weight

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final normalised hidden states (B, L, d)."""
        positions, key_mask = rope_positions(input_ids, attention_mask)
        rope = rope_angles(positions, self.config.head_dim, self.config.rope_theta)
        x = self.embed(input_ids)  # (B, L, d)
        for block in self.transformer.blocks:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, rope, key_mask, use_reentrant=False)
            else:
                x = block(x, rope, key_mask)
        return self.transformer.ln_f(x)

    @torch.no_grad()
    def init_code_embeddings(self, code_vectors: torch.Tensor, image_offset: int, seed: int = 0):
        """Start the image codes' input embeddings from what the codes look like.

        code_vectors (K, F): the image tokenizer's codebook vectors (latents, or pixel patches).
        Row `image_offset + k` of wte becomes a fixed random projection of the standardised
        vector z_k = (c_k - mean) / std, rescaled to the embeddings' RMS, so codes that look
        alike (one colour, one texture) start out alike; training moves them freely after.
        """
        weight = self.transformer.wte.weight  # (V, d)
        count, features = code_vectors.shape
        z = code_vectors.float()
        z = (z - z.mean(0)) / (z.std(0) + 1e-3)  # (K, F)
        gen = torch.Generator().manual_seed(seed)
        projection = torch.randn(features, weight.shape[1], generator=gen)  # (F, d)
        rows = z @ projection  # (K, d)
        rms = weight[image_offset : image_offset + count].float().pow(2).mean().sqrt()
        rows = rows * rms / rows.pow(2).mean(1, keepdim=True).sqrt()
        weight[image_offset : image_offset + count] = rows.to(weight.dtype)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings (B, L, d): wte, plus e_row[r] + e_col[c] on image-span tokens when the
        config has image-grid positions (rows and columns past the tables share the last entry)."""
        x = self.transformer.wte(input_ids)  # (B, L, d)
        if self.space is None:
            return x
        row, col, inside = image_grid_positions(input_ids, self.space)  # (B, L) each
        last = self.config.image_grid_size - 1
        t = self.transformer
        grid = t.grid_row(row.clamp(0, last)) + t.grid_col(col.clamp(0, last))  # (B, L, d)
        return x + grid * inside[..., None].to(x.dtype)

    def new_cache(self, rows: int, length: int) -> KVCache:
        """An empty key/value cache for `rows` sequences of `length` tokens."""
        return KVCache.empty(self.config, rows, length, self.device, self.dtype)

    def partial_hidden_states(
        self,
        input_ids: torch.Tensor,
        cache: KVCache,
        at: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final hidden states (R, P, d) of the positions `at` (R, P) of `input_ids` (R, L),
        attending to every position: the keys/values of the others are read from `cache` (its
        first R rows), theirs are computed and written into it. `at=None` computes all L
        positions (a full forward that fills the cache) -> (R, L, d).

        RoPE positions and padded keys are those of the whole row, as in `hidden_states`; a cache
        holding the current values of the other positions gives `hidden_states`'s numbers."""
        positions, key_mask = rope_positions(input_ids, attention_mask)
        x = self.embed(input_ids)  # (R, L, d): grid positions need the whole row
        if at is not None:
            at = at.to(input_ids.device).expand(input_ids.shape[0], -1)  # (R, P)
            x = x.gather(1, at[..., None].expand(-1, -1, x.shape[-1]))  # (R, P, d)
            positions = positions.gather(1, at)
        rope = rope_angles(positions, self.config.head_dim, self.config.rope_theta)
        layers = cache.layers(x.shape[0], at)
        for block, layer in zip(self.transformer.blocks, layers, strict=True):
            x = block(x, rope, key_mask, layer)
        return self.transformer.ln_f(x)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        logits_at: torch.Tensor | None = None,
        vocab_range: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        h = self.hidden_states(input_ids, attention_mask)  # (B, L, d)
        return self.logits(h, logits_at, vocab_range)

    def logits(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor | None = None,
        vocab_range: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """The output head on hidden states (B, L, d), at `positions` (P,) or (B, P) only and
        for the columns [start, stop) of `vocab_range` only -> (B, P, V')."""
        if positions is not None:
            index = positions.to(hidden.device)
            if index.dim() == 1:
                hidden = hidden[:, index]  # (B, P, d)
            else:
                hidden = torch.gather(hidden, 1, index[..., None].expand(-1, -1, hidden.shape[-1]))
        weight = self.head_weight()
        if vocab_range is not None:
            weight = weight[vocab_range[0] : vocab_range[1]]
        return F.linear(hidden, weight)  # (B, P, V')

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str = "cpu",
        quantize: str | None = None,
    ) -> MaskPredictor:
        """Load an HF-style checkpoint directory (or hub id); see `paradiff.checkpoint`.
        `quantize` ('int8' / 'int4') streams the weights in, quantized (`paradiff.quantization`)."""
        return load_model(cls, path_or_hub_id, dtype=dtype, device=device, quantize=quantize)

    def save_pretrained(self, directory: str, max_shard_bytes: int | None = None) -> None:
        """Write config.json and safetensors weights atomically; see `paradiff.checkpoint`."""
        save_model(self, directory, max_shard_bytes=max_shard_bytes)
