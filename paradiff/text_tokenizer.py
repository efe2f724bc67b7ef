"""Text tokenizer: a local Hugging Face `tokenizer.json` read with the `tokenizers` library.

The model's prompt templates (see `layout.py`) need some marker strings to be single tokens;
`TextTokenizer` checks them on load so that a wrong tokenizer fails at once, not mid-sampling.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer

from paradiff.files import FileInputError, first_line, read_json_object

# Strings the prompt templates of family A rely on, each of which must encode to one id.
REQUIRED_SPECIAL_TOKENS: tuple[str, ...] = (
    "<system>",
    "</system>",
    "<user>",
    "</user>",
    "<uncondition>",
    "</answer>",
)
# Keys of tokenizer_config.json / special_tokens_map.json naming the tokenizer's own specials.
NAMED_TOKEN_KEYS: tuple[str, ...] = ("bos_token", "eos_token", "pad_token")
TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


class TokenizerError(ValueError):
    """A text tokenizer that cannot be loaded or used as the model needs."""


def _read_named_tokens(folder: Path) -> dict[str, str]:
    """bos/eos/pad token strings from tokenizer_config.json, then special_tokens_map.json."""
    named: dict[str, str] = {}
    for name in (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE):  # the map file wins
        path = folder / name
        if not path.is_file():
            continue
        try:
            settings = read_json_object(path)
        except FileInputError as err:
            raise TokenizerError(str(err)) from None
        for key in NAMED_TOKEN_KEYS:
            value = settings.get(key)
            if isinstance(value, dict):  # the AddedToken form {"content": "<s>", ...}
                value = value.get("content")
            if isinstance(value, str):
                named[key] = value
    return named


class TextTokenizer:
    """Text <-> ids, special-string aware, with no automatic BOS/EOS.

    `named_tokens` maps `bos_token`/`eos_token`/`pad_token` to their strings where the
    tokenizer folder declares them. Construction raises TokenizerError unless every string of
    `required_special_tokens` encodes to a single id.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        named_tokens: dict[str, str] | None = None,
        required_special_tokens: Sequence[str] = REQUIRED_SPECIAL_TOKENS,
        source: str = "tokenizer",
    ) -> None:
        self._tokenizer = tokenizer
        self._plain: Tokenizer | None = None  # the copy `encode_plain` uses, made on first use
        self.named_tokens = dict(named_tokens or {})
        missing = [token for token in required_special_tokens if self._single_id(token) is None]
        if missing:
            listed = ", ".join(repr(token) for token in missing)
            raise TokenizerError(f"{source} has no single-token id for {listed}")

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        required_special_tokens: Sequence[str] = REQUIRED_SPECIAL_TOKENS,
    ) -> TextTokenizer:
        """Load a tokenizer folder (with `tokenizer.json`) or a `tokenizer.json` file itself."""
        path = Path(path)
        file = path if path.is_file() else path / TOKENIZER_FILE
        if not file.is_file():
            raise TokenizerError(f"no {TOKENIZER_FILE} in {path}")
        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as err:  # the tokenizers library raises plain Exception
            raise TokenizerError(f"cannot read tokenizer {file}: {first_line(err)}") from None
        named_tokens = _read_named_tokens(file.parent)
        return cls(tokenizer, named_tokens, required_special_tokens, source=f"tokenizer {file}")

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `tokenizer.json` (and `special_tokens_map.json` when tokens are named)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._tokenizer.save(str(folder / TOKENIZER_FILE))
        if self.named_tokens:
            text = json.dumps(self.named_tokens, indent=2, ensure_ascii=False)
            (folder / SPECIAL_TOKENS_MAP_FILE).write_text(text + "\n", encoding="utf-8")
        return folder

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        """Text -> ids; added (special) strings inside `text` become their single ids."""
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def encode_plain(self, text: str) -> list[int]:
        """Text a user typed -> ids, every string in it read as text: a `</user>` or `<mask>`
        inside it becomes ordinary pieces, never the marker's id (so a prompt cannot rewrite
        the template around it). Text without added strings encodes as `encode` does."""
        if self._plain is None:
            raw = json.loads(self._tokenizer.to_str())
            for token in raw.get("added_tokens", []):
                token["special"] = True  # encode_special_tokens applies to special ones only
            plain = Tokenizer.from_str(json.dumps(raw))
            plain.encode_special_tokens = True
            self._plain = plain
        return self._plain.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Ids -> text. Raises TokenizerError for an id outside the text vocabulary."""
        ids = [int(i) for i in ids]
        outside = [i for i in ids if not 0 <= i < self.vocab_size]
        if outside:
            raise TokenizerError(
                f"id {outside[0]} is outside the text vocabulary [0, {self.vocab_size})"
            )
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """The vocabulary id of `token` (exact vocabulary string), or None."""
        return self._tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary string of `token_id`, or None."""
        return self._tokenizer.id_to_token(token_id)

    def special_id(self, token: str) -> int:
        """The single id `token` encodes to; TokenizerError if it encodes to several or none."""
        token_id = self._single_id(token)
        if token_id is None:
            count = len(self.encode(token))
            raise TokenizerError(f"{token!r} is not a single token (it encodes to {count} ids)")
        return token_id

    def _named_id(self, key: str) -> int | None:
        token = self.named_tokens.get(key)
        return None if token is None else self._single_id(token)

    @property
    def bos_id(self) -> int | None:
        return self._named_id("bos_token")

    @property
    def eos_id(self) -> int | None:
        return self._named_id("eos_token")

    @property
    def pad_id(self) -> int | None:
        return self._named_id("pad_token")

    def _single_id(self, token: str) -> int | None:
        ids = self.encode(token)
        return ids[0] if len(ids) == 1 else None
