"""Training records: the JSONL files `paradiff pretokenize` and ParaRL's prompt pool read.

One JSON object per line: `{system_prompt, user_prompt, user_image, answer_text, answer_image,
id}`, images as paths relative to the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from paradiff.files import FileInputError, open_regular


def records_file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as a records file (missing, a folder, a device), or None."""
    try:
        open_regular(path, limit=None, what="records file").close()
    except FileInputError as err:
        return str(err)
    return None


def read_records(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, record) for every non-blank line of a JSONL file; in place of the record,
    the reason a line is not one ("not UTF-8 text", "not valid JSON", "not a JSON object")."""
    with open_regular(path, limit=None, what="records file") as lines:
        for number, raw in enumerate(lines, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, "not UTF-8 text"
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                yield number, "not valid JSON"
                continue
            yield number, record if isinstance(record, dict) else "not a JSON object"
