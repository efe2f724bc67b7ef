"""`paradiff shapes study`: the paper's claims tested on the shapes world, with seeds and intervals.

One command trains and evaluates every arm of four comparisons and writes a Markdown report:

- decoding (the paper's Table 3): parallel against sequential decoding of one model, same steps;
- RL (Table 4): SFT against output-level RL against ParaRL, for each reward, same compute,
  prompts and seeds;
- scored steps (Table 5): ParaRL with s scored steps per rollout batch, drawn from the whole
  trajectory as in the paper, and beside them the reference s drawn from its later half (a
  labelled variant);
- thinking: the SFT recipe trained with and without reasoning text.

Every arm is evaluated on ShapeBench greedy and with image temperature 1, with the exact sampler
(no speed preset: a preset keeps one modality's stale keys and values while the other decodes,
the very interaction under test): decoding arms over sampling seeds, trained arms over training
seeds (each evaluated at temperature 1 with its own seed). An arm's score on a metric is the mean
over its runs and prompts; its 95% interval is the bootstrap interval over prompts of the
per-prompt mean over runs. A claim "A beats B on m" is judged on mean(A) - mean(B) with an
interval that resamples both arms' runs (training or sampling seeds) and the prompts, paired
(`paradiff.bench.report.arm_difference_interval`): reproduced when it lies above 0, reversed when
below, not reproduced otherwise.

Work is kept in `--out` unit by unit (an RL or SFT run folder, a ShapeBench run folder); a re-run
skips finished units and resumes interrupted ones, so the full setting can run unattended for hours
and be restarted at will. What a study is of — the model (the sha256 of its weights), the records
and recipes (theirs), the other inputs and the settings — is written to `study_inputs.json` before
its first unit; a re-run with anything different is refused before any work (its units would mix
two studies). The report names the model by that digest, the date and the wall time.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paradiff.bench.generate import pipeline_answerer, sampler_settings
from paradiff.bench.items import METRICS
from paradiff.bench.report import arm_difference_interval, bootstrap_interval, run_matrix
from paradiff.bench.runner import BenchFolder
from paradiff.checkpoint import CheckpointError, resolve_checkpoint_dir
from paradiff.command_support import file_digest
from paradiff.files import file_above
from paradiff.pipeline import ParallelPipeline
from paradiff.shapes.bench import run_shapebench, select_samples
from paradiff.shapes.probe import GREEDY
from paradiff.training import pararl, sft
from paradiff.training.pararl_settings import RLSettings
from paradiff.training.runs import FINAL_DIR
from paradiff.training.sft_settings import SFTSettings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
INPUTS_FILE = "study_inputs.json"
TEMPERATURES = {"greedy": 0.0, "t1": 1.0}  # image temperature of the evaluations
WHOLE_TRAJECTORY = (0.0, 1.0)  # the window of scored steps (share of the timeline), as the paper
LATER_HALF = (0.5, 1.0)  # the labelled variant's window


@dataclass(frozen=True)
class StudySettings:
    """How big a study is: prompts, seeds, and the RL and SFT recipes' overrides."""

    limit: int | None  # ShapeBench prompts (None: all 300)
    train_seeds: tuple[int, ...]  # RL runs per arm
    sampling_seeds: tuple[int, ...]  # evaluations at temperature 1 of a decoding arm
    sft_seeds: tuple[int, ...]  # SFT runs per thinking arm
    scored_steps: tuple[int, ...]  # s of Table 5 (the reference value is the recipe's)
    rewards: tuple[str, ...]  # reward kinds of Table 4 (the first is the reference)
    rl_overrides: tuple[str, ...] = ()
    sft_overrides: tuple[str, ...] = ()
    batch_size: int = 50  # ShapeBench samples per sampler run


SETTINGS: dict[str, StudySettings] = {
    # minutes on a laptop: the whole pipeline, tiny runs (the numbers mean nothing)
    "quick": StudySettings(
        limit=4,
        train_seeds=(0, 1, 2),
        sampling_seeds=(0, 1, 2),
        sft_seeds=(0,),
        scored_steps=(1, 3),
        rewards=("clip", "scene_agreement"),
        rl_overrides=(
            "train.steps=1",
            "rollout.prompts=2",
            "rollout.group=2",
            "reward.stats_min_prompts=2",
            "data.limit=20",
        ),
        sft_overrides=("train.steps=2", "train.batch_size=4", "eval.call="),
        batch_size=4,
    ),
    # on the 2-core CPU: the four claims on the first 100 prompts; RL with three seeds, the exact
    # trajectory reward (the reference here) and the shapes CLIP, a short recipe (40 steps, far
    # below the budget of a recipe that moves held-out scores); one short SFT run (3500 steps, no
    # training-time evaluations) per thinking arm
    "medium": StudySettings(
        limit=100,
        train_seeds=(0, 1, 2),
        sampling_seeds=(0, 1, 2),
        sft_seeds=(0,),
        scored_steps=(1, 2, 3, 5),
        rewards=("scene_agreement", "clip"),
        rl_overrides=(
            "train.steps=40",
            "train.lr=5e-5",
            "train.updates_per_batch=2",
            "train.threads=2",
            "output.save_every=10",
        ),
        sft_overrides=("train.steps=3500", "eval.call=", "output.save_every=250"),
    ),
    # a day on the 2-core CPU: the shipped recipes, all of ShapeBench
    "full": StudySettings(
        limit=None,
        train_seeds=(0, 1, 2),
        sampling_seeds=(0, 1, 2),
        sft_seeds=(0,),
        scored_steps=(1, 2, 3, 5),
        rewards=("clip", "scene_agreement"),
    ),
}


class StudyError(ValueError):
    """A study that cannot run with the inputs given."""


@dataclass(frozen=True)
class Claim:
    """'`better` beats `worse` on `metric`', and the arms shown beside them in its table."""

    title: str
    statement: str
    better: str
    worse: str
    metric: str
    arms: tuple[str, ...]


@dataclass
class Inputs:
    """What a study starts from: the model under test, training data and the recipes."""

    model: str  # the SFT model (decoding arms, RL start and reference)
    records: str  # training records JSONL (RL prompts)
    pretokenized: str | None = None  # SFT data (the thinking comparison; skipped when None)
    sft_init: str | None = None  # the untrained model SFT starts from
    rl_recipe: str = str(CONFIGS / "shapes-pararl.yaml")
    sft_recipe: str = str(CONFIGS / "shapes-sft.yaml")
    clip_dir: str | None = None  # the CLIP reward's directory (default: the recipe's)


class Study:
    """Runs the units of a study in `out` and reports them (see the module docstring)."""

    def __init__(
        self,
        inputs: Inputs,
        out: str | os.PathLike,
        settings: StudySettings,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        if settings.sft_seeds and bool(inputs.pretokenized) != bool(inputs.sft_init):
            raise StudyError("the thinking comparison needs both the pre-tokenized data and init")
        self.inputs, self.settings, self.progress, self.log = inputs, settings, progress, log
        self.out = Path(out)
        self.samples = select_samples(settings.limit)
        self.reference_steps = self._rl_settings("ref", 0, []).reward.steps
        self.thinking = bool(settings.sft_seeds and inputs.pretokenized)  # that comparison runs

    # -- evaluation units ----------------------------------------------------------------------
    def evaluate(self, model: str, name: str, temperature: str, seed: int, mode: str) -> Path:
        """ShapeBench of `model` into eval/<name>-<temperature>-seed<seed>-<mode> (resumed)."""
        folder = self.out / "eval" / f"{name}-{temperature}-seed{seed}-{mode}"
        if (folder / "summary.json").is_file():
            return folder
        self.log(f"evaluating {folder.name}")
        pipe = ParallelPipeline.from_pretrained(model)
        overrides = {  # one greedy-text answer per prompt, whatever the model ships
            **GREEDY,
            "mode": mode,
            "image_temperature": TEMPERATURES[temperature],
            "seed": seed,
            "speed": "exact",  # every arm alike, no cache (the module docstring says why)
        }
        sampler = sampler_settings(pipe, overrides)  # what runs (a resumed folder compares it)
        settings = {"benchmark": "shapebench", "model": model, "sampler": sampler}
        answer = pipeline_answerer(pipe, self.settings.batch_size, overrides, pipe.image_size)
        run_shapebench(
            answer=answer, settings=settings, samples=self.samples, out=folder, mode=mode
        )
        return folder

    def evaluations(self, model: str, name: str, seeds: Sequence[int], mode="parallel"):
        """{temperature: [run folders]}: one greedy run (seed-free), one per seed at T = 1."""
        return {
            "greedy": [self.evaluate(model, name, "greedy", seeds[0], mode)],
            "t1": [self.evaluate(model, name, "t1", seed, mode) for seed in seeds],
        }

    # -- training units ------------------------------------------------------------------------
    def _rl_settings(self, name: str, seed: int, overrides: list[str]) -> RLSettings:
        paths = [
            f"model.init={self.inputs.model}",
            f"data.records={self.inputs.records}",
            f"output.dir={self.out / 'rl' / name}",
            f"train.seed={seed}",
        ]
        if self.inputs.clip_dir:
            paths.append(f"reward.clip_dir={self.inputs.clip_dir}")
        changes = [*paths, *self.settings.rl_overrides, *overrides]
        return RLSettings.load(self.inputs.rl_recipe, changes)

    def rl_model(self, at: str, reward: str, steps: int, seed: int, window=WHOLE_TRAJECTORY) -> str:
        """The final model of one RL run (trained, or resumed, first); `window` the share of the
        sampler's timeline its scored steps are drawn from."""
        name = f"{'pararl' if at == 'trajectory' else 'output-rl'}-{reward}-s{steps}"
        name += f"{'-later-half' if window == LATER_HALF else ''}-seed{seed}"
        start, end = window
        changes = [
            f"reward.at={at}",
            f"reward.kind={reward}",
            f"reward.steps={steps}",
            f"reward.window=[{start},{end}]",
        ]
        return self._trained(pararl.ParaRLRun, self._rl_settings(name, seed, changes), name)

    def sft_model(self, reasoning: bool, seed: int) -> str:
        name = f"sft-{'thinking' if reasoning else 'no-thinking'}-seed{seed}"
        changes = [
            f"model.init={self.inputs.sft_init}",
            f"data.pretokenized={self.inputs.pretokenized}",
            f"data.reasoning={str(reasoning).lower()}",
            f"train.seed={seed}",
            f"output.dir={self.out / 'sft' / name}",
            *self.settings.sft_overrides,
        ]
        return self._trained(sft.SFTRun, SFTSettings.load(self.inputs.sft_recipe, changes), name)

    def _trained(self, run_class, settings: RLSettings | SFTSettings, name: str) -> str:
        final = Path(settings.output.dir) / FINAL_DIR
        if not (final / "config.json").is_file():
            self.log(f"training {name}")
            started = Path(settings.output.dir).is_dir()
            run_class(settings, resume=started, progress=self.progress).run()  # or resume it
        return str(final)

    # -- the study -----------------------------------------------------------------------------
    def arms(self) -> dict[str, dict[str, list[Path]]]:
        """Every arm's evaluation folders by temperature, running what is missing."""
        s = self.settings
        model = self.inputs.model
        arms = {
            "parallel": self.evaluations(model, "sft", s.sampling_seeds),
            "sequential": self.evaluations(model, "sft", s.sampling_seeds, "sequential"),
        }
        arms["SFT"] = arms["parallel"]
        for reward in s.rewards:
            for at, label in (("final", "output-level RL"), ("trajectory", "ParaRL")):
                arms[f"{label} ({reward})"] = self.trained_arm(at, reward, self.reference_steps)
        for steps in s.scored_steps:
            arms[f"ParaRL s={steps}"] = self.trained_arm("trajectory", s.rewards[0], steps)
        arms[self.later_half_arm] = self.trained_arm(
            "trajectory", s.rewards[0], self.reference_steps, LATER_HALF
        )
        labels = {True: "thinking", False: "no thinking"} if self.thinking else {}
        for reasoning, label in labels.items():
            runs = [self.sft_model(reasoning, seed) for seed in s.sft_seeds]
            arms[label] = self.merged(
                self.evaluations(run, Path(run).parent.name, s.sampling_seeds) for run in runs
            )
        return arms

    @property
    def later_half_arm(self) -> str:
        return f"ParaRL s={self.reference_steps}, later half"

    def trained_arm(
        self, at: str, reward: str, steps: int, window=WHOLE_TRAJECTORY
    ) -> dict[str, list[Path]]:
        """Per training seed: its model evaluated greedy and at T = 1 (with that seed)."""
        per_seed = []
        for seed in self.settings.train_seeds:
            model = self.rl_model(at, reward, steps, seed, window)
            per_seed.append(self.evaluations(model, Path(model).parent.name, [seed]))
        return self.merged(per_seed)

    @staticmethod
    def merged(parts) -> dict[str, list[Path]]:
        merged: dict[str, list[Path]] = {name: [] for name in TEMPERATURES}
        for part in parts:
            for name, folders in part.items():
                merged[name] += folders
        return merged

    def claims(self) -> list[Claim]:
        s = self.settings
        reference = s.rewards[0]
        claims = [
            Claim(
                "Parallel against sequential decoding (Table 3)",
                "parallel decoding gives higher output alignment than sequential decoding",
                "parallel",
                "sequential",
                "output_alignment",
                ("parallel", "sequential"),
            )
        ]
        for reward in s.rewards:
            arms = ("SFT", f"output-level RL ({reward})", f"ParaRL ({reward})")
            claims += [
                Claim(
                    f"SFT, output-level RL and ParaRL, reward {reward} (Table 4)",
                    f"ParaRL ({reward}) gives higher output alignment than output-level RL",
                    arms[2],
                    arms[1],
                    "output_alignment",
                    arms,
                ),
                Claim(
                    f"SFT, output-level RL and ParaRL, reward {reward} (Table 4)",
                    f"ParaRL ({reward}) gives higher output alignment than SFT",
                    arms[2],
                    arms[0],
                    "output_alignment",
                    arms,
                ),
            ]
        steps = (*(f"ParaRL s={n}" for n in s.scored_steps), self.later_half_arm)
        for more in s.scored_steps[1:]:  # each s against the fewest scored steps
            claims.append(
                Claim(
                    f"Scored steps per rollout batch, reward {reference} (Table 5)",
                    f"ParaRL with s={more} beats s={s.scored_steps[0]} on output alignment",
                    f"ParaRL s={more}",
                    steps[0],
                    "output_alignment",
                    steps,
                )
            )
        if self.thinking:
            claims.append(
                Claim(
                    "Thinking against no thinking (same SFT recipe)",
                    "training with reasoning text raises image alignment",
                    "thinking",
                    "no thinking",
                    "image_alignment",
                    ("thinking", "no thinking"),
                )
            )
        return claims

    def identity(self) -> dict[str, Any]:
        """What this study is of: its inputs (files by sha256) and settings."""
        inputs = self.inputs
        return {
            "model": inputs.model,
            "model_sha256": model_sha256(inputs.model),
            "records_sha256": file_digest(inputs.records),
            "rl_recipe_sha256": file_digest(inputs.rl_recipe),
            "sft_recipe_sha256": file_digest(inputs.sft_recipe) if self.thinking else None,
            "pretokenized": inputs.pretokenized,
            "sft_init": inputs.sft_init,
            "clip_dir": inputs.clip_dir,
            "settings": json.loads(json.dumps(dataclasses.asdict(self.settings))),
        }

    def claim_folder(self) -> dict[str, Any]:
        """The study's identity, written to `--out` on its first run; StudyError when `--out`
        holds a study of anything else (before any unit runs)."""
        identity = self.identity()
        path = self.out / INPUTS_FILE
        if path.is_file():
            try:
                earlier = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                raise StudyError(f"{path} is unreadable ({error}): give a new --out") from None
            changed = [
                k
                for k in identity
                if not isinstance(earlier, dict) or earlier.get(k) != identity[k]
            ]
            if changed:
                raise StudyError(
                    f"{self.out} holds a study of other inputs ({', '.join(changed)} differ):"
                    " give a new --out"
                )
        else:
            if self.out.is_dir() and any(self.out.iterdir()):
                raise StudyError(
                    f"{self.out} holds files that are not a paradiff study (no {INPUTS_FILE}):"
                    " give a new --out"
                )
            self.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(identity, indent=1) + "\n")
        return identity

    def run(self, report: str | os.PathLike | None = None) -> dict[str, Any]:
        """Run (or resume) every unit, judge every claim; write `report` (Markdown) if given."""
        if self.reference_steps not in self.settings.scored_steps:
            raise StudyError(
                f"the recipe's reward.steps {self.reference_steps} is not among the scored steps"
                f" {self.settings.scored_steps}"
            )
        if report is not None:
            check_report_path(Path(report))
        started = time.perf_counter()
        identity = self.claim_folder()
        arms = self.arms()
        results = {
            "settings": dataclasses.asdict(self.settings),
            "inputs": identity,
            "date": datetime.date.today().isoformat(),
            "wall_minutes": round((time.perf_counter() - started) / 60, 1),  # this run's part
            "claims": [],
        }
        for claim in self.claims():
            for temperature in TEMPERATURES:
                folders = {arm: arms[arm][temperature] for arm in claim.arms}
                results["claims"].append(judge(claim, temperature, folders))
        (self.out / "study.json").write_text(json.dumps(results, indent=1) + "\n")
        if report is not None:
            write_report(results, Path(report), self.settings)
        return results


def model_sha256(model: str) -> str:
    """The sha256 of a model's weights: of its safetensors file, or (sharded) of the files'
    digests in name order; `model` as `ParallelPipeline.from_pretrained` takes it."""
    try:
        directory = resolve_checkpoint_dir(model)
    except (CheckpointError, FileNotFoundError) as err:
        raise StudyError(f"the model {model}: {err}") from None
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise StudyError(f"the model {model} has no safetensors weights to name it by")
    if len(files) == 1:
        return file_digest(files[0])
    digest = hashlib.sha256()
    for file in files:
        digest.update(bytes.fromhex(file_digest(file)))
    return digest.hexdigest()


# -- statistics -------------------------------------------------------------------------------
Scores = dict[str, dict[str, Any]]  # one run's score records by prompt id


def load_scores(folders: Sequence[Path]) -> list[Scores]:
    """Each ShapeBench run folder's score records, read once."""
    return [BenchFolder(folder).scored() for folder in folders]


def per_prompt(runs: Sequence[Scores], metric: str) -> dict[str, float]:
    """Prompt id -> the metric's mean over `runs` (prompts every run scored)."""
    ids = sorted(set.intersection(*(set(run) for run in runs)))
    values = {}
    for item in ids:
        scores = [run[item].get(metric) for run in runs]
        if all(score is not None for score in scores):
            values[item] = float(np.mean(scores))
    return values


def arm_summary(runs: Sequence[Scores]) -> dict[str, Any]:
    """{metric: {"mean", "ci95"}} of an arm (mean over runs and prompts, interval over prompts)
    and the run means' range over seeds."""
    summary = {"runs": len(runs)}
    for metric in METRICS:
        values = per_prompt(runs, metric)
        if values:
            x = list(values.values())
            run_means = [np.mean(list(per_prompt([run], metric).values())) for run in runs]
            summary[metric] = {
                "mean": float(np.mean(x)),
                "ci95": list(bootstrap_interval(x)),
                "n": len(x),
                "seed_range": [float(min(run_means)), float(max(run_means))],
            }
    return summary


def judge(claim: Claim, temperature: str, folders: dict[str, list[Path]]) -> dict[str, Any]:
    """The arms' summaries and the verdict on better - worse, its interval over both arms' runs
    and the prompts (the prompts every run of both arms scored)."""
    scores = {arm: load_scores(runs) for arm, runs in folders.items()}
    better = per_prompt(scores[claim.better], claim.metric)
    worse = per_prompt(scores[claim.worse], claim.metric)
    shared = sorted(set(better) & set(worse))
    mean, low, high = 0.0, 0.0, 0.0
    if shared:
        better_runs = run_matrix(scores[claim.better], claim.metric, shared)  # (runs, prompts)
        worse_runs = run_matrix(scores[claim.worse], claim.metric, shared)
        mean = float(better_runs.mean() - worse_runs.mean())
        low, high = arm_difference_interval(better_runs, worse_runs)
    verdict = "reproduced" if low > 0 else "reversed" if high < 0 else "not reproduced"
    return {
        "title": claim.title,
        "statement": claim.statement,
        "metric": claim.metric,
        "temperature": temperature,
        "better": claim.better,
        "worse": claim.worse,
        "difference": {"mean": mean, "ci95": [low, high]},
        "n": len(shared),
        "verdict": verdict,
        "arms": {arm: arm_summary(runs) for arm, runs in scores.items()},
    }


# -- the report -------------------------------------------------------------------------------
def _cell(value: dict[str, Any] | None) -> str:
    if value is None:
        return ""
    low, high = value["ci95"]
    return f"{value['mean']:.1f} [{low:.1f}, {high:.1f}]"


def sentence(result: dict[str, Any]) -> str:
    d = result["difference"]
    low, high = d["ci95"]
    return (
        f"**{result['verdict'].capitalize()}** ({result['temperature']}): {result['statement']}"
        f" — {result['better']} minus {result['worse']} on {result['metric']}: "
        f"{d['mean']:+.1f} [{low:+.1f}, {high:+.1f}] over {result['n']} prompts."
    )


def multiple_comparisons(verdicts: int) -> str:
    """The report's sentence on reading many verdicts at once."""
    return (
        f"{verdicts} verdicts are read here, each at 95% without correction for multiple"
        f" comparisons: were every claim false, about {0.05 * verdicts:.1f} of them would still"
        " read reproduced or reversed by chance, so a lone verdict whose interval barely excludes"
        " 0 is a lead to rerun with more seeds, not a finding."
    )


REPORT_TITLE = "# The paper's claims on the shapes world"


def check_report_path(path: Path) -> None:
    """Refuse, before the study runs, a report path it could not write or would write over
    someone else's file: a folder, a path below a file, a file that is no study report."""
    if path.is_dir():
        raise StudyError(f"--report {path} is a folder: name a Markdown file")
    blocked = file_above(path)
    if blocked:
        raise StudyError(f"--report {path}: {blocked} is a file, not a folder")
    if path.exists():
        try:
            first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        except (OSError, UnicodeDecodeError):
            first = ""
        if first != REPORT_TITLE:
            raise StudyError(
                f"--report {path} exists and is not a study report: it is never replaced"
            )


def write_report(results: dict[str, Any], path: Path, settings: StudySettings) -> None:
    """Markdown: per claim title and temperature a table of its arms and one verdict sentence
    per claim, and a figure of the claims' metric per arm (matplotlib) beside the report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = results["inputs"]
    lines = [
        REPORT_TITLE,
        "",
        f"Model: {inputs['model']} (weights sha256 {inputs['model_sha256'][:12]}). Written"
        f" {results['date']}; this run's wall time {results['wall_minutes']} minutes (units"
        " finished by earlier runs of the same study are reused).",
        "",
        f"Settings: {json.dumps(dataclasses.asdict(settings))}",
        "",
        "Each cell: mean over runs and prompts [95% bootstrap interval over prompts]. A verdict"
        " is read off the difference of two arms' means with a 95% interval that resamples both"
        " arms' runs (training or sampling seeds) and the prompts, paired: reproduced when it"
        " lies above 0, reversed when below, not reproduced otherwise.",
        "",
        multiple_comparisons(len(results["claims"])),
    ]
    tables: dict[tuple[str, str], list[dict[str, Any]]] = {}  # claims sharing arms share a title
    for result in results["claims"]:
        tables.setdefault((result["title"], result["temperature"]), []).append(result)
    columns = min(2, len(tables))  # a table's greedy and T = 1 panels side by side
    rows = -(-len(tables) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), squeeze=False)
    for index, ((title, temperature), verdicts) in enumerate(tables.items()):
        arms, metric = verdicts[0]["arms"], verdicts[0]["metric"]
        lines += ["", f"## {title}, {temperature}", ""]
        lines.append("| arm | runs | " + " | ".join(METRICS) + " |")
        lines.append("|---|---|" + "---|" * len(METRICS))
        for arm, summary in arms.items():
            cells = [_cell(summary.get(m)) for m in METRICS]
            lines.append(f"| {arm} | {summary['runs']} | " + " | ".join(cells) + " |")
        for result in verdicts:
            lines += ["", sentence(result)]
        ax = axes[index // columns][index % columns]
        names = list(arms)
        values = [arms[a].get(metric) for a in names]
        means = [v["mean"] if v else 0.0 for v in values]
        errors = np.array(
            [[v["mean"] - v["ci95"][0], v["ci95"][1] - v["mean"]] if v else [0, 0] for v in values]
        ).T
        ax.bar(range(len(names)), means, yerr=errors, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{title.split(' (')[0]}\n{metric} ({temperature})", fontsize=7)
    for ax in axes.flat[len(tables) :]:
        ax.axis("off")
    figure.tight_layout()
    figure_path = path.with_suffix(".png")
    figure.savefig(figure_path, dpi=110)
    plt.close(figure)
    lines += ["", f"![the claims' metric per arm]({figure_path.name})", ""]
    path.write_text("\n".join(lines))
