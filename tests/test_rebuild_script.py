"""scripts/rebuild_shapes_model.sh end to end with every step tiny (SMOKE=1): data, the initial
model, three SFT stages, ShapeBench of the rebuilt and the shipped model and the comparison;
a second run finds every step done."""

from __future__ import annotations

from tests.conftest import run_smoke_script


def test_the_rebuild_script_runs_every_step_and_resumes(tmp_path):
    work = tmp_path / "rebuild"
    first = run_smoke_script("rebuild_shapes_model.sh", str(work))
    assert first.returncode == 0, first.stderr[-2000:]
    for stage in ("sft1", "sft2", "sft3"):
        assert (work / stage / "final" / "config.json").is_file()
    lines = [line for line in first.stdout.splitlines() if line.startswith("output_alignment")]
    assert len(lines) == 1 and all(word in lines[0] for word in ("shipped", "rebuilt", "paired"))
    marker = (work / "sft3" / "final" / "config.json").stat().st_mtime_ns
    again = run_smoke_script(
        "rebuild_shapes_model.sh", str(work)
    )  # everything done: nothing trained again
    assert again.returncode == 0, again.stderr[-2000:]
    assert "trained model written" not in again.stdout + again.stderr
    assert (work / "sft3" / "final" / "config.json").stat().st_mtime_ns == marker
