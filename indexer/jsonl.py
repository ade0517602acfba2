"""JSON Lines files: one reader and one atomic writer for every package.

- :func:`iter_jsonl`: strict; yields ``(line number, object)`` and raises :class:`JsonlError`
  naming ``file:line`` on a line that is not a JSON object (``.gz`` files are read too).
- :func:`read_jsonl`: lenient; a list of the objects, skipping (with a warning) a line that
  does not parse, such as the torn last line a kill leaves in an appended file.
- :func:`write_jsonl`: atomic; a kill leaves the old file or the new one, never half.
- :func:`jsonl_line`: one record as a line, for files written incrementally.

Standard library only, so embedder-free packages (``evaluation``, ``finetune``) can use it.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class JsonlError(ValueError):
    """A line of a JSON Lines file is not a JSON object; the message names ``file:line``."""


def jsonl_line(record: Any) -> str:
    """``record`` as one JSON line (UTF-8 kept as is), newline included."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of ``path`` (plain or ``.gz``).

    Raises :class:`JsonlError` naming the file and line when a line is not valid JSON or
    not a JSON object.
    """
    path = Path(path)
    with _open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise JsonlError(f"{path}:{lineno} is not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise JsonlError(f"{path}:{lineno} is not a JSON object")
            yield lineno, row


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSONL file; a line that does not parse (a torn last line) is skipped with a warning."""
    path = Path(path)
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            log.warning("skipping a malformed line in %s", path)
    return records


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    """Write ``rows`` as JSONL atomically (through a temporary file beside ``path``)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(jsonl_line(r) for r in rows), encoding="utf-8")
    os.replace(tmp, path)
