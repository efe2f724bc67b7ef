"""ShapeBench with a model: batched generation through the pipeline, scored by the exact judge."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from paradiff.batch import item_seed
from paradiff.bench.generate import pipeline_answerer
from paradiff.bench.items import METRICS
from paradiff.cli import main
from paradiff.pipeline import ParallelPipeline
from paradiff.sampling import SamplerConfig
from paradiff.sampling.config import EXACT_FAST_SETTINGS, SPEED_PRESETS
from paradiff.shapes.bench import run_shapebench, select_samples
from paradiff.shapes.render import render_scene
from tests.tiny_pipeline import build_tiny_pipeline


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny"))


class OraclePipeline:
    """A stand-in pipeline that answers every request with the ground truth (as a PIL image
    at its own image size) and records the calls it got."""

    def __init__(self, samples, image_size=(128, 128)) -> None:
        self.by_instruction = {s.instruction: s for s in samples}
        self.sampler_defaults = SamplerConfig(seed=5)
        self.image_size = image_size
        self.calls: list[tuple[str, list, dict]] = []

    def run(self, task, requests, height=None, width=None, **overrides):
        self.calls.append((task, requests, {"height": height, "width": width, **overrides}))
        answers = []
        for request in requests:
            sample = self.by_instruction[request.instruction]
            if sample.task == "edit":
                assert request.image.tobytes() == render_scene(sample.scene_in).tobytes()
            else:
                assert request.image is None
            image = render_scene(sample.scene_out).resize(self.image_size)
            answers.append(
                SimpleNamespace(text=sample.reasoning, image=image, settings={"seed": request.seed})
            )
        return answers


def test_pipeline_answers_batch_by_task_with_fixed_seeds_and_score_100():
    samples = select_samples(15)  # one of each of the 15 categories: 10 edits, 5 generations
    pipe = OraclePipeline(samples)
    answer = pipeline_answerer(pipe, 4, {"mode": "sequential"}, pipe.image_size)
    report = run_shapebench(answer=answer, samples=samples)
    assert report["count"] == 15
    overall = {m: v["mean"] for m, v in report["overall"]["metrics"].items()}
    assert overall == dict.fromkeys(METRICS, 100.0)
    assert list(report["per_category"]) == [s.category for s in samples]  # bench order kept
    sizes = [(task, len(requests)) for task, requests, _ in pipe.calls]
    assert sorted(sizes) == [
        ("edit", 2),
        ("edit", 4),
        ("edit", 4),
        ("generate", 1),
        ("generate", 4),
    ]
    for _, requests, settings in pipe.calls:
        assert settings == {"height": 128, "width": 128, "mode": "sequential"}
        for request in requests:
            sample = pipe.by_instruction[request.instruction]
            assert request.seed == item_seed(sample.id, 5)
    assert len({r.seed for _, requests, _ in pipe.calls for r in requests}) == 15


def test_cli_scores_a_saved_model_and_resumes(tiny_model, tmp_path, capsys, monkeypatch):
    drawn: list[str] = []
    run = ParallelPipeline.run

    def counting_run(pipe, task, requests, *args, **kwargs):
        drawn.extend(r.instruction for r in requests)
        return run(pipe, task, requests, *args, **kwargs)

    monkeypatch.setattr(ParallelPipeline, "run", counting_run)
    argv = ["bench", "shapebench", "--model", str(tiny_model), "--json", "--device", "cpu"]
    out = ["--batch-size", "2", "--out", str(tmp_path)]
    assert main([*argv, "--limit", "3", *out]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["benchmark"] == "shapebench" and report["count"] == 3
    assert report["mode"] == "parallel" and report["sampler"]["text_steps"] == 8
    means = {m: v["mean"] for m, v in report["overall"]["metrics"].items()}
    assert set(means) == set(METRICS) and all(0 <= v <= 100 for v in means.values())
    samples = select_samples(4)
    lines = (tmp_path / "scores.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [s.id for s in samples[:3]]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["count"] == 3 and summary["per_category"].keys() == report["per_category"].keys()
    for metric, value in means.items():
        assert summary["overall"]["metrics"][metric]["mean"] == pytest.approx(value, abs=0.01)
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "chart.png").is_file()
    assert main([*argv, "--limit", "4", *out]) == 0  # resumes: only the fourth is drawn
    assert json.loads(capsys.readouterr().out)["count"] == 4
    assert sorted(drawn) == sorted(s.instruction for s in samples)
    assert main([*argv, "--limit", "1", "--mode", "sequential"]) == 0  # no --out: a temporary run
    assert json.loads(capsys.readouterr().out)["sampler"]["mode"] == "sequential"
    sampler_flags = ["--timesteps", "3", "--temperature", "0.5", "--cfg-img", "1.5"]
    assert main([*argv, "--limit", "1", *sampler_flags]) == 0
    sampler = json.loads(capsys.readouterr().out)["sampler"]
    assert (sampler["image_steps"], sampler["image_temperature"], sampler["cfg_image"]) == (
        3,
        0.5,
        1.5,
    )
    assert main([*argv, "--limit", "1", "--mode", "sequential", *out]) == 2
    assert "holds a run with other sampler" in capsys.readouterr().err
    run = json.loads((tmp_path / "run.json").read_text())  # written before two settings existed
    del run["sampler"]["image_order"], run["sampler"]["uncond_recompute"]
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert main([*argv, "--limit", "4", *out]) == 0  # their defaults: the same settings
    assert json.loads(capsys.readouterr().out)["count"] == 4


FAST_R = SPEED_PRESETS["fast"]["cache_refresh"]


@pytest.mark.parametrize(
    "flags, ran",
    [
        (("--image-recompute", "all"), {"cache_refresh": FAST_R, "image_recompute": "all"}),
        (("--cache-refresh", "0"), {"cache_refresh": 0, "image_recompute": "all"}),
    ],
)
def test_cli_runs_and_records_the_settings_given_with_a_preset(
    flags, ran, tiny_model, tmp_path, capsys, sampler_runs
):
    argv = ["bench", "shapebench", "--model", str(tiny_model), "--json", "--device", "cpu"]
    assert main([*argv, "--limit", "2", "--out", str(tmp_path), "--speed", "fast", *flags]) == 0
    recorded = json.loads((tmp_path / "run.json").read_text())["sampler"]
    assert sampler_runs and all(c.to_dict() == recorded for c in sampler_runs)  # what ran
    assert {k: recorded[k] for k in ran} == ran and recorded["speed"] == "exact"
    assert json.loads(capsys.readouterr().out)["sampler"] == recorded  # the report's too


def test_a_folder_recorded_before_explicit_settings_resumes_as_it_ran(tiny_model, tmp_path, capsys):
    argv = ["bench", "shapebench", "--model", str(tiny_model), "--json", "--device", "cpu"]
    argv += ["--out", str(tmp_path), "--speed", "fast"]
    assert main([*argv, "--limit", "1"]) == 0
    capsys.readouterr()
    ran = json.loads((tmp_path / "run.json").read_text())
    assert ran["sampler"]["image_recompute"] == "active"
    # as recorded before: the preset's name, and its fast settings at their exact values
    before = {**ran["sampler"], **EXACT_FAST_SETTINGS, "text_threshold": None, "speed": "fast"}
    (tmp_path / "run.json").write_text(json.dumps({**ran, "sampler": before}))
    assert main([*argv, "--limit", "2"]) == 0  # the same settings as they ran: resumed
    assert json.loads(capsys.readouterr().out)["count"] == 2
    assert json.loads((tmp_path / "run.json").read_text()) == ran  # now written as they ran
    (tmp_path / "run.json").write_text(json.dumps({**ran, "sampler": before}))
    assert main([*argv, "--limit", "2", "--image-recompute", "all"]) == 2  # not what ran
    err = capsys.readouterr().err
    assert "holds a run with other sampler" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--limit", "0", "--oracle"], "--limit must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--model", "/nonexistent/model"], "cannot load model /nonexistent/model"),
    ],
)
def test_bad_options_are_one_line_errors(argv, message, capsys):
    assert main(["bench", "shapebench", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_development_split_is_shapebench_sized_disjoint_and_judged_like_it(capsys):
    development = select_samples(split="development")
    bench = select_samples()
    assert len(development) == len(bench) == 300
    assert not {s.key() for s in development} & {s.key() for s in bench}
    assert [s.category for s in development] == [s.category for s in bench]
    assert main(["bench", "shapebench", "--oracle", "--split", "development", "--limit", "15"]) == 0
    assert "overall" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "shapebench", "--oracle", "--split", "training"])
    assert stopped.value.code == 2 and "--split" in capsys.readouterr().err


def test_the_confirmation_split_is_shapebench_sized_and_disjoint_from_both(capsys):
    confirmation = select_samples(split="confirmation")
    bench, development = select_samples(), select_samples(split="development")
    assert len(confirmation) == 300
    keys = {s.key() for s in confirmation}
    assert not keys & {s.key() for s in bench} and not keys & {s.key() for s in development}
    assert [s.category for s in confirmation] == [s.category for s in bench]
    assert (
        main(["bench", "shapebench", "--oracle", "--split", "confirmation", "--limit", "15"]) == 0
    )
    assert "overall" in capsys.readouterr().out
