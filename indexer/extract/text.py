"""Text files: binary sniffing, decoding and newline normalisation, titles, and the
plain / Markdown / reStructuredText / source-code parsers.
"""

from __future__ import annotations

import codecs
import logging
import re
from pathlib import Path

from .base import ExtractionError

logger = logging.getLogger(__name__)

BINARY_SNIFF_BYTES = 8192
"""How much of a text file is checked for NUL bytes to decide it is binary."""

MAX_TITLE_CHARS = 200

_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def looks_binary(data: bytes) -> bool:
    """Return True when ``data`` looks like a binary file (NUL bytes near the start).

    UTF-16/UTF-32 text with a byte-order mark legitimately contains NULs and is not binary.
    """
    if data.startswith(_UTF32_BOMS + _UTF16_BOMS):
        return False
    return b"\x00" in data[:BINARY_SNIFF_BYTES]


def decode_bytes(data: bytes) -> str:
    """Decode text bytes without ever failing.

    Order: a byte-order mark (UTF-8/16/32), strict UTF-8, cp1252 when the result looks
    like Western European text, charset-normalizer's best guess, and finally latin-1
    (which maps every byte to a character).
    """
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", errors="replace")
    if data.startswith(_UTF32_BOMS):
        return data.decode("utf-32", errors="replace")
    if data.startswith(_UTF16_BOMS):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    western = _decode_western(data)
    if western is not None:
        return western
    encoding = _detect_encoding(data)
    if encoding:
        try:
            return data.decode(encoding, errors="replace")
        except LookupError:
            logger.debug("charset-normalizer proposed unknown codec %r", encoding)
    return data.decode("latin-1")


# Non-ASCII characters that Western European text in cp1252/latin-1 plausibly contains.
_WESTERN_CHARS = frozenset(
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿŠšŒœŽžŸƒ"
    "\u00a0«»°§©®™€£¥¢‘’‚“”„–—…•·¿¡ªº´±µ¶†‡‰‹›"
)
_MAX_WESTERN_LETTER_RATIO = 0.3


def _decode_western(data: bytes) -> str | None:
    """Decode as cp1252 when the result looks like Western European text, else None.

    charset-normalizer is unreliable on short Western texts (it may pick cp1250 or
    mac_turkish for German/French latin-1), while those are the commonest legacy files.
    Accept cp1252 only when every non-ASCII character is a plausible Western letter or
    symbol and such letters are a minority of all letters (Cyrillic or Greek
    single-byte text decoded as cp1252 is almost all accented letters).
    """
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return None
    sample = text[:65536]
    non_ascii = [c for c in sample if ord(c) > 127]
    if not all(c in _WESTERN_CHARS for c in non_ascii):
        return None
    letters = sum(c.isalpha() for c in sample)
    accented = sum(c.isalpha() for c in non_ascii)
    if letters and accented > _MAX_WESTERN_LETTER_RATIO * letters:
        return None
    return text


def _detect_encoding(data: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - charset-normalizer is a declared dependency
        return None
    try:
        best = from_bytes(data).best()
    except Exception:  # noqa: BLE001 - detection is best effort
        logger.debug("charset detection failed", exc_info=True)
        return None
    return best.encoding if best is not None else None


def _decode_text_file(path: Path, data: bytes) -> str:
    if looks_binary(data):
        raise ExtractionError(
            path,
            f"binary content (NUL bytes in the first {BINARY_SNIFF_BYTES} bytes); "
            "it is not a text file despite its name",
        )
    return _normalize_newlines(decode_bytes(data))


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------- titles


_ATX_HEADING = re.compile(r"^ {0,3}(?P<level>#{1,6})[ \t]+(?P<title>.+?)[ \t#]*$", re.MULTILINE)
_SETEXT_HEADING = re.compile(r"^ {0,3}(?P<title>\S.*)\n {0,3}(?:=+|-+)[ \t]*$", re.MULTILINE)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*$", re.MULTILINE | re.DOTALL)
_FRONT_MATTER_TITLE = re.compile(r"^title:[ \t]*(\S.*?)[ \t]*$", re.MULTILINE)
_RST_ADORNMENT = "=-`:'\"~^_*+#<>."
_RST_TITLE = re.compile(
    r"^([" + re.escape(_RST_ADORNMENT) + r"])\1{2,}[ \t]*\n[ \t]*(\S.*?)[ \t]*\n\1{3,}[ \t]*$"
    r"|^(\S.*?)[ \t]*\n([" + re.escape(_RST_ADORNMENT) + r"])\4{2,}[ \t]*$",
    re.MULTILINE,
)


def _clean_title(title: str | None) -> str:
    if not title:
        return ""
    title = " ".join(str(title).split())
    if len(title) > MAX_TITLE_CHARS:
        title = title[: MAX_TITLE_CHARS - 1].rstrip() + "…"
    return title


def first_line_title(text: str) -> str:
    """The first non-empty line of ``text`` (stripped), or ``""``."""
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def markdown_title(text: str) -> str:
    """Title of a Markdown text: front-matter ``title:``, first heading, else first line."""
    front = _FRONT_MATTER.match(text)
    if front:
        match = _FRONT_MATTER_TITLE.search(front.group(1))
        if match:
            return match.group(1).strip().strip("\"'")
        text = text[front.end() :]
    matches = [m for m in (_ATX_HEADING.search(text), _SETEXT_HEADING.search(text)) if m]
    if matches:
        return min(matches, key=lambda m: m.start()).group("title").strip()
    return first_line_title(text)


_SETEXT_LINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def markdown_headings(text: str) -> list[tuple[int, str, str]]:
    """The headings of a Markdown text as ``(level, title, line)``: ``#`` lines and underlined
    (``===``, ``---``) ones, outside fenced code."""
    heads: list[tuple[int, str, str]] = []
    fence = ""
    lines = text.splitlines()
    front = _FRONT_MATTER.match(text)
    skip = front.group(0).count("\n") + 1 if front else 0  # front matter's lines, its "---" included
    for n, line in enumerate(lines):
        if n < skip:
            continue
        opener = _FENCE.match(line)
        if opener:
            fence = "" if fence == opener.group(1) else fence or opener.group(1)
            continue
        if fence:
            continue
        atx = _ATX_HEADING.match(line)
        if atx:
            heads.append((len(atx.group("level")), atx.group("title"), line))
        elif n + 1 < len(lines) and line.strip() and _SETEXT_LINE.match(lines[n + 1]) \
                and not _SETEXT_LINE.match(line):
            heads.append((1 if lines[n + 1].strip()[0] == "=" else 2, line.strip(), line))
    return heads


def rst_title(text: str) -> str:
    """Title of a reStructuredText text: first adorned section title, else first line."""
    match = _RST_TITLE.search(text)
    if match:
        return (match.group(2) or match.group(3)).strip()
    return first_line_title(text)


# --------------------------------------------------------------------------- plain text


def _extract_plain(path: Path, data: bytes) -> tuple[str, str]:
    text = _decode_text_file(path, data)
    return text, first_line_title(text)


def _extract_markdown(path: Path, data: bytes) -> tuple[str, str, list[tuple[int, str, str]]]:
    text = _decode_text_file(path, data)
    return text, markdown_title(text), markdown_headings(text)


def _extract_rst(path: Path, data: bytes) -> tuple[str, str, list[tuple[int, str, str]]]:
    from .rst import rst_document

    text = _decode_text_file(path, data)
    body, heads = rst_document(text)
    return body, rst_title(text), heads


def _extract_code(path: Path, data: bytes) -> tuple[str, str]:
    # A first line such as "#!/bin/sh" or "import os" is a poor title: use the file name.
    return _decode_text_file(path, data), path.name
