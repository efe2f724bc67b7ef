"""Shapes world: the exact six-metric judge and the ShapeBench command."""

from __future__ import annotations

import argparse
import json
import random

import pytest
import torch

from paradiff.bench.items import METRICS
from paradiff.bench.report import groups_of
from paradiff.shapes.bench import SHAPEBENCH, oracle, run_shapebench
from paradiff.shapes.dataset import shapebench_samples
from paradiff.shapes.image_tokenizer import shapes_tokenizer
from paradiff.shapes.judge import JudgeError, f1, score_sample
from paradiff.shapes.render import render_scene
from paradiff.shapes.sample import ShapeSample
from paradiff.shapes.scene import COLOUR_NAMES, Obj, Scene

TEXT = ("text_quality", "text_alignment")


def bench(task: str) -> list[ShapeSample]:
    return [s for s in shapebench_samples() if s.task == task]


def other_colour(obj: Obj) -> Obj:
    return Obj(obj.shape, next(c for c in COLOUR_NAMES if c != obj.colour))


def garble(text: str, rng: random.Random) -> str:
    words = text.split()
    rng.shuffle(words)
    return " ".join(words)


def cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="paradiff")
    bench_parsers = parser.add_subparsers(dest="command").add_parser("bench").add_subparsers()
    SHAPEBENCH.add_command(bench_parsers)
    return parser.parse_args(["bench", "shapebench", *argv])


def test_oracle_scores_100_everywhere():
    report = run_shapebench(oracle)
    assert report["count"] == 300
    assert {c: g["count"] for c, g in report["per_category"].items()} == {
        c: 20 for c in report["per_category"]
    }
    for group in groups_of(report).values():
        assert {m: v["mean"] for m, v in group["metrics"].items()} == dict.fromkeys(METRICS, 100.0)


def test_oracle_through_every_output_form():
    tokenizer = shapes_tokenizer()
    for sample in shapebench_samples()[:30]:
        codes = tokenizer.scene_to_codes(sample.scene_out)
        image = render_scene(sample.scene_out)
        pixels = tokenizer.decode(codes[None])[0]
        for output in (codes, codes.numpy(), codes.tolist(), image, pixels):
            assert set(score_sample(sample, sample.reasoning, output).values()) == {100.0}


def test_copying_the_input_aligns_nothing_and_keeps_everything():
    for sample in bench("edit"):
        scores = score_sample(sample, sample.reasoning, sample.scene_in)
        assert scores["image_alignment"] == 0.0 and scores["image_consistency"] == 100.0
        assert scores["output_alignment"] < 100.0


def test_doing_nothing_scores_nothing():
    for sample in shapebench_samples():
        scores = score_sample(sample, "", sample.base_scene)
        assert scores["text_quality"] == scores["text_alignment"] == 0.0
        assert scores["image_alignment"] == scores["output_alignment"] == 0.0


def test_wrong_colour_in_the_image_only_hits_image_and_output_alignment():
    for sample in bench("edit"):
        changed = [p for p, obj in sample.required_changes().items() if obj is not None]
        if not changed:
            continue
        pos = changed[0]
        wrong = sample.scene_out.with_cells({pos: other_colour(sample.scene_out.get(pos))})
        scores = score_sample(sample, sample.reasoning, wrong)
        assert scores["image_alignment"] < 100 and scores["output_alignment"] < 100
        for name in (*TEXT, "image_quality", "image_consistency"):
            assert scores[name] == 100.0, (name, sample.id)


def test_garbled_text_only_hits_text_metrics():
    rng = random.Random(0)
    for sample in shapebench_samples():
        scores = score_sample(sample, garble(sample.reasoning, rng), sample.scene_out)
        assert scores["text_quality"] < 100 and scores["text_alignment"] < 100
        assert scores["output_alignment"] < 100  # text and image no longer agree
        for name in ("image_quality", "image_alignment", "image_consistency"):
            assert scores[name] == 100.0


def test_changing_an_untouched_cell_hits_consistency_only_among_image_metrics():
    for sample in bench("edit"):
        touched = sample.required_changes()
        pos = next(p for p in sample.scene_in.positions() if p not in touched)
        old = sample.scene_out.get(pos)
        new = Obj("star", "red") if old is None else None
        scores = score_sample(sample, sample.reasoning, sample.scene_out.with_cells({pos: new}))
        assert scores["image_consistency"] < 100
        assert scores["output_alignment"] < 100  # the image shows a change the text does not
        for name in (*TEXT, "image_quality", "image_alignment"):
            assert scores[name] == 100.0


def test_broken_cells_hit_image_quality():
    tokenizer = shapes_tokenizer()
    sample = bench("edit")[0]
    codes = tokenizer.scene_to_codes(sample.scene_out)
    pos = next(p for p in sample.scene_in.positions() if p not in sample.required_changes())
    row, col = 2 * pos[0], 2 * pos[1]
    codes[row, col] = codes[row + 1, col + 1] if sample.scene_out.get(pos) else 5
    scores = score_sample(sample, sample.reasoning, codes)
    assert scores["image_quality"] == 100 * (1 - 1 / 16)
    assert scores["image_consistency"] < 100
    assert scores["text_quality"] == scores["image_alignment"] == 100.0


def test_repetition_hits_text_quality_only():
    sample = bench("edit")[0]
    repeated = sample.reasoning + " " + sample.reasoning
    scores = score_sample(sample, repeated, sample.scene_out)
    assert scores["text_quality"] == 50.0
    assert scores["text_alignment"] == scores["output_alignment"] == 100.0


def test_generation_overdrawing_and_wrong_objects():
    for sample in bench("generation"):
        empty = [p for p in sample.scene_out.positions() if sample.scene_out.get(p) is None]
        extra = sample.scene_out.with_cells({empty[0]: Obj("cross", "black")})
        scores = score_sample(sample, sample.reasoning, extra)
        assert scores["image_consistency"] < 100 and scores["image_alignment"] < 100
        assert scores["text_alignment"] == 100.0
        recoloured = sample.scene_out.with_cells(
            {pos: other_colour(obj) for pos, obj in sample.scene_out.objects()}
        )
        scores = score_sample(sample, sample.reasoning, recoloured)
        assert scores["output_alignment"] == 0.0 and scores["image_consistency"] == 100.0


def test_f1():
    assert f1(set(), set()) == 0.0 and f1({1}, {1}) == 1.0
    assert f1({1, 2}, {1}) == pytest.approx(2 / 3)


def test_outputs_of_the_wrong_size_are_refused():
    sample = bench("edit")[0]
    with pytest.raises(JudgeError, match="does not fit"):
        score_sample(sample, sample.reasoning, torch.zeros(6, 6, dtype=torch.long))
    with pytest.raises(JudgeError, match="expected 4x4"):
        score_sample(sample, sample.reasoning, Scene(3, 3))


def test_cli_oracle_json(capsys, tmp_path):
    args = cli("--oracle", "--json", "--out", str(tmp_path))
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "oracle" and report["count"] == 300
    assert set(report["overall"]["metrics"]) == set(METRICS)
    means = [v["mean"] for g in report["per_category"].values() for v in g["metrics"].values()]
    assert len(means) == 6 * len(report["per_category"]) and all(v == 100 for v in means)
    assert len((tmp_path / "scores.jsonl").read_text().splitlines()) == 300
    assert json.loads((tmp_path / "summary.json").read_text())["overall"] == report["overall"]


def test_cli_limit_and_unloadable_model(capsys, tmp_path):
    args = cli("--oracle", "--limit", "15")
    assert args.func(args) == 0
    table = capsys.readouterr().out
    assert "overall" in table and "composition" in table  # 15 = one of every category
    from paradiff.cli import main  # the CLI's one error path: one line, exit 2

    assert main(["bench", "shapebench", "--model", str(tmp_path / "absent"), "--limit", "1"]) == 2
    assert "absent" in capsys.readouterr().err
