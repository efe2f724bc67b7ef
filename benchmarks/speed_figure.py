"""The quality-vs-speed figure of the sampler's presets (docs/speed_quality.png), from the JSON
files `benchmarks/run_speed.sh` writes: left, each preset's work (FLOPs) against the
upstream-style loop's on three model shapes; right, the bundled model's ShapeBench metrics (95%
intervals) against the FLOP ratio to exact mode at the body-dominated shape.

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

PRESETS = ["exact", "fast", "fastest"]
PROJECTIONS = {  # file -> (shape, label): a 256x256 edit on the small shapes, 512x512 on 8B
    "projection_256.json": [
        ("d256x4", "d_model 256, 4 layers"),
        ("d1024x8", "d_model 1024, 8 layers"),
    ],
    "projection_512.json": [("8B", "8B shape, 512x512 edit")],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--out", default="docs/speed_quality.png")
    args = p.parse_args()
    root = Path(args.results)
    bars = {}  # label -> {preset: speed-up over upstream}
    body = None  # the body-dominated shape's speed-ups over exact
    for name, shapes in PROJECTIONS.items():
        if (root / name).exists():
            projection = json.loads((root / name).read_text())["projection"]["shapes"]
            for shape, label in shapes:
                bars[label] = {s: projection[shape][s]["vs_upstream"] for s in PRESETS}
                if shape == "d1024x8":
                    body = {s: projection[shape][s]["vs_exact"] for s in PRESETS}
    quality_path = root / "quality.json"
    quality = json.loads(quality_path.read_text()) if quality_path.exists() else None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    width = 0.8 / max(1, len(bars))
    for i, (label, values) in enumerate(bars.items()):
        xs = [j + i * width for j in range(len(PRESETS))]
        drawn = left.bar(xs, [values[s] for s in PRESETS], width, label=label)
        left.bar_label(drawn, fmt="%.1fx", fontsize=7)
    left.set_xticks([j + width * (len(bars) - 1) / 2 for j in range(len(PRESETS))], PRESETS)
    left.set_ylabel("FLOPs of the upstream-style loop / the preset's")
    left.set_title("Work per edit (counted; 256 text tokens, 32/16 steps)")
    left.legend(fontsize=8)
    if quality is not None:
        x_of = {s: (body[s] if body else i + 1) for i, s in enumerate(PRESETS)}
        for metric in METRICS:
            xs, ys, errors = [], [], [[], []]
            for s in PRESETS:
                m = quality["presets"].get(s, {}).get("metrics", {}).get(metric)
                if m:
                    xs.append(x_of[s])
                    ys.append(m["mean"])
                    errors[0].append(m["mean"] - m["ci95"][0])
                    errors[1].append(m["ci95"][1] - m["mean"])
            right.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=metric)
        for s in PRESETS:
            right.annotate(s, (x_of[s], 2), ha="center", fontsize=8)
        right.set_xscale("log")
        right.set_xlabel("FLOPs of exact mode / the preset's (d_model 1024, 8 layers)")
        right.set_ylabel(f"ShapeBench (first {quality['limit']} samples, 95% interval)")
        right.set_title("Quality of the bundled model")
        right.set_ylim(0, 100)
        right.legend(fontsize=7, loc="lower left")
    else:
        right.axis("off")
        right.text(
            0.5,
            0.5,
            "ShapeBench per preset: not measured yet\n(bash benchmarks/run_speed.sh)",
            ha="center",
            va="center",
        )
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
