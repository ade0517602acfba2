"""CSV/TSV and JSON/JSON Lines: rendered as readable text rows."""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

from .text import _decode_text_file

logger = logging.getLogger(__name__)


def _extract_csv(path: Path, data: bytes) -> tuple[str, str]:
    text = _decode_text_file(path, data)
    return csv_to_text(text, delimiter="\t" if path.suffix.lower() == ".tsv" else None), path.name


def csv_to_text(text: str, delimiter: str | None = None) -> str:
    """Render CSV text as one line per row, cells joined with ``" | "``.

    The dialect is sniffed when ``delimiter`` is None. Malformed CSV falls back to the
    raw text rather than failing.
    """
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    lines: list[str] = []
    try:
        for row in csv.reader(io.StringIO(text), delimiter=delimiter):
            cells = [cell.strip() for cell in row]
            if any(cells):
                lines.append(" | ".join(cells))
    except csv.Error as exc:
        logger.debug("CSV parse failed (%s); indexing the raw text", exc)
        return text
    return "\n".join(lines)


def _extract_json(path: Path, data: bytes) -> tuple[str, str]:
    text = _decode_text_file(path, data)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = _parse_json_lines(text)
        if value is None:
            logger.warning("%s: not valid JSON; indexing the raw text", path)
            return text, path.name
    title = ""
    if isinstance(value, dict):
        candidate = value.get("title") or value.get("name")
        title = candidate if isinstance(candidate, str) else ""
    try:
        rendered = json.dumps(value, indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        rendered = text
    return rendered, title or path.name


def _parse_json_lines(text: str) -> list | None:
    """Parse JSON Lines (one value per line); None when it is not that either."""
    values = []
    try:
        for line in text.split("\n"):
            if line.strip():
                values.append(json.loads(line))
    except (ValueError, RecursionError):
        return None
    return values or None
