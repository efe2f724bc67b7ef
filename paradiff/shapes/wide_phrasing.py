"""A wider vocabulary of requests, in two disjoint sets: phrasings training may use and phrasings
held out for ShapeBench-wild.

`paradiff.shapes.phrasing.rephrase` wraps a template instruction in the requests people type
("Could you …?"). The phrasings here go further: other verbs for the same edit ("Take out the
red circle", "Color the star blue", "Get the red circle out") and other requests around it ("Hey,
could you …?", "Edit the image: …"). Each phrasing belongs to one set:

- `TRAINING` phrasings: `training_rephrase`, which `make-dataset --phrasing wide` uses on top of
  `rephrase` (the default phrasing stays as it was, so default datasets stay byte-identical);
- `HELD_OUT` phrasings: `held_out_rephrase`, which only ShapeBench-wild uses
  (`paradiff.shapes.dataset.wild_samples`). No training phrasing writes one: `uses_held_out`
  recognises every held-out phrasing in an instruction, and the tests run it over training draws.

A rewrite keeps every colour, shape, number and position of the instruction, so the target scene
and the reasoning stay as they are. Every word is one the shipped tokenizer knows (its ids are
fixed), so a held-out phrasing is new wording, not unknown tokens.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from paradiff.shapes.language import COLOUR_RE
from paradiff.shapes.phrasing import UNWRAPPABLE, rephrase


@dataclass(frozen=True)
class Phrasing:
    """A wrapper ('{V}': the request, '{v}': it with a lower first letter, both without the final
    mark) or a rewrite of the request (`pattern` -> `replacement`); `detector` finds it in any
    instruction, whatever its case."""

    name: str
    detector: str
    wrapper: str = ""
    pattern: str = ""
    replacement: str = ""
    any_request: bool = False  # a wrapper that also takes "If …, …" requests

    def applies(self, text: str) -> bool:
        if self.wrapper:
            return self.any_request or not text.startswith(UNWRAPPABLE)
        return re.fullmatch(self.pattern, text) is not None

    def apply(self, text: str) -> str:
        if not self.wrapper:
            return re.sub(self.pattern, self.replacement, text)
        body = text.rstrip(".!?")
        lowered = body if body.startswith("I ") else body[:1].lower() + body[1:]
        return self.wrapper.replace("{V}", body).replace("{v}", lowered)

    def used_in(self, text: str) -> bool:
        return re.search(self.detector, text, flags=re.IGNORECASE) is not None


# What the edit verbs of `paradiff.shapes.edit_tasks` write, as regexes of a whole one-edit
# instruction: the name of what it edits never spans a second clause ("… and …", "…, then …").
REF = r"((?:the|every|all|both|two) (?:(?! and |, then | into | with ).)+)"
REMOVE = rf"(?:Remove|Delete|Erase) {REF}\."
RECOLOUR = rf"(?:Make|Paint|Turn) {REF} ({COLOUR_RE})\."
RESHAPE = rf"(?:Turn|Replace) {REF} (?:into|with) ((?:a|an) [a-z ]+)\."
CELL = r"the (?:top|bottom) (?:left|right) corner|row \d, column \d"
MOVE = rf"(?:Move|Slide|Put) {REF} (?:to|into|in) ({CELL})\."

TRAINING: tuple[Phrasing, ...] = (
    Phrasing("so", r"^so, ", wrapper="So, {v}."),
    Phrasing("ok so", r"^ok so ", wrapper="Ok so {v}."),
    Phrasing("now please", r"^now please ", wrapper="Now please {v}."),
    Phrasing("if you can", r", if you can[.!?]?$", wrapper="{V}, if you can."),
    Phrasing("your task", r"^here is your task: ", wrapper="Here is your task: {v}."),
    Phrasing("take out", r"\btake out\b", pattern=REMOVE, replacement=r"Take out \1."),
    Phrasing(
        "change to",
        rf"\bchange (?!the colou?r of ).+ to {COLOUR_RE}\b",
        pattern=RECOLOUR,
        replacement=r"Change \1 to \2.",
    ),
    Phrasing("make into", r"\bmake .+ into an? ", pattern=RESHAPE, replacement=r"Make \1 into \2."),
)
HELD_OUT: tuple[Phrasing, ...] = (
    Phrasing("hey could you", r"^hey, could you ", wrapper="Hey, could you {v}?"),
    Phrasing("like it if", r"^i'd like it if you could ", wrapper="I'd like it if you could {v}."),
    Phrasing("would you please", r"^would you please ", wrapper="Would you please {v}?"),
    Phrasing("comma thanks", r", thanks[.!?]?$", wrapper="{V}, thanks.", any_request=True),
    Phrasing(
        "edit the image", r"^edit the image: ", wrapper="Edit the image: {v}.", any_request=True
    ),
    Phrasing(
        "color",
        r"\bcolor (?:the|every|all|both|two) ",
        pattern=RECOLOUR,
        replacement=r"Color \1 \2.",
    ),
    Phrasing("get out", r"\bget (?!rid of ).+ out\b", pattern=REMOVE, replacement=r"Get \1 out."),
    Phrasing(
        "change into",
        r"\bchange (?!the colou?r of ).+ into an? ",
        pattern=RESHAPE,
        replacement=r"Change \1 into \2.",
    ),
    Phrasing(
        "take to",
        r"\btake (?!away |out ).+ to (?:the (?:top|bottom)|row \d)",
        pattern=MOVE,
        replacement=r"Take \1 to \2.",
    ),
    Phrasing(
        "the colour one",
        rf"(?<!except )(?<!but )\bthe {COLOUR_RE} one\b",
        pattern=rf"(.*\bthe )({COLOUR_RE}) shape\b(.*)",
        replacement=r"\1\2 one\3",
    ),
)


def _rewrite(text: str, phrasings: tuple[Phrasing, ...], rng: random.Random) -> tuple[str, bool]:
    """`text` with one random rewrite of `phrasings` that applies (and whether one did)."""
    rewrites = [p for p in phrasings if not p.wrapper and p.applies(text)]
    if not rewrites:
        return text, False
    return rng.choice(rewrites).apply(text), True


def _wrap(text: str, phrasings: tuple[Phrasing, ...], rng: random.Random) -> str:
    wrappers = [p for p in phrasings if p.wrapper and p.applies(text)]
    return rng.choice(wrappers).apply(text)


def held_out_rephrase(instruction: str, rng: random.Random) -> str:
    """A template instruction in held-out phrasings only: a held-out verb where one applies
    (70%), a held-out request around it otherwise or besides (60%)."""
    text, rewritten = instruction, False
    if rng.random() < 0.7:
        text, rewritten = _rewrite(text, HELD_OUT, rng)
    if not rewritten or rng.random() < 0.6:
        text = _wrap(text, HELD_OUT, rng)
    return text


def training_rephrase(instruction: str, rng: random.Random) -> str:
    """`rephrase` widened by the training phrasings: a training verb where one applies (40%),
    then a training request around it (25%) or `rephrase`'s variants."""
    text = instruction
    if rng.random() < 0.4:
        text, _ = _rewrite(text, TRAINING, rng)
    if rng.random() < 0.25 and not text.startswith(UNWRAPPABLE):
        return _wrap(text, TRAINING, rng)
    return rephrase(text, rng)


def uses_held_out(instruction: str) -> list[str]:
    """The names of the held-out phrasings an instruction uses."""
    return [p.name for p in HELD_OUT if p.used_in(instruction)]
