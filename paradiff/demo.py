"""`paradiff demo` / `make demo`: one generation and one edit, written with their trajectories."""

from __future__ import annotations

import time
from pathlib import Path

from paradiff.command import publish
from paradiff.shapes.render import render_scene
from paradiff.shapes.tasks import make_sample

DEMO_GENERATION = ("counting", 7)  # (category, seed) of the shapes-world examples
DEMO_EDIT = ("recolour", 3)


def demo_requests() -> tuple[str, tuple[str, object]]:
    """The generation prompt and the (instruction, input image) edit of the demo."""
    prompt = make_sample(DEMO_GENERATION[0], DEMO_GENERATION[1]).instruction
    edit = make_sample(DEMO_EDIT[0], DEMO_EDIT[1])
    return prompt, (edit.instruction, render_scene(edit.scene_in))


def load_demo_pipeline(model: str | None, device: str | None):
    """The requested model, else the bundled one, else (no bundled model yet) a random one."""
    from paradiff.pipeline import ParallelPipeline, bundled_model_dir

    if model is None:
        try:
            bundled_model_dir()
        except FileNotFoundError:
            from paradiff.shapes.checkpoint import new_shapes_pipeline

            print("no bundled model in this install: running an untrained random shapes model")
            return new_shapes_pipeline(seed=0)
    return ParallelPipeline.from_pretrained(model, device=device)


def run_demo(out: Path, model: str | None = None, device: str | None = None) -> int:
    started = time.perf_counter()
    pipe = load_demo_pipeline(model, device)
    prompt, (instruction, image) = demo_requests()
    generated = pipe.generate(prompt)
    edited = pipe.edit(image, instruction)

    def write(tmp: Path) -> None:
        generated.save(tmp / "generate")
        edited.save(tmp / "edit")
        image.save(tmp / "edit" / "input.png")

    publish(write, out)
    for name, request, result in (
        ("generate", prompt, generated),
        ("edit", instruction, edited),
    ):
        print(f"[{name}] {request}")
        print(f"  reasoning: {result.text}")
        print(
            f"  {result.timings['steps']} steps, {result.timings['sample_s']:.2f} s -> {out / name}/"
        )
    print(
        f"demo done in {time.perf_counter() - started:.1f} s: image.png, reasoning.txt, "
        f"meta.json and trajectory.gif in {out}/generate and {out}/edit"
    )
    return 0
