"""Text extraction: turn one file on disk into plain text plus a title.

The single entry point is :func:`extract`. Every failure that is the file's fault
(corrupt, encrypted, binary, unreadable, too large, empty) is raised as
:class:`ExtractionError`, so callers can record it as a per-file failure and go on.

This module reads the bytes, enforces the size limit and picks the parser by suffix;
the parsers live in one module per format family (``text``, ``tabular``, ``markup``,
``pdf``, ``office``).
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

from .base import Extracted, ExtractionError
from .markup import _extract_html, html_to_text
from .office import _extract_docx
from .outline import Heading, locate, section_at
from .pdf import _extract_pdf
from .tabular import _extract_csv, _extract_json, csv_to_text
from .text import (
    _clean_title,
    _extract_code,
    _extract_markdown,
    _extract_plain,
    _extract_rst,
    _normalize_newlines,
    decode_bytes,
    first_line_title,
    looks_binary,
    markdown_title,
    rst_title,
)

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
"""Files larger than this are refused unless ``max_bytes`` says otherwise."""

PROSE_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".org", ".tex"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
CODE_SUFFIXES = frozenset(
    {
        ".py", ".pyi", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".java", ".kt",
        ".kts", ".scala", ".groovy", ".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx",
        ".cs", ".go", ".rs", ".rb", ".php", ".swift", ".m", ".mm", ".r", ".jl", ".lua", ".pl",
        ".pm", ".hs", ".ml", ".ex", ".exs", ".erl", ".clj", ".dart", ".vue", ".svelte", ".css",
        ".scss", ".sass", ".less", ".sh", ".bash", ".zsh", ".fish", ".ps1", ".bat", ".toml",
        ".yaml", ".yml", ".ini", ".cfg", ".conf", ".sql", ".proto", ".graphql",
        ".tf", ".cmake", ".gradle", ".xml",
    }
)  # fmt: skip
STRUCTURED_SUFFIXES = frozenset({".pdf", ".docx", ".csv", ".tsv", ".json", ".jsonl"})

SUPPORTED_SUFFIXES: frozenset[str] = (
    PROSE_SUFFIXES | HTML_SUFFIXES | CODE_SUFFIXES | STRUCTURED_SUFFIXES
)
"""Lower-case file suffixes (with the dot) that :func:`extract` understands."""

_FILE_TYPE_ALIASES = {"htm": "html", "xhtml": "html", "markdown": "md", "jsonl": "json"}


# --------------------------------------------------------------------------- entry point


def extract(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Extracted:
    """Extract the text and a title from ``path``.

    Args:
        path: the file to read. Its suffix (case-insensitive) picks the parser; see
            :data:`SUPPORTED_SUFFIXES`.
        max_bytes: files larger than this many bytes are refused.

    Returns:
        An :class:`Extracted` with newline-normalised text (``\\n`` only), a title
        (document metadata, first heading, first line, or the file name) and a short
        ``file_type`` (the suffix without the dot, e.g. ``"pdf"``, ``"py"``; ``.htm``
        reports ``"html"`` and ``.markdown`` reports ``"md"``).

    Raises:
        ExtractionError: the suffix is unsupported, the file is unreadable, not a
            regular file, over ``max_bytes``, binary, corrupt, encrypted, or has no
            extractable text.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ExtractionError(
            path,
            f"unsupported file type {suffix or '(no suffix)'!r}; "
            "see indexer.extract.SUPPORTED_SUFFIXES for the types that can be indexed",
        )
    if max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes!r}")
    data = _read_bytes(path, max_bytes)
    if is_rst_source(path):
        suffix = ".rst"  # Sphinx's published sources (_sources/*.rst.txt) are reST
    file_type = _FILE_TYPE_ALIASES.get(suffix[1:], suffix[1:])
    parser = _parser_for(suffix)
    text, title, *heads = parser(path, data)  # reST, Markdown, HTML, DOCX: also their headings
    text = _normalize_newlines(text).strip("\n")
    if not text.strip():
        if suffix == ".pdf":
            raise ExtractionError(path, "no text layer; OCR is not supported")
        reason = "file is empty" if not data else "no extractable text"
        raise ExtractionError(path, reason)
    title = _clean_title(title) or path.name
    return Extracted(text=text, title=title, file_type=file_type, headings=locate(text, heads[0] if heads else ()))


def is_rst_source(path: Path) -> bool:
    """``.rst`` files and Sphinx's published sources (``*.rst.txt``)."""
    name = path.name.lower()
    return name.endswith(".rst") or name.endswith(".rst.txt")


def _parser_for(suffix: str) -> Callable[[Path, bytes], tuple]:
    if suffix == ".pdf":
        return _extract_pdf
    if suffix == ".docx":
        return _extract_docx
    if suffix in HTML_SUFFIXES:
        return _extract_html
    if suffix in (".csv", ".tsv"):
        return _extract_csv
    if suffix in (".json", ".jsonl"):
        return _extract_json
    if suffix in (".md", ".markdown"):
        return _extract_markdown
    if suffix == ".rst":
        return _extract_rst
    if suffix in PROSE_SUFFIXES:
        return _extract_plain
    return _extract_code


# --------------------------------------------------------------------------- reading bytes


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """Read a regular file, refusing non-files, unreadable files and oversized files."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ExtractionError(path, "file not found (was it moved or deleted?)") from None
    except PermissionError:
        raise ExtractionError(path, "permission denied; check the file's permissions") from None
    except OSError as exc:
        raise ExtractionError(path, f"cannot stat file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ExtractionError(path, "not a regular file (directory, device or pipe)")
    if st.st_size > max_bytes:
        raise ExtractionError(path, _too_large_reason(st.st_size, max_bytes))
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except PermissionError:
        raise ExtractionError(path, "permission denied; check the file's permissions") from None
    except OSError as exc:
        raise ExtractionError(path, f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # the file grew after stat()
        raise ExtractionError(path, _too_large_reason(len(data), max_bytes))
    return data


def _too_large_reason(size: int, max_bytes: int) -> str:
    return (
        f"file is {size:,} bytes, over the limit of {max_bytes:,} bytes; "
        "raise max_bytes to index it"
    )


__all__ = [
    "DEFAULT_MAX_BYTES",
    "SUPPORTED_SUFFIXES",
    "Extracted",
    "ExtractionError",
    "Heading",
    "csv_to_text",
    "decode_bytes",
    "extract",
    "first_line_title",
    "html_to_text",
    "is_rst_source",
    "looks_binary",
    "markdown_title",
    "rst_title",
    "section_at",
]
