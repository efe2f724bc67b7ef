"""Benchmark reports: means, bootstrap intervals, tables, charts and run comparison."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from paradiff.bench.items import METRICS
from paradiff.bench.report import (
    arm_difference_interval,
    bootstrap_interval,
    compare_table,
    markdown_table,
    paired_differences,
    seed_level_interval,
    summarise,
    write_report,
)
from paradiff.cli import main
from paradiff.resumable import RunError


def record(task: str, category: str, **scores: float | None) -> dict:
    return {"id": f"{category}-{len(scores)}", "task": task, "category": category, **scores}


def scores(value: float, **changes: float | None) -> dict[str, float | None]:
    return {**{metric: value for metric in METRICS}, **changes}


RECORDS = [
    record("edit", "A", **scores(100.0, image_consistency=50.0)),
    record("edit", "B", **scores(0.0, image_consistency=100.0)),
    record("generation", "A", **scores(30.0, text_quality=60.0, image_consistency=None)),
]


def test_summary_of_a_hand_computed_case():
    summary = summarise(RECORDS, benchmark="test")
    assert summary["benchmark"] == "test" and summary["count"] == 3
    overall = summary["overall"]["metrics"]
    assert overall["text_quality"]["mean"] == pytest.approx(160 / 3)
    assert overall["image_alignment"]["mean"] == pytest.approx(130 / 3)
    assert overall["image_consistency"] == {"mean": 75.0, "ci95": [50.0, 100.0], "n": 2}
    edit = summary["per_task"]["edit"]["metrics"]
    # [0, 100]: resampled means are 0, 50, 100 with probability 1/4, 1/2, 1/4
    assert edit["text_quality"] == {"mean": 50.0, "ci95": [0.0, 100.0], "n": 2}
    generation = summary["per_task"]["generation"]
    assert generation["count"] == 1 and "image_consistency" not in generation["metrics"]
    assert generation["metrics"]["text_quality"] == {"mean": 60.0, "ci95": [60.0, 60.0], "n": 1}
    category_a = summary["per_category"]["A"]["metrics"]
    assert category_a["text_quality"] == {"mean": 80.0, "ci95": [60.0, 100.0], "n": 2}
    assert category_a["image_consistency"]["n"] == 1
    assert list(summary["per_category"]) == ["A", "B"]


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = [float(v) for v in range(0, 100, 7)]
    low, high = bootstrap_interval(values, seed=3)
    assert (low, high) == bootstrap_interval(values, seed=3)
    assert low < sum(values) / len(values) < high
    assert bootstrap_interval(values, seed=4) != (low, high)
    assert bootstrap_interval([42.0] * 5) == (42.0, 42.0)
    with pytest.raises(RunError, match="no scored samples"):
        summarise([])


def test_the_seed_level_interval_holds_the_spread_between_training_runs():
    """Three seeds that agree within each prompt give the prompts' interval; seeds that
    disagree (one run +10, one -10, one 0 on every prompt) widen it by the runs' spread, which
    an interval over prompts alone (of the seeds' mean) misses."""
    import numpy as np

    prompts = np.linspace(-3, 3, 40)
    agreeing = np.stack([prompts + 2] * 3)  # (3, 40)
    low, high = seed_level_interval(agreeing)
    assert (low, high) == pytest.approx(bootstrap_interval(list(prompts + 2)), abs=0.05)
    spread = np.stack([prompts + 12, prompts - 8, prompts + 2])
    wide = seed_level_interval(spread)
    assert wide[0] < low - 3 and wide[1] > high + 3
    assert wide[0] < 2 < wide[1] and wide == seed_level_interval(spread)
    with pytest.raises(ValueError, match="seeds, prompts"):
        seed_level_interval(np.zeros(5))


def test_the_arm_difference_interval_resamples_both_arms_runs():
    """One run per arm: the paired bootstrap over prompts of the differences. Runs of the worse
    arm that disagree with each other widen it (a prompts-only interval of the run means does
    not); the prompts stay paired, so a constant per-prompt offset gives a point interval."""
    import numpy as np

    prompts = np.linspace(-30, 30, 60)
    one = arm_difference_interval(np.stack([prompts + 5]), np.stack([prompts]))
    assert one == pytest.approx((5.0, 5.0))  # paired prompts: the offset, whatever the spread
    noisy = prompts + np.random.default_rng(0).normal(0, 10, 60)
    paired = arm_difference_interval(np.stack([noisy + 5]), np.stack([prompts]))
    assert paired == pytest.approx(bootstrap_interval(list(noisy + 5 - prompts)), abs=1.0)
    spread = np.stack([prompts + 10, prompts - 10, prompts])  # worse arm: three unlike seeds
    wide = arm_difference_interval(np.stack([prompts + 5] * 2), spread)
    assert wide[0] < 0 < wide[1]  # a run of the worse arm at +10 can beat the better one
    with pytest.raises(ValueError, match="same prompts"):
        arm_difference_interval(np.zeros((2, 5)), np.zeros((2, 4)))


def test_paired_differences_use_the_samples_both_runs_scored():
    base = {
        "a": {"text_quality": 50.0, "image_consistency": 80.0},
        "b": {"text_quality": 70.0, "image_consistency": None},  # a generation
        "c": {"text_quality": 10.0},  # only the base run has it
    }
    scored = {
        "a": {"text_quality": 60.0, "image_consistency": 90.0},
        "b": {"text_quality": 60.0, "image_consistency": 40.0},
        "d": {"text_quality": 99.0},  # only the other run has it
    }
    differences = paired_differences(scored, base)
    assert differences["text_quality"]["mean"] == 0.0  # (+10 - 10) / 2 over a and b
    assert differences["image_consistency"] == {"mean": 10.0, "ci95": [10.0, 10.0]}  # a only
    assert set(differences) == {"text_quality", "image_consistency"}  # nothing else paired


def test_markdown_table_and_files(tmp_path):
    summary = summarise(RECORDS)
    table = markdown_table(summary).splitlines()
    assert table[0].startswith("| group | n | text_quality |")
    assert [row.split(" | ")[0] for row in table[2:]] == [
        "| A", "| B", "| edit", "| generation", "| overall",
    ]  # fmt: skip
    assert "| A | 2 | 80.0 [60.0, 100.0] |" in table[2]
    assert table[5].split(" | ")[6] == "–"  # generation has no image consistency
    write_report(tmp_path, summary, "title")
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert (tmp_path / "summary.md").read_text().startswith("# title\n\n| group")
    with Image.open(tmp_path / "chart.png") as chart:
        assert chart.size[0] > 300


def test_compare_prints_differences(tmp_path, capsys):
    better = [{**r, "text_quality": r["text_quality"] + 10} for r in RECORDS]
    write_report(tmp_path / "a", summarise(RECORDS))
    write_report(tmp_path / "b", summarise(better))
    assert main(["bench", "compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert any(
        line.split() == ["overall", "text_quality", "53.3", "63.3", "+10.0"]
        for line in out.splitlines()
    )
    assert any(line.split()[:2] == ["generation", "image_alignment"] for line in out.splitlines())
    assert not any(
        line.split()[:2] == ["generation", "image_consistency"] for line in out.splitlines()
    )
    table = compare_table(summarise(RECORDS), summarise(RECORDS[:2]))
    assert any(
        line.split() == ["generation", "text_quality", "60.0", "–", "–"]
        for line in table.splitlines()
    )
    assert main(["bench", "compare", str(tmp_path / "a"), str(tmp_path / "none")]) == 2
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{bad", "cannot read {path}: Expecting property name"),
        ("[1]", "{path} is not a JSON object"),
        ("{}", "{path} has no overall"),
        ('{"overall": {"count": 1}, "per_task": {}, "per_category": {}}', "has no metrics"),
        (
            '{"overall": {"count": 1, "metrics": {"text_quality": {"mean": 1, "ci95": [1]}}},'
            ' "per_task": {}, "per_category": {}}',
            "text_quality: ci95 must be two numbers",
        ),
    ],
)
def test_compare_names_a_summary_json_that_is_not_one(tmp_path, capsys, text, message):
    write_report(tmp_path / "a", summarise(RECORDS))
    (tmp_path / "b").mkdir()
    path = tmp_path / "b" / "summary.json"
    path.write_text(text)
    assert main(["bench", "compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert message.format(path=path) in err and len(err.strip().splitlines()) == 1
