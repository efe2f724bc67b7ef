"""`ShapeSample`: one thinking-aware sample of the shapes world, JSON-friendly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from paradiff.shapes.constraints import Constraint
from paradiff.shapes.scene import Pos, Scene

TASKS: tuple[str, ...] = ("edit", "generation")
# The world's own (short) system prompts, one per task, in the family-S vocabulary.
SYSTEM_PROMPTS: dict[str, str] = {
    "edit": "Edit the image.",
    "generation": "Draw the described image.",
}


class SampleError(ValueError):
    """A sample record that lacks a field or holds one of the wrong kind."""


@dataclass
class ShapeSample:
    """Instruction, reasoning and target of one sample.

    Editing: `scene_in` is the input, `scene_out` the unique correct output. Generation:
    `scene_in` is None, `constraints` is what a correct scene must satisfy and `scene_out` is the
    one scene the reasoning describes (a correct one).
    """

    id: str
    task: str
    category: str
    instruction: str
    reasoning: str
    scene_out: Scene
    scene_in: Scene | None = None
    constraints: list[Constraint] | None = None
    seed: int = 0
    difficulty: int = 1

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise SampleError(f"unknown task {self.task!r} (expected one of {TASKS})")
        if self.task == "edit" and self.scene_in is None:
            raise SampleError(f"editing sample {self.id} has no input scene")
        if self.task == "generation" and not self.constraints:
            raise SampleError(f"generation sample {self.id} has no constraints")

    @property
    def system_prompt(self) -> str:
        return SYSTEM_PROMPTS[self.task]

    @property
    def base_scene(self) -> Scene:
        """What the output is compared against: the input (editing) or an empty grid."""
        if self.scene_in is not None:
            return self.scene_in
        return Scene.empty(self.scene_out.rows, self.scene_out.cols)

    def required_changes(self) -> dict[Pos, Any]:
        """Editing: cell -> content the instruction requires (None = empty) where it changes."""
        return self.base_scene.diff(self.scene_out)

    def key(self) -> str:
        """What makes two samples the same prompt: the instruction and the input scene."""
        scene = None if self.scene_in is None else self.scene_in.to_json()
        return json.dumps([self.task, self.instruction, scene], sort_keys=True)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "category": self.category,
            "instruction": self.instruction,
            "reasoning": self.reasoning,
            "scene_in": None if self.scene_in is None else self.scene_in.to_json(),
            "scene_out": self.scene_out.to_json(),
            "constraints": self.constraints,
            "seed": self.seed,
            "difficulty": self.difficulty,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ShapeSample:
        """Read `to_json` output, or a dataset record (which names the texts differently)."""
        try:
            scene_in = raw.get("scene_in")
            return cls(
                id=str(raw["id"]),
                task=raw["task"],
                category=raw["category"],
                instruction=raw.get("instruction", raw.get("user_prompt")),
                reasoning=raw.get("reasoning", raw.get("answer_text")),
                scene_out=Scene.from_json(raw["scene_out"]),
                scene_in=None if scene_in is None else Scene.from_json(scene_in),
                constraints=raw.get("constraints"),
                seed=int(raw.get("seed", 0)),
                difficulty=int(raw.get("difficulty", 1)),
            )
        except (KeyError, TypeError) as err:
            raise SampleError(f"malformed sample: missing or bad field {err}") from None

    def to_record(self, user_image: str | None, answer_image: str) -> dict[str, Any]:
        """A training record (docs/architecture.md) plus what the exact judge needs."""
        record = {
            "id": self.id,
            "system_prompt": self.system_prompt,
            "user_prompt": self.instruction,
            "user_image": user_image,
            "answer_text": self.reasoning,
            "answer_image": answer_image,
        }
        judged = self.to_json()
        for name in ("id", "instruction", "reasoning"):
            judged.pop(name)
        return {**record, **judged}
