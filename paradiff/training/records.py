"""Training records: the JSONL files `paradiff pretokenize` and ParaRL's prompt pool read.

One JSON object per line: `{system_prompt, user_prompt, user_image, answer_text, answer_image,
id}`, images as paths relative to the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_records(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, record) for every non-blank line of a JSONL file; in place of the record,
    the reason a line is not one ("not valid JSON", "not a JSON object")."""
    with open(Path(path), encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                yield number, "not valid JSON"
                continue
            yield number, record if isinstance(record, dict) else "not a JSON object"
