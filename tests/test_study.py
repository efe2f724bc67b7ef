"""The study command's quick setting end to end (tiny model, tiny runs), its resumption and its
statistics on hand-made runs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil

import pytest

from paradiff.bench.runner import BenchFolder
from paradiff.checkpoint import BUNDLED_MODELS
from paradiff.cli import main
from paradiff.shapes.study import SETTINGS, Claim, Inputs, Study, StudyError, judge
from paradiff.training.sft_settings import SFTSettings

CLIP = BUNDLED_MODELS / "rewards" / "shapes-clip"
SMALL = ("rollout.text_steps=6", "rollout.image_steps=4")


def test_quick_study_runs_every_arm_and_resumes(
    tmp_path, tiny_shapes_model, shapes_records, pretokenized, capsys
):
    inputs = Inputs(
        model=str(tiny_shapes_model),
        records=str(shapes_records),
        pretokenized=str(pretokenized),
        sft_init=str(tiny_shapes_model),
        clip_dir=str(CLIP),
    )
    quick = SETTINGS["quick"]
    settings = dataclasses.replace(quick, rl_overrides=quick.rl_overrides + SMALL)
    messages: list[str] = []
    report = tmp_path / "docs" / "study.md"
    study = Study(inputs, tmp_path / "study", settings, progress=False, log=messages.append)
    results = study.run(report)
    trained = [m for m in messages if m.startswith("training")]
    # 2 rewards x (output-level, ParaRL) x 3 seeds, s=1 x 3 seeds (s=3 is ParaRL's own), s=3
    # from the later half x 3 seeds, 2 SFT
    assert len(trained) == 12 + 3 + 3 + 2
    assert "--resume" not in capsys.readouterr().err  # fresh units are started, not resumed
    assert sum("s3-later-half" in m for m in trained) == 3
    titles = {c["title"] for c in results["claims"]}
    assert any("Table 3" in t for t in titles) and any("Table 5" in t for t in titles)
    assert any("Thinking" in t for t in titles)
    for claim in results["claims"]:
        assert claim["verdict"] in ("reproduced", "not reproduced", "reversed")
        assert claim["temperature"] in ("greedy", "t1")
        runs = {arm: summary["runs"] for arm, summary in claim["arms"].items()}
        if claim["temperature"] == "t1" and "ParaRL" in claim["better"]:
            assert runs[claim["better"]] == 3  # one evaluation per training seed
    text = report.read_text()
    tables = {(c["title"], c["temperature"]) for c in results["claims"]}
    assert text.count("## ") == len(tables) < len(results["claims"])  # Table 4 shares a table
    assert report.with_suffix(".png").is_file()
    verdicts = [line for line in text.splitlines() if line.startswith("**")]
    assert len(verdicts) == len(results["claims"])  # one sentence per claim and temperature
    assert all(
        v.startswith(("**Reproduced**", "**Not reproduced**", "**Reversed**")) for v in verdicts
    )
    sha = hashlib.sha256((tiny_shapes_model / "model.safetensors").read_bytes()).hexdigest()
    assert f"weights sha256 {sha[:12]}" in text and results["inputs"]["model_sha256"] == sha
    assert f"{len(verdicts)} verdicts are read here" in text  # the multiple-comparisons note
    # a second run finds every unit done: nothing trained or evaluated again
    messages.clear()
    again = Study(inputs, tmp_path / "study", settings, progress=False, log=messages.append)
    assert again.run()["claims"] == results["claims"]
    assert messages == []


def test_a_study_folder_refuses_other_inputs_before_any_work(
    tmp_path, tiny_shapes_model, shapes_records, monkeypatch, capsys
):
    settings = SETTINGS["quick"]
    inputs = Inputs(model=str(tiny_shapes_model), records=str(shapes_records))
    Study(inputs, tmp_path / "s", settings, progress=False).claim_folder()
    other_model = tmp_path / "other"
    shutil.copytree(tiny_shapes_model, other_model)
    weights = other_model / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")  # other weights, same everything else
    monkeypatch.setattr(Study, "arms", lambda self: pytest.fail("a unit ran"))
    for study in (
        Study(Inputs(str(other_model), str(shapes_records)), tmp_path / "s", settings),
        Study(inputs, tmp_path / "s", dataclasses.replace(settings, limit=5)),
    ):
        with pytest.raises(StudyError, match="holds a study of other inputs"):
            study.run()
    argv = ["shapes", "study", "--out", str(tmp_path / "s"), "--model", str(other_model)]
    assert main([*argv, "--records", str(shapes_records), "--setting", "quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(model, model_sha256, " in err


def test_a_study_never_writes_into_a_users_folder_or_over_a_users_report(
    tmp_path, tiny_shapes_model, shapes_records, monkeypatch
):
    inputs = Inputs(model=str(tiny_shapes_model), records=str(shapes_records))
    monkeypatch.setattr(Study, "arms", lambda self: pytest.fail("a unit ran"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(StudyError, match="not a paradiff study"):
        Study(inputs, mine, SETTINGS["quick"], progress=False).run()
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    letter = tmp_path / "letter.md"
    letter.write_text("# Dear paradiff\n")
    for report, problem in ((letter, "not a study report"), (mine, "is a folder")):
        study = Study(inputs, tmp_path / "new", SETTINGS["quick"], progress=False)
        with pytest.raises(StudyError, match=problem):
            study.run(report)
        assert not (tmp_path / "new").exists()
    assert letter.read_text() == "# Dear paradiff\n"


def test_a_half_finished_evaluation_resumes(tmp_path, tiny_shapes_model, shapes_records):
    inputs = Inputs(model=str(tiny_shapes_model), records=str(shapes_records))
    study = Study(inputs, tmp_path / "s", SETTINGS["quick"], progress=False)
    folder = study.evaluate(str(tiny_shapes_model), "sft", "t1", 0, "parallel")
    scores = (folder / "scores.jsonl").read_text().splitlines()
    (folder / "scores.jsonl").write_text("\n".join(scores[:-1]) + "\n")  # one sample short
    (folder / "summary.json").unlink()
    assert study.evaluate(str(tiny_shapes_model), "sft", "t1", 0, "parallel") == folder
    assert len((folder / "scores.jsonl").read_text().splitlines()) == len(scores)


def _fake_run(folder, scores):
    """A ShapeBench run folder holding only the score records `scores` (id -> output alignment)."""
    folder.mkdir(parents=True)
    lines = [
        json.dumps({"id": i, "task": "edit", "category": "c", "output_alignment": v})
        for i, v in scores.items()
    ]
    (folder / "scores.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_verdicts_on_hand_made_runs(tmp_path):
    ids = [f"p{i}" for i in range(40)]
    low = _fake_run(tmp_path / "low", dict.fromkeys(ids, 10.0))
    high_a = _fake_run(tmp_path / "a", {i: 30.0 for i in ids})
    high_b = _fake_run(tmp_path / "b", {i: 50.0 for i in ids})
    assert len(BenchFolder(low).scored()) == 40
    claim = Claim("t", "A beats B", "A", "B", "output_alignment", ("A", "B"))
    better = judge(claim, "t1", {"A": [high_a, high_b], "B": [low]})
    assert better["verdict"] == "reproduced"
    assert better["difference"]["mean"] == pytest.approx(30.0)  # (30 + 50) / 2 - 10
    arm = better["arms"]["A"]["output_alignment"]
    assert arm["mean"] == pytest.approx(40.0) and arm["seed_range"] == [30.0, 50.0]
    assert judge(claim, "t1", {"A": [low], "B": [high_a]})["verdict"] == "reversed"
    noisy = _fake_run(tmp_path / "noisy", {i: (0.0 if n % 2 else 20.0) for n, i in enumerate(ids)})
    assert judge(claim, "t1", {"A": [noisy], "B": [low]})["verdict"] == "not reproduced"


def test_study_command_errors_are_one_line(tmp_path, capsys):
    code = main(["shapes", "study", "--out", str(tmp_path / "s"), "--records", "nowhere.jsonl"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--records nowhere.jsonl does not exist" in err
    records = tmp_path / "records.jsonl"
    records.write_text("")
    argv = ["shapes", "study", "--out", str(tmp_path / "s"), "--records", str(records)]
    code = main([*argv, "--sft-recipe", str(tmp_path / "absent.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "absent.yaml does not exist" in err
    assert not (tmp_path / "s").exists()


def test_medium_setting_applies_its_recipe_and_the_exact_sampler(tmp_path, monkeypatch):
    from paradiff.shapes import study as study_module

    inputs = Inputs(model="shapes", records="records.jsonl")
    study = Study(inputs, tmp_path / "study", SETTINGS["medium"], progress=False)
    config = study._rl_settings("arm", 1, ["reward.kind=scene_agreement"])
    assert config.train.steps == 40 and config.train.updates_per_batch == 2
    assert config.reward.window == (0.0, 1.0) and config.train.seed == 1  # whole trajectory
    assert len(study.samples) == 100
    table5 = [c for c in study.claims() if "Table 5" in c.title]
    assert [(c.better, c.worse) for c in table5] == [
        (f"ParaRL s={n}", "ParaRL s=1") for n in (2, 3, 5)
    ]
    assert table5[0].arms[-1] == "ParaRL s=3, later half"  # the labelled variant, shown beside
    sft_config = SFTSettings.load(study.inputs.sft_recipe, list(SETTINGS["medium"].sft_overrides))
    assert sft_config.train.steps == 3500 and not sft_config.eval.call
    seen = {}

    def fake_shapebench(answer, settings, samples, out, mode):
        seen.update(settings["sampler"], samples=len(samples))
        out.mkdir(parents=True)
        (out / "summary.json").write_text("{}")

    monkeypatch.setattr(study_module, "run_shapebench", fake_shapebench)
    study.evaluate("shapes", "sft", "t1", 2, "sequential")
    assert seen.pop("samples") == 100
    expected = {  # what ran: the exact sampler, whatever preset the model ships
        "cache_refresh": 0,  # no cache
        "speed": "exact",
        "mode": "sequential",
        "text_temperature": 0.0,  # one greedy-text answer, whatever the model ships
        "best_of": 1,
        "image_temperature": 1.0,
        "seed": 2,
    }
    assert {k: seen[k] for k in expected} == expected
