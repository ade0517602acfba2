"""DOCX: paragraphs and tables in document order, via python-docx."""

from __future__ import annotations

import io
from pathlib import Path

from .base import ExtractionError
from .text import first_line_title


def _extract_docx(path: Path, data: bytes) -> tuple[str, str, list[tuple[int, str, str]]]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - zipfile/lxml/KeyError/PackageNotFoundError ...
        raise ExtractionError(
            path, f"corrupt or not a DOCX file ({type(exc).__name__}: {exc})"
        ) from exc

    blocks: list[str] = []
    heading = ""
    heads: list[tuple[int, str, str]] = []  # (level, title, line) of "Heading N" paragraphs
    try:
        for item in document.iter_inner_content():
            if isinstance(item, Paragraph):
                text = item.text.strip()
                if not text:
                    continue
                blocks.append(text)
                style = _heading_style(item)
                if not heading and style:
                    heading = text
                level = style.removeprefix("Heading").strip()
                if level.isdigit() and "\n" not in text:
                    heads.append((int(level), text, text))
            elif isinstance(item, Table):
                table_text = _docx_table_text(item)
                if table_text:
                    blocks.append(table_text)
    except Exception as exc:  # noqa: BLE001
        raise ExtractionError(path, f"corrupt DOCX body ({type(exc).__name__}: {exc})") from exc

    try:
        core_title = document.core_properties.title or ""
    except Exception:  # noqa: BLE001
        core_title = ""
    text = "\n\n".join(blocks)
    return text, core_title.strip() or heading or first_line_title(text), heads


def _heading_style(paragraph) -> str:
    """The paragraph's style name when it is a title or heading style ("Title", "Heading 2"), else ""."""
    try:
        name = (paragraph.style.name or "") if paragraph.style is not None else ""
    except Exception:  # noqa: BLE001 - dangling style references
        return ""
    return name if name == "Title" or name.startswith("Heading") else ""


def _docx_table_text(table) -> str:
    """One line per row, cells joined with ``" | "``; merged cells appear once."""
    lines: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if previous is not None and cell._tc is previous:  # horizontally merged
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            lines.append(" | ".join(cells))
    return "\n".join(lines)
