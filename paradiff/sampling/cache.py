"""The forwards of the fast settings: cached keys/values, partial passes, reused guidance.

Approximations of the exact step (a full forward of every row each step), each a setting:
- `cache_refresh` r: every r-th step runs the full forward and refills the key/value cache; the
  steps between compute only the positions the step decodes (the open text block, the output
  image) against the cached keys/values of the rest: the prompt and input image (a prefix cache),
  the closed text blocks and the image on text steps (Fast-dLLM's dual cache), the text on image
  steps. The positions computed write their fresh keys/values into the cache.
- `guidance_reuse` k: the unconditional rows run on every k-th guided step only; between, the
  guidance residual d = h_c - h_u of the last one stands in: h_u := h_c - d, so the guided
  hidden state l_u + (1 + w)(h_c - h_u) is h_c + w d.
Everything stays on the device: the positions are fixed per step kind (no data-dependent shape),
so the loop needs no host synchronisation.
"""

from __future__ import annotations

import torch

from paradiff.layout import Batch
from paradiff.model import MaskPredictor
from paradiff.sampling.config import SamplerConfig


class CachedForward:
    """The hidden states (R, L, d) each step reads, for one sampler run over `batch`."""

    def __init__(self, model: MaskPredictor, config: SamplerConfig, batch: Batch, n_cond: int):
        self.model, self.config, self.batch, self.n_cond = model, config, batch, n_cond
        rows, length = batch.ids.shape
        self.hidden = torch.zeros(rows, length, model.config.d_model, device=model.device)
        self.hidden = self.hidden.to(model.dtype)  # the newest hidden state of every position
        self.cache = model.new_cache(rows, length) if config.cache_refresh else None
        self.filled_rows = 0  # rows whose cache a full forward has filled
        self.residual: torch.Tensor | None = None  # (n_cond, L, d) h_c - h_u
        self.guided_steps = 0
        forward = model.partial_hidden_states
        if config.compile and model.device.type == "cuda":
            forward = torch.compile(forward, dynamic=True)
        self.forward = forward

    def __call__(
        self, step: int, ids: torch.Tensor, wants_uncond: bool, decoded: list[torch.Tensor]
    ) -> tuple[torch.Tensor, int, int]:
        """Hidden states for step `step` of `ids` (R, L); `decoded` are the sequence positions
        (P,) the step reads. Returns (hidden (R, L, d), rows computed, positions computed)."""
        cfg, n = self.config, self.n_cond
        run_uncond = wants_uncond and (
            cfg.guidance_reuse == 0 or self.guided_steps % cfg.guidance_reuse == 0
        )
        self.guided_steps += wants_uncond
        rows = 2 * n if run_uncond else n
        length = ids.shape[1]
        full = self.cache is None or step % cfg.cache_refresh == 0 or rows > self.filled_rows
        if full and self.cache is not None and self.filled_rows == 0:
            rows = ids.shape[0]  # the first fill takes every row (later steps may need them)
        mask = self.batch.attention_mask[:rows]
        if self.cache is None:
            self.hidden[:rows] = self.model.hidden_states(ids[:rows], mask)
            computed = rows * length
        elif full:
            self.hidden[:rows] = self.forward(ids[:rows], self.cache, None, mask)
            self.filled_rows = max(self.filled_rows, rows)
            computed = rows * length
        else:
            at = torch.cat(decoded)  # (P,)
            self.hidden[:rows, at] = self.forward(ids[:rows], self.cache, at, mask)
            computed = rows * len(at)
        if run_uncond and cfg.guidance_reuse:
            self.residual = self.hidden[:n] - self.hidden[n:]
        elif wants_uncond and self.residual is not None:
            self.hidden[n:] = self.hidden[:n] - self.residual
        return self.hidden, rows, computed
