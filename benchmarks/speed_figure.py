"""The quality-vs-speed figure of the sampler's presets (docs/speed_quality.png), from the JSON
files `benchmarks/run_speed.sh` writes: left, each preset's speed-up over the upstream-style loop
at both model sizes; right, the bundled model's ShapeBench metrics (95% intervals) against the
speed-up over exact mode at the body-dominated size.

    python benchmarks/speed_figure.py --results benchmarks/results --out docs/speed_quality.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from paradiff.shapes.judge import METRICS  # noqa: E402

SIZES = {"speed_d256.json": "d_model 256, 4 layers", "speed_d1024.json": "d_model 1024, 8 layers"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--out", default="docs/speed_quality.png")
    args = p.parse_args()
    root = Path(args.results)
    speed = {n: json.loads((root / n).read_text()) for n in SIZES if (root / n).exists()}
    quality_path = root / "quality.json"
    quality = json.loads(quality_path.read_text()) if quality_path.exists() else None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    presets = ["exact", "fast", "fastest"]
    width = 0.8 / max(1, len(speed))
    for i, (name, report) in enumerate(speed.items()):
        runs = report["runs"]
        values = [runs[s]["vs_upstream"] for s in presets if s in runs]
        xs = [j + i * width for j in range(len(values))]
        bars = left.bar(xs, values, width, label=SIZES[name])
        left.bar_label(bars, fmt="%.1fx", fontsize=8)
    left.set_xticks([j + width * (len(speed) - 1) / 2 for j in range(len(presets))], presets)
    left.set_ylabel("speed-up over the upstream-style loop (wall time)")
    left.set_title("Sampler speed (CPU, one run each)")
    left.legend(fontsize=8)
    if quality is not None:
        body = speed.get("speed_d1024.json") or next(iter(speed.values()), None)
        x_of = {
            s: (body["runs"][s].get("vs_exact", 1.0) if body else i + 1)
            for i, s in enumerate(presets)
        }
        for metric in METRICS:
            xs, ys, errors = [], [], [[], []]
            for s in presets:
                m = quality["presets"].get(s, {}).get("metrics", {}).get(metric)
                if m:
                    xs.append(x_of[s])
                    ys.append(m["mean"])
                    errors[0].append(m["mean"] - m["ci95"][0])
                    errors[1].append(m["ci95"][1] - m["mean"])
            right.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=metric)
        for s in presets:
            right.annotate(s, (x_of[s], 2), ha="center", fontsize=8)
        right.set_xlabel("speed-up over exact mode (d_model 1024, 8 layers)")
        right.set_ylabel(f"ShapeBench score (first {quality['limit']} samples, 95% interval)")
        right.set_title("Quality of the bundled model")
        right.set_ylim(0, 100)
        right.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
