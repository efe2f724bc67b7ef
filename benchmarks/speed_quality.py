"""Quality of the sampler's speed presets on the bundled model (ShapeBench), against exact mode.

For each preset: `paradiff bench shapebench --limit N --speed S --out RUNS/S`, greedy with one
answer per prompt whatever the model ships (`GREEDY`; resumable: a rerun skips the samples
already scored), then
- the six metrics with their 95% bootstrap intervals (the run's own summary.json);
- the paired difference preset - exact per metric, with a 95% bootstrap interval over samples;
- the share of output tokens equal to exact mode's: image codes (the shapes tokenizer pastes one
  codebook patch per code, so equal patches are equal codes) and reasoning-text tokens, position by
  position (the longer text's length counts);
- the wall time of the bench run (model load included).

    python benchmarks/speed_quality.py --limit 24 --json benchmarks/results/quality.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from paradiff.bench.report import paired_differences
from paradiff.bench.runner import BenchFolder
from paradiff.checkpoint import bundled_model_dir
from paradiff.pipeline import ParallelPipeline
from paradiff.shapes.judge import METRICS

SPEEDS = ("exact", "fast", "fastest")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--limit", type=int, default=24, help="ShapeBench samples (default 24)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per sampler run (8)")
    p.add_argument("--runs", default=None, help="run folders here (resumed; default: fresh ones)")
    p.add_argument("--speeds", default=",".join(SPEEDS), help="presets (exact first)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--timesteps", type=int, default=None, help="image steps (the model's)")
    return p.parse_args()


# Greedy, one answer per prompt: the token comparison needs a deterministic exact run.
GREEDY = ("--text-temperature", "0", "--temperature", "0", "--best-of", "1")


def bench(speed: str, args: argparse.Namespace) -> float:
    """Run (or resume) ShapeBench with one preset; returns the wall time in seconds."""
    paradiff = str(Path(sys.executable).parent / "paradiff")
    command = [paradiff, "bench", "shapebench", "--limit", str(args.limit)]
    command += ["--batch-size", str(args.batch_size), "--speed", speed, "--device", "cpu"]
    command += [*GREEDY, "--out", str(Path(args.runs) / speed), "--json"]
    if args.timesteps is not None:
        command += ["--timesteps", str(args.timesteps)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def same_tokens(exact: dict, other: dict, root: Path, pipe: ParallelPipeline) -> dict[str, float]:
    """Shares of image codes and text tokens equal to exact mode's, over the common samples."""
    patch = pipe.image_tokenizer.downsample
    image_equal = image_total = text_equal = text_total = 0
    for sample_id, record in other.items():
        reference = exact[sample_id]
        a = np.asarray(Image.open(root / "exact" / reference["image"]).convert("RGB"))
        b = np.asarray(Image.open(root / record["_speed"] / record["image"]).convert("RGB"))
        h, w = a.shape[0] // patch, a.shape[1] // patch
        pa = a[: h * patch, : w * patch].reshape(h, patch, w, patch, 3)
        pb = b[: h * patch, : w * patch].reshape(h, patch, w, patch, 3)
        image_equal += int((pa == pb).all(axis=(1, 3, 4)).sum())
        image_total += h * w
        ta = pipe.text_tokenizer.encode(reference["text"])
        tb = pipe.text_tokenizer.encode(record["text"])
        text_equal += sum(x == y for x, y in zip(ta, tb, strict=False))
        text_total += max(len(ta), len(tb), 1)
    return {"image": image_equal / image_total, "text": text_equal / text_total}


def main() -> None:
    args = parse_args()
    speeds = args.speeds.split(",")
    root = Path(args.runs or tempfile.mkdtemp(prefix="speed-quality-"))
    args.runs = str(root)
    print(f"run folders in {root}", flush=True)
    pipe = ParallelPipeline.from_pretrained(str(bundled_model_dir()), "float32", "cpu")
    results: dict = {"limit": args.limit, "presets": {}}
    scored, generated = {}, {}
    for speed in speeds:
        wall = bench(speed, args)
        folder = BenchFolder(root / speed)
        scored[speed] = folder.scored()
        generated[speed] = {k: {**v, "_speed": speed} for k, v in folder.generated().items()}
        summary = json.loads((root / speed / "summary.json").read_text())
        results["presets"][speed] = {
            "wall_s": wall,
            "metrics": summary["overall"]["metrics"],
            "settings": folder.settings()["sampler"],
        }
        print(f"{speed}: {wall:.0f} s", flush=True)
    exact = scored[speeds[0]]
    for speed in speeds[1:]:
        entry = results["presets"][speed]
        entry["difference_to_exact"] = paired_differences(scored[speed], exact)
        entry["same_as_exact"] = same_tokens(generated[speeds[0]], generated[speed], root, pipe)
    print(markdown(results, speeds))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


def markdown(results: dict, speeds: list[str]) -> str:
    """The results as Markdown tables: metrics with intervals, differences, tokens equal."""
    head = "| preset | " + " | ".join(METRICS) + " | image / text tokens = exact | bench s |"
    lines = [head, "|" + "---|" * (len(METRICS) + 3)]
    for speed in speeds:
        entry = results["presets"][speed]
        cells = []
        for metric in METRICS:
            m = entry["metrics"].get(metric)
            cell = f"{m['mean']:.1f} [{m['ci95'][0]:.1f}, {m['ci95'][1]:.1f}]" if m else "-"
            d = entry.get("difference_to_exact", {}).get(metric)
            if d:
                cell += f"<br>Δ {d['mean']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]"
            cells.append(cell)
        same = entry.get("same_as_exact")
        tokens = f"{100 * same['image']:.0f}% / {100 * same['text']:.0f}%" if same else "100%"
        lines.append(f"| {speed} | " + " | ".join(cells) + f" | {tokens} | {entry['wall_s']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
