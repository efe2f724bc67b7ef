"""Sampler speed: paradiff's ParallelSampler (each speed preset) against a plain port of
upstream's sampling loop.

Both sample the same random family-A checkpoint (built here; the real 134548-id vocabulary) with
the upstream README's settings, alternately, in one process:

(a) paradiff: one forward per step with the unconditional rows in the same batch (only on the
    steps whose modality is guided), the output head run only at the positions and vocabulary
    slices a step reads;
(b) upstream-style: a port of upstream `generate_ti2ti`'s loop, written here only: a full forward
    with full-vocabulary logits at every position each step, two separate unconditional forwards
    (text and image) on every image step, per-position Python loops to read and write the image.

Printed: forwards per run, wall time of each run, the ratio, and paradiff's sampler overhead
1 - (time inside the model's forwards and head) / (total sampling time); then per speed preset
(`--speeds`): wall time, rows and positions computed per step, ratios to the upstream-style loop
and to exact mode; and (`--project`, `--project-only`) the FLOPs the same run takes on model shapes
up to the 8B one (d_model 4096, 32 layers, MLP 12288), counted from a run of the sampler at the
benchmark's sequence with a narrow model (`--image-size 512 --edit`: a 512x512 edit).

    python benchmarks/sampler_speed.py                      # d_model 256, 4 layers
    python benchmarks/sampler_speed.py --d-model 1024       # where the transformer body dominates
    python benchmarks/sampler_speed.py --speeds exact,fast,fastest --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from paradiff.layout import FAMILY_A, Batch, Layout
from paradiff.model import MaskPredictor
from paradiff.model_config import tiny_config
from paradiff.sampling import ParallelSampler, SamplerConfig
from paradiff.sampling.config import SAMPLER_FLAGS

SPACE = FAMILY_A
ANSWER_END_ID = 126355  # </answer>


def sampler_config(args: argparse.Namespace) -> SamplerConfig:
    """The exact-mode settings of the command line (greedy text)."""
    return SamplerConfig(
        text_steps=args.text_steps,
        image_steps=args.timesteps,
        text_gen_length=args.text_gen_length,
        text_block_length=args.text_block_length,
        text_temperature=0.0,
        image_temperature=args.temperature,
        cfg_text=args.cfg_scale,
        cfg_image=args.cfg_img,
        seed=args.seed,
    )


def speed_config(config: SamplerConfig, spec: str) -> SamplerConfig:
    """`config` under a --speeds entry: a preset, optionally with settings that win over it,
    `preset:key=value:...` (e.g. `fast:cache_refresh=8:image_steps=8`)."""
    kinds = {name: kind for name, kind, _ in SAMPLER_FLAGS.values()}  # each setting's type
    preset, *pairs = spec.split(":")
    changes = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        changes[key] = kinds[key](text)
    return config.replace(speed=preset, **changes)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--d-model", type=int, default=256, help="model width (default 256)")
    p.add_argument("--layers", type=int, default=4, help="transformer blocks (default 4)")
    p.add_argument("--head-dim", type=int, default=64, help="attention head size (default 64)")
    p.add_argument("--image-size", type=int, default=256, help="image side in pixels (256)")
    p.add_argument("--downsample", type=int, default=16, help="pixels per code (aMUSEd: 16)")
    p.add_argument("--prompt-length", type=int, default=48, help="prompt tokens (default 48)")
    p.add_argument("--text-gen-length", type=int, default=256, help="text tokens (default 256)")
    p.add_argument("--text-block-length", type=int, default=32, help="paradiff block (32)")
    p.add_argument("--text-steps", type=int, default=128, help="text steps (default 128)")
    p.add_argument("--timesteps", type=int, default=64, help="image steps (default 64)")
    p.add_argument("--cfg-scale", type=float, default=0.0, help="text CFG weight (default 0)")
    p.add_argument("--cfg-img", type=float, default=4.0, help="image CFG weight (default 4)")
    p.add_argument("--temperature", type=float, default=1.0, help="image temperature (1)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each, alternating (2)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--edit", action="store_true", help="an edit (input image in the prompt)")
    p.add_argument(
        "--speeds",
        default="exact",
        help="comma-separated presets, each optionally with settings that win over it "
        "(fast:cache_refresh=8:image_steps=8); default exact",
    )
    p.add_argument("--project", action="store_true", help="also project FLOPs on model shapes")
    p.add_argument("--project-only", action="store_true", help="only the FLOPs projection")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p.parse_args()


def build_model(args: argparse.Namespace) -> MaskPredictor:
    torch.manual_seed(args.seed)
    config = tiny_config(
        SPACE.vocab_size,
        d_model=args.d_model,
        n_heads=max(1, args.d_model // args.head_dim),
        n_layers=args.layers,
        mlp_hidden_size=3 * args.d_model,  # LLaDA-8B's ratio (4096 -> 12288)
        max_sequence_length=8192,
        model_type="llada",
    )
    model = MaskPredictor(config).eval()
    return model.to(device=args.device, dtype=getattr(torch, args.dtype))


def build_batch(args: argparse.Namespace) -> tuple[Batch, torch.Tensor]:
    """The paradiff batch (conditional row, then its unconditional twin) and the unconditional
    prompt ids for the upstream-style loop (which overwrites the prefix with them)."""
    gen = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, 126000, (args.prompt_length,), generator=gen).tolist()
    uncond = prompt[:8] + [SPACE.uncondition_id, prompt[-1]]  # system part, <uncondition>, </user>
    side = args.image_size // args.downsample
    layout = Layout(SPACE)
    codes = None  # an edit: a random input image of the output's size in the prompt
    if args.edit:
        codes = torch.randint(0, SPACE.codebook_size, (side, side), generator=gen)
    cond_seq, uncond_seq = (
        layout.build(ids, (side, side), args.text_gen_length, codes, answer_end_ids=[ANSWER_END_ID])
        for ids in (prompt, uncond)
    )
    return layout.collate([cond_seq, uncond_seq]), torch.tensor([uncond])


class ForwardTimer:
    """Wraps the model's forwards and head (instance attributes) to add up their time."""

    def __init__(self, model: MaskPredictor) -> None:
        self.seconds, self.calls = 0.0, 0
        self.sync = torch.cuda.synchronize if model.device.type == "cuda" else lambda: None
        for name in ("hidden_states", "partial_hidden_states", "logits"):
            setattr(model, name, self.timed(getattr(model, name)))

    def timed(self, fn: Callable) -> Callable:
        def wrapper(*a, **k):
            self.sync()
            start = time.perf_counter()
            out = fn(*a, **k)
            self.sync()
            self.seconds += time.perf_counter() - start
            return out

        return wrapper

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


# -- (b) the upstream-style loop (a port of generate_ti2ti's structure, for timing only) ---------
def upstream_style(
    model, input_ids, text_start, text_end, image_positions, uncond_prefix, args, generator
) -> tuple[torch.Tensor, int]:
    """One sampling run the way upstream's loop does it; returns (ids, model forwards)."""
    mask, offset, codebook = SPACE.mask_id, SPACE.image_offset, SPACE.codebook_size
    T, device = args.text_steps, input_ids.device
    ids = input_ids.clone()
    n_text = int((ids[:, text_start:text_end] == mask).sum(1)[0])
    transfer_counts, remaining = [], n_text
    for step in range(T):
        after = int(n_text * (1 - (step + 1) / T))
        transfer_counts.append(remaining - after)
        remaining = after
    image_steps = torch.linspace(T // 4, T - 1, args.timesteps).round().int().tolist()
    n_codes = len(image_positions)
    forwards = 0
    for step in range(T):
        logits = model(ids)  # (B, L, V): every position, the whole vocabulary
        forwards += 1
        text_masked = ids[:, text_start:text_end] == mask
        if text_masked.sum() > 0:
            text_logits = logits[:, text_start:text_end, :]
            x0 = text_logits.argmax(-1)  # text_temperature 0 (the README's)
            p = F.softmax(text_logits.to(torch.float64), dim=-1)
            x0_p = torch.gather(p, -1, x0[..., None])[..., 0]
            x0 = torch.where(text_masked, x0, ids[:, text_start:text_end])
            confidence = torch.where(text_masked, x0_p, -math.inf)
            transfer = torch.zeros_like(x0, dtype=torch.bool)
            for row in range(confidence.shape[0]):
                if transfer_counts[step] > 0:
                    _, chosen = torch.topk(confidence[row], k=transfer_counts[step])
                    transfer[row, chosen] = True
            ids[:, text_start:text_end][transfer] = x0[transfer]
        if step not in image_steps:
            continue
        codes = []
        for pos in image_positions:  # per-position reads
            token = ids[0, pos].item()
            codes.append(-1 if token == mask else max(0, min(token - offset, codebook - 1)))
        codes = torch.tensor(codes, device=device)[None]
        unknown = codes == -1
        cond = torch.cat(
            [logits[:, p : p + 1, offset : offset + codebook] for p in image_positions], 1
        )
        if args.cfg_scale > 0 or args.cfg_img > 0:
            uncond_text, uncond_image = ids.clone(), ids.clone()
            uncond_text[:, : uncond_prefix.shape[1]] = uncond_prefix
            uncond_image[:, : uncond_prefix.shape[1]] = uncond_prefix
            full_text, full_image = model(uncond_text), model(uncond_image)
            forwards += 2
            u_text = torch.cat(
                [full_text[:, p : p + 1, offset : offset + codebook] for p in image_positions], 1
            )
            u_image = torch.cat(
                [full_image[:, p : p + 1, offset : offset + codebook] for p in image_positions], 1
            )
        else:
            u_text = u_image = torch.zeros_like(cond)
        image_logits = cond
        if args.cfg_scale:
            image_logits = image_logits + args.cfg_scale * (cond - u_text)
        if args.cfg_img:
            image_logits = image_logits + args.cfg_img * (cond - u_image)
        probs = F.softmax(image_logits, dim=-1)
        if args.temperature == 0:
            sampled = probs.argmax(-1)
        else:
            flat = probs.reshape(-1, codebook)
            sampled = torch.multinomial(flat, 1, generator=generator)[:, 0].view(probs.shape[:-1])
        sampled = torch.where(unknown, sampled, codes).clamp(0, codebook - 1)
        chosen_p = torch.gather(probs, -1, sampled[..., None])[..., 0]
        chosen_p = torch.where(unknown, chosen_p, torch.finfo(chosen_p.dtype).max)
        ratio = (step + 1) / T
        mask_ratio = math.cos(ratio * math.pi / 2)
        mask_len = max(1, min(int(unknown.sum()) - 1, math.floor(n_codes * mask_ratio)))
        noise = torch.randn(chosen_p.shape, generator=generator, device=device)
        confidence = torch.log(chosen_p + 1e-10) + args.temperature * (1 - ratio) * noise
        order = confidence.sort(-1).indices
        keep_masked = torch.zeros_like(confidence, dtype=torch.bool)
        for row in range(confidence.shape[0]):
            keep_masked[row, order[row, :mask_len]] = True
        final = torch.where(keep_masked, -1, sampled)
        for i, pos in enumerate(image_positions):  # per-position writes
            value = final[0, i].item()
            ids[0, pos] = mask if value == -1 else int(value + offset)
    return ids, forwards


def main() -> None:
    args = parse_args()
    if args.project_only:
        report = {"args": vars(args), "projection": project(args, args.speeds.split(","))}
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
        return
    model = build_model(args)
    batch, uncond_prefix = build_batch(args)
    batch = batch.to(args.device)
    uncond_prefix = uncond_prefix.to(args.device)
    config = sampler_config(args)
    speeds = args.speeds.split(",")
    samplers = {
        speed: ParallelSampler(model, SPACE, speed_config(config, speed)) for speed in speeds
    }
    cond_ids = batch.ids[:1, batch.attention_mask[0].bool()]  # the conditional row, unpadded
    shift = batch.ids.shape[1] - cond_ids.shape[1]
    text = (batch.text - shift).tolist()
    image_positions = (batch.output_image - shift).tolist()
    timer = ForwardTimer(model)
    sync = timer.sync

    def run_paradiff(speed: str) -> dict:
        timer.reset()
        sync()
        start = time.perf_counter()
        out = samplers[speed](batch, n_cond=1, seeds=[args.seed])
        sync()
        wall = time.perf_counter() - start
        return dict(
            wall=wall,
            forward=timer.seconds,
            steps=len(out.plan),
            rows=out.forward_rows,
            positions=out.forward_positions,
            tokens=out.ids[0, batch.text.tolist() + batch.output_image.tolist()],
        )

    def run_upstream() -> dict:
        timer.reset()
        gen = torch.Generator(device=args.device).manual_seed(args.seed)
        sync()
        start = time.perf_counter()
        _, forwards = upstream_style(
            model, cond_ids, text[0], text[-1] + 1, image_positions, uncond_prefix, args, gen
        )
        sync()
        wall = time.perf_counter() - start
        positions = forwards * cond_ids.shape[1]
        return dict(
            wall=wall,
            forward=timer.seconds,
            steps=args.text_steps,
            rows=forwards,
            positions=positions,
        )

    print(
        f"model: d_model {args.d_model}, {args.layers} layers, vocab {SPACE.vocab_size}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
        f"{args.device} {args.dtype}, {torch.get_num_threads()} CPU threads"
    )
    side = args.image_size // args.downsample
    print(
        f"sequence: {cond_ids.shape[1]} tokens ({args.prompt_length} prompt, {side}x{side} image "
        f"codes, {args.text_gen_length} text); text_steps {args.text_steps}, timesteps "
        f"{args.timesteps}, cfg_scale {args.cfg_scale:g}, cfg_img {args.cfg_img:g}, "
        f"temperature {args.temperature:g}, text_temperature 0"
    )
    runs = {"upstream": run_upstream, **{s: (lambda s=s: run_paradiff(s)) for s in speeds}}
    results: dict[str, list[dict]] = {name: [] for name in runs}
    with torch.no_grad():
        for repeat in range(args.repeats):
            for name, run in runs.items():
                results[name].append(run())
                r = results[name][-1]
                print(
                    f"  repeat {repeat + 1}/{args.repeats} {name:>8}: {r['wall']:8.2f} s "
                    f"(forwards {r['forward']:8.2f} s)",
                    flush=True,
                )
    summary = summarise(results, speeds, cond_ids.shape[1])
    print(f"per run (median wall time of {args.repeats}); positions: rows x positions computed")
    print(
        f"  {'':>14} {'wall s':>9} {'steps':>6} {'rows':>6} {'positions/step':>15} "
        f"{'vs upstream':>12} {'vs exact':>9} {'overhead':>9} {'tokens = exact':>15}"
    )
    for name, row in summary.items():
        print(
            f"  {name:>14} {row['wall_s']:9.2f} {row['steps']:6d} {row['rows']:6d} "
            f"{row['positions_per_step']:15.0f} {row['vs_upstream']:11.2f}x "
            f"{row.get('vs_exact', float('nan')):8.2f}x {100 * row['overhead']:8.1f}% "
            f"{100 * row.get('same_as_exact', float('nan')):14.1f}%"
        )
    report = {"args": vars(args), "sequence": cond_ids.shape[1], "runs": summary}
    if args.project:
        report["projection"] = project(args, speeds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


def summarise(results: dict[str, list[dict]], speeds: list[str], length: int) -> dict:
    """Median wall time and the counts of each run; ratios to upstream and to exact mode."""
    wall = {name: statistics.median(r["wall"] for r in runs) for name, runs in results.items()}
    summary = {}
    for name, runs in results.items():
        first = runs[0]
        row = dict(
            wall_s=wall[name],
            steps=first["steps"],
            rows=first["rows"],
            positions_per_step=first["positions"] / first["steps"],
            vs_upstream=wall["upstream"] / wall[name],
            overhead=statistics.median(1 - r["forward"] / r["wall"] for r in runs),
        )
        if "exact" in results and name != "upstream":
            row["vs_exact"] = wall["exact"] / wall[name]
            exact_tokens = results["exact"][0]["tokens"]
            row["same_as_exact"] = float((first["tokens"] == exact_tokens).float().mean())
        summary[name] = row
    return summary


# -- FLOPs projections: count what each preset computes, then price it on a model shape ----------
SHAPES = {  # name -> (d_model, layers, MLP width); full multi-head attention (kv = d_model)
    "d256x4": (256, 4, 768),
    "d1024x8": (1024, 8, 3072),
    "8B": (4096, 32, 12288),
}


def flops(counts: dict[str, float], shape: tuple[int, int, int]) -> float:
    """FLOPs of the counted work on a shape: per query position and layer the projections
    2 (4 d^2) and the MLP 2 (3 d m), per query-key pair 4 d (scores and values), per output-head
    column 2 d."""
    d, layers, mlp = shape
    body = counts["queries"] * (8 * d * d + 6 * d * mlp) + counts["pairs"] * 4 * d
    return layers * body + counts["head"] * 2 * d


def project(args: argparse.Namespace, speeds: list[str]) -> dict:
    """FLOPs of one sampling run per preset and for the upstream-style loop on each of SHAPES.

    The sampler runs at the benchmark's sequence with a stand-in model that returns zeros, counting
    the query positions, query-key pairs and head columns every forward asks for (what is computed
    depends only on the settings and the schedule, not on the numbers); the upstream-style loop's
    counts follow from its forwards (full sequence and full vocabulary each)."""
    model = build_model(argparse.Namespace(**{**vars(args), "d_model": 16, "layers": 1}))
    batch, _ = build_batch(args)
    counts = {"queries": 0.0, "pairs": 0.0, "head": 0.0}
    d = model.config.d_model

    def count_full(ids, mask=None):
        counts["queries"] += ids.numel()
        counts["pairs"] += ids.numel() * ids.shape[1]
        return torch.zeros(*ids.shape, d)

    def count_partial(ids, cache, at=None, mask=None):
        queries = ids.shape[1] if at is None else at.shape[-1]
        counts["queries"] += ids.shape[0] * queries
        counts["pairs"] += ids.shape[0] * queries * ids.shape[1]
        return torch.zeros(ids.shape[0], queries, d)

    def count_head(hidden, positions=None, vocab_range=None):
        start, stop = vocab_range or (0, SPACE.vocab_size)
        counts["head"] += hidden.shape[0] * hidden.shape[1] * (stop - start)
        return torch.zeros(hidden.shape[0], hidden.shape[1], stop - start)

    model.hidden_states = count_full
    model.partial_hidden_states = count_partial
    model.logits = count_head
    length = int(batch.attention_mask[0].sum())
    image_steps = torch.linspace(args.text_steps // 4, args.text_steps - 1, args.timesteps)
    forwards = args.text_steps + 2 * len(set(image_steps.round().int().tolist()))
    upstream = dict(
        queries=forwards * length,
        pairs=forwards * length**2,
        head=forwards * length * SPACE.vocab_size,
    )
    config = sampler_config(args)
    work = {"upstream": upstream}
    with torch.no_grad():
        for speed in speeds:
            counts.update(queries=0.0, pairs=0.0, head=0.0)
            sampler = ParallelSampler(model, SPACE, speed_config(config, speed))
            sampler(batch, n_cond=1, seeds=[args.seed])
            work[speed] = dict(counts)
    side = args.image_size // args.downsample
    print(f"projected FLOPs, sequence {length} ({side}x{side} codes{', edit' * args.edit}):")
    projection = {"sequence": length, "counts": work, "shapes": {}}
    for name, shape in SHAPES.items():
        base = flops(upstream, shape)
        exact = flops(work["exact"], shape) if "exact" in work else None
        row = {}
        for speed in ["upstream", *speeds]:
            total = flops(work[speed], shape)
            row[speed] = dict(
                tflops=total / 1e12,
                vs_upstream=base / total,
                vs_exact=exact / total if exact else None,
                head_share=work[speed]["head"] * 2 * shape[0] / total,
            )
        projection["shapes"][name] = row
        cells = "  ".join(
            f"{k} {v['tflops']:.2f} TFLOPs ({v['vs_upstream']:.2f}x)" for k, v in row.items()
        )
        print(f"  {name:>8}: {cells}")
    return projection


if __name__ == "__main__":
    main()
