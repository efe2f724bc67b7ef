"""Instructions as people type them: seeded rephrasings of the world's instruction templates.

The task generators write one tidy sentence ("Make the blue star black."). People write "could
you make the blue star black?", "please turn the blue object black", "make the blue star black
thanks". `rephrase` turns a template instruction into such a variant without changing what it
asks for: polite wrappers and questions, another word for "shape", American spelling, lower
case, a missing or different final mark. Training data uses it; ShapeBench keeps the templates,
so the benchmark measures the skill and the hand-written set (`handwritten.py`) the phrasing.
"""

from __future__ import annotations

import random
import re

# "{v}": the request with its first letter lowered and its final mark removed.
WRAPPERS: tuple[str, ...] = (
    "Please {v}.",
    "{V}, please.",
    "Please, {v}.",
    "Could you {v}?",
    "Could you please {v}?",
    "Can you {v}?",
    "Can you please {v}?",
    "Would you {v}?",
    "I'd like you to {v}.",
    "I would like you to {v}.",
    "I want you to {v}.",
    "I need you to {v}.",
    "Go ahead and {v}.",
    "Kindly {v}.",
    "Now {v}.",
    "Just {v}.",
    "{V}. Thanks!",
    "{V}, thank you.",
    "{V} for me.",
    "Hey, {v}.",
    "Ok, {v}.",
    "Your task: {v}.",
    "Here is what I want: {v}.",
)
# Words for "shape" that a person may use instead ("the blue object").
SHAPE_WORDS: tuple[tuple[str, str], ...] = (
    ("object", "objects"),
    ("thing", "things"),
    ("item", "items"),
    ("figure", "figures"),
)
SPELLINGS: dict[str, str] = {"colour": "color", "coloured": "colored", "recolour": "recolor"}
# Instructions starting with these words are not plain requests a wrapper can take.
UNWRAPPABLE = ("If ",)


def vocabulary_lines() -> list[str]:
    """Every word `rephrase` can write that the templates do not (for the word-level vocabulary)."""
    lines = [w.replace("{V}", " ").replace("{v}", " ") for w in WRAPPERS]
    lines += [" ".join(pair) for pair in SHAPE_WORDS] + list(SPELLINGS.values())
    lines += [w.capitalize() for w in SPELLINGS.values()] + ["! ? . ,"]
    return lines + [line.lower() for line in lines]


def _lower_first(text: str) -> str:
    return text if text.startswith("I ") else text[:1].lower() + text[1:]


def _respell(text: str) -> str:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        new = SPELLINGS[word.lower()]
        return new.capitalize() if word[0].isupper() else new

    return re.sub(r"\b(?:[Cc]oloured|[Cc]olour|[Rr]ecolour)\b", swap, text)


def _shape_word(text: str, rng: random.Random) -> str:
    singular, plural = rng.choice(SHAPE_WORDS)
    text = re.sub(r"\bshapes\b", plural, text)
    return re.sub(r"\bshape\b", singular, text)


def rephrase(instruction: str, rng: random.Random) -> str:
    """A variant of a template instruction with the same meaning (the input itself ~30%)."""
    if rng.random() < 0.3:
        return instruction
    text = instruction
    if rng.random() < 0.3:
        text = _shape_word(text, rng)
    if rng.random() < 0.25:
        text = _respell(text)
    body = text.rstrip(".!?")
    if rng.random() < 0.55 and not text.startswith(UNWRAPPABLE):
        text = rng.choice(WRAPPERS).replace("{V}", body).replace("{v}", _lower_first(body))
    ending = rng.random()
    if ending < 0.3:
        text = text.rstrip(".!?")
    elif ending < 0.4 and text.endswith("."):
        text = text[:-1] + "!"
    case = rng.random()
    if case < 0.15:
        text = text.lower()
    elif case < 0.4:
        text = _lower_first(text)
    return text
