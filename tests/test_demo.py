"""`paradiff demo`: fixed examples, one folder each, a summary picture, and the exact judge's
scores printed for what was written."""

from __future__ import annotations

import re

from PIL import Image

from paradiff.demo import demo_samples, run_demo, scores_line
from paradiff.shapes.judge import score_sample


def test_the_examples_are_fixed_and_cover_both_tasks():
    first, again = demo_samples(), demo_samples()
    assert {task: len(samples) for task, samples in first.items()} == {"generate": 3, "edit": 3}
    for task in first:
        assert [s.to_json() for s in first[task]] == [s.to_json() for s in again[task]]
    assert all(s.scene_in is None for s in first["generate"])
    assert all(s.scene_in is not None for s in first["edit"])


def test_demo_writes_every_example_and_prints_the_judges_scores(
    tiny_shapes_model, tmp_path, capsys
):
    out = tmp_path / "demo_out"
    assert run_demo(out, model=str(tiny_shapes_model), device="cpu") == 0
    printed = capsys.readouterr().out
    samples = demo_samples()
    perfect = 0
    for task, task_samples in samples.items():
        for sample in task_samples:
            folder = out / f"{task}-{sample.category}"
            assert (folder / "trajectory.gif").is_file()
            assert (folder / "input.png").is_file() == (task == "edit")
            text = (folder / "reasoning.txt").read_text(encoding="utf-8").rstrip("\n")
            scores = score_sample(sample, text, Image.open(folder / "image.png"))
            block = printed.split(f"[{folder.name}] {sample.instruction}\n", 1)[1]
            judged = re.search(r"exact judge: (.*)\n", block).group(1)
            assert judged == scores_line(scores)  # the judge, on the files written
            perfect += all(value == 100 for value in scores.values())
    assert f"{perfect} of 6 examples score 100 on all six metrics" in printed
    with Image.open(out / "summary.png") as summary:
        assert summary.height > 6 * 192  # a row per example

    assert run_demo(out, model=str(tiny_shapes_model), device="cpu") == 0  # its own files: replaced
