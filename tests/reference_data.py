"""Reading the upstream reference folder, and writing folders of the same format for tests.

`write_llada_reference` builds a checkpoint of other sizes and seeds with paradiff's own
`save_pretrained` and computes its expected logits with `naive_llada_logits`, an independent
plain-math formulation of the LLaDA block (explicit softmax attention, RoPE as complex rotation),
so the reference tests can run on a folder the shipped sizes say nothing about.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from paradiff.layout import FAMILY_A, Layout
from paradiff.model import MaskPredictor
from paradiff.model_config import ModelConfig


def load_llada_reference(root: Path) -> dict:
    """expected.json + expected_logits of `root/llada_a`; KeyError/OSError on a malformed folder."""
    folder = root / "llada_a"
    expected = json.loads((folder / "expected.json").read_text())
    tensors = load_file(str(folder / "expected_logits.safetensors"))
    for key in ("input_ids", "logits_cols", "logits_argmax", "logits_logsumexp"):
        if key not in tensors:
            raise KeyError(f"{folder}/expected_logits.safetensors lacks {key}")
    for key in ("sequence", "logit_columns", "image_start", "image_end", "text_start", "text_end"):
        if key not in expected:
            raise KeyError(f"{folder}/expected.json lacks {key}")
    return {"folder": folder, "checkpoint": folder / "checkpoint", **expected, **tensors}


def naive_llada_logits(state: dict[str, torch.Tensor], cfg: dict, ids: list[int]) -> torch.Tensor:
    """Logits (L, V) of one unpadded sequence, written from the LLaDA equations directly."""
    d, n_heads = cfg["d_model"], cfg["n_heads"]
    n_kv, hd = cfg.get("n_kv_heads") or n_heads, cfg["d_model"] // cfg["n_heads"]
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    W = {k.removeprefix("model.transformer."): v.double() for k, v in state.items()}

    def rms(x, w):
        return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)

    def rope(x):  # x (H, L, hd): rotate pair (j, j + hd/2) by angle p * theta^(-2j/hd)
        L = x.shape[1]
        j = torch.arange(hd // 2, dtype=torch.float64)
        angle = torch.arange(L, dtype=torch.float64)[:, None] * theta ** (-2 * j / hd)
        z = torch.complex(x[..., : hd // 2], x[..., hd // 2 :]) * torch.polar(
            torch.ones_like(angle), angle
        )
        return torch.cat([z.real, z.imag], dim=-1)

    x = W["wte.weight"][torch.tensor(ids)]  # (L, d)
    for i in range(cfg["n_layers"]):
        b = f"blocks.{i}."
        h = rms(x, W[b + "attn_norm.weight"])
        q = (h @ W[b + "q_proj.weight"].T).view(-1, n_heads, hd).transpose(0, 1)
        k = (h @ W[b + "k_proj.weight"].T).view(-1, n_kv, hd).transpose(0, 1)
        v = (h @ W[b + "v_proj.weight"].T).view(-1, n_kv, hd).transpose(0, 1)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(n_heads // n_kv, 0)
        v = v.repeat_interleave(n_heads // n_kv, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), dim=-1) @ v  # (H, L, hd)
        x = x + att.transpose(0, 1).reshape(-1, d) @ W[b + "attn_out.weight"].T
        h = rms(x, W[b + "ff_norm.weight"])
        gate = h @ W[b + "ff_proj.weight"].T
        x = (
            x
            + (gate * torch.sigmoid(gate) * (h @ W[b + "up_proj.weight"].T))
            @ W[b + "ff_out.weight"].T
        )
    x = rms(x, W["ln_f.weight"])
    return (x @ W["ff_out.weight"].T).float()


def write_llada_reference(
    root: Path,
    seed: int,
    d_model: int = 48,
    n_layers: int = 3,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    grid: tuple[int, int] = (3, 5),
    text_length: int = 12,
    config_dtype_key: str = "torch_dtype",
    sampler_steps: tuple[tuple[int, int], ...] = ((6, 4), (12, 7)),
) -> Path:
    """Write `root/llada_a` in the reference format: a bf16 checkpoint and its expected logits."""
    gen = torch.Generator().manual_seed(seed)
    space = FAMILY_A
    config = ModelConfig(
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        n_layers=n_layers,
        mlp_hidden_size=2 * d_model,
        embedding_size=space.vocab_size,
        max_sequence_length=512,
        dtype="bfloat16",
        extra={"mask_token_id": space.mask_id, "text_vocab_size": space.image_offset},
    )
    model = MaskPredictor(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:  # norm weights around 1
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:  # unit-variance activations: std 1/sqrt(fan_in)
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
    folder = root / "llada_a"
    model.to(torch.bfloat16).save_pretrained(str(folder / "checkpoint"))
    cfg_path = folder / "checkpoint" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    dtype = cfg.pop("dtype")
    cfg.pop("torch_dtype")
    cfg[config_dtype_key] = dtype
    cfg_path.write_text(json.dumps(cfg))

    prompt = torch.randint(0, 100000, (9,), generator=gen).tolist()
    codes = torch.randint(0, space.codebook_size, grid, generator=gen)
    seq = Layout(space).build(
        prompt, grid, text_length, input_codes=codes, answer_end_ids=[99, 100]
    )
    state = {
        k: v.float() for k, v in load_file(str(folder / "checkpoint" / "model.safetensors")).items()
    }
    logits = naive_llada_logits(state, cfg, seq.ids.tolist())
    columns = sorted(
        set(torch.randint(0, space.vocab_size, (200,), generator=gen).tolist())
        | set(logits.argmax(-1).tolist())
        | {space.mask_id, space.image_offset}
    )
    save_file(
        {
            "input_ids": seq.ids,
            "logits_cols": logits[:, columns].contiguous(),
            "logits_argmax": logits.argmax(-1),
            "logits_logsumexp": logits.logsumexp(-1),
        },
        str(folder / "expected_logits.safetensors"),
    )
    expected = {
        "seed": seed,
        "d_model": d_model,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "vocab_size": space.vocab_size,
        "mask_id": space.mask_id,
        "newline_id": space.row_break_id,
        "image_offset": space.image_offset,
        "codebook_size": space.codebook_size,
        "grid_h": grid[0],
        "grid_w": grid[1],
        "text_gen_length": text_length,
        "sequence": seq.ids.tolist(),
        "image_start": int(seq.output_image[0]),
        "image_end": int(seq.output_image[-1]) + 2,
        "text_start": int(seq.text[0]),
        "text_end": int(seq.text[-1]) + 1,
        "logit_columns": columns,
        "sampler_settings": {"temperature": 0.0, "text_temperature": 0.0, "cfg_scale": 0.0},
    }
    spans = {"text_positions": seq.text.tolist(), "image_positions": seq.output_image.tolist()}
    model = MaskPredictor.from_pretrained(str(folder / "checkpoint"), dtype=torch.float32)

    def logits_fn(ids: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return model(torch.tensor([ids]))[0]

    expected["sampler_runs"] = [
        naive_reference_run(logits_fn, seq.ids.tolist(), spans, steps, timesteps)
        for steps, timesteps in sampler_steps
    ]
    (folder / "expected.json").write_text(json.dumps(expected))
    return root


def naive_reference_run(
    logits_fn, sequence: list[int], spans: dict, text_steps: int, timesteps: int
) -> dict:
    """The reference profile's rules (reference README) as plain per-position loops.

    `logits_fn(ids) -> (L, V)` logits; `spans` has image_positions (row-breaks excluded) and
    text_positions. Returns a run in the expected.json format, -1 where an image position is
    left masked.
    """
    space = FAMILY_A
    ids = list(sequence)
    text_positions, image_positions = spans["text_positions"], spans["image_positions"]
    N, S, T = len(text_positions), len(image_positions), text_steps
    image_steps = {round(T // 4 + (T - 1 - T // 4) * i / (timesteps - 1)) for i in range(timesteps)}
    states, remaining = [], N
    for s in range(T):
        states.append(list(ids))
        logits = logits_fn(ids).double()
        k = remaining - int(N * (1 - (s + 1) / T))
        remaining -= k
        scored = []
        for p in text_positions:
            if ids[p] != space.mask_id:
                continue
            probs = torch.softmax(logits[p], -1)
            candidate = int(probs.argmax())
            scored.append((float(probs[candidate]), p, candidate))
        scored.sort(key=lambda item: -item[0])
        text_writes = [(p, c) for _, p, c in scored[:k]]
        image_writes = []
        if s in image_steps:
            scored = []
            for p in image_positions:
                probs = torch.softmax(
                    logits[
                        p, space.image_offset : space.image_offset + space.codebook_size
                    ].float(),
                    -1,
                )
                candidate = int(probs.argmax())
                if ids[p] == space.mask_id:
                    confidence = math.log(float(probs[candidate]) + 1e-10)
                else:
                    confidence = float(torch.finfo(torch.float32).max)
                scored.append((confidence, p, candidate))
            unknown = sum(ids[p] == space.mask_id for p in image_positions)
            keep = max(1, min(unknown - 1, math.floor(S * math.cos(math.pi / 2 * (s + 1) / T))))
            scored.sort(key=lambda item: item[0])
            for _, p, candidate in scored[keep:]:
                if ids[p] == space.mask_id:
                    image_writes.append((p, candidate + space.image_offset))
        for p, value in text_writes + image_writes:
            ids[p] = value
    return {
        "text_steps": text_steps,
        "timesteps": timesteps,
        "text_tokens": [ids[p] for p in text_positions],
        "image_tokens": [
            ids[p] - space.image_offset if ids[p] != space.mask_id else -1 for p in image_positions
        ],
        "states_before_each_forward": states,
    }
