"""Text extraction: turn one file on disk into plain text plus a title.

The single entry point is :func:`extract`. Every failure that is the file's fault
(corrupt, encrypted, binary, unreadable, too large, empty) is raised as
:class:`ExtractionError`, so callers can record it as a per-file failure and go on.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
"""Files larger than this are refused unless ``max_bytes`` says otherwise."""

BINARY_SNIFF_BYTES = 8192
"""How much of a text file is checked for NUL bytes to decide it is binary."""

MAX_TITLE_CHARS = 200

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

_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True, slots=True)
class Extracted:
    """The result of extracting one file."""

    text: str
    title: str
    file_type: str


class ExtractionError(Exception):
    """A file could not be turned into text; ``reason`` says why in plain words."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep picklable (multiprocessing) despite the 2-arg __init__
        return (type(self), (self.path, self.reason))


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
    file_type = _FILE_TYPE_ALIASES.get(suffix[1:], suffix[1:])
    parser = _parser_for(suffix)
    text, title = parser(path, data)
    text = _normalize_newlines(text).strip("\n")
    if not text.strip():
        if suffix == ".pdf":
            raise ExtractionError(path, "no text layer; OCR is not supported")
        reason = "file is empty" if not data else "no extractable text"
        raise ExtractionError(path, reason)
    title = _clean_title(title) or path.name
    return Extracted(text=text, title=title, file_type=file_type)


def _parser_for(suffix: str) -> Callable[[Path, bytes], tuple[str, str]]:
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


_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SETEXT_HEADING = re.compile(r"^ {0,3}(\S.*)\n {0,3}(?:=+|-+)[ \t]*$", re.MULTILINE)
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
        return min(matches, key=lambda m: m.start()).group(1).strip()
    return first_line_title(text)


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


def _extract_markdown(path: Path, data: bytes) -> tuple[str, str]:
    text = _decode_text_file(path, data)
    return text, markdown_title(text)


def _extract_rst(path: Path, data: bytes) -> tuple[str, str]:
    text = _decode_text_file(path, data)
    return text, rst_title(text)


def _extract_code(path: Path, data: bytes) -> tuple[str, str]:
    # A first line such as "#!/bin/sh" or "import os" is a poor title: use the file name.
    return _decode_text_file(path, data), path.name


# --------------------------------------------------------------------------- CSV / JSON


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


# --------------------------------------------------------------------------- HTML

_HTML_DROP = frozenset(
    {"script", "style", "nav", "noscript", "template", "head", "svg", "canvas", "iframe",
     "object", "embed", "button", "select", "form"}
)  # fmt: skip
_HTML_BLOCKS = frozenset(
    {"address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
     "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4",
     "h5", "h6", "header", "hr", "html", "legend", "li", "main", "ol", "p", "pre", "section",
     "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"}
)  # fmt: skip


def _extract_html(path: Path, data: bytes) -> tuple[str, str]:
    if looks_binary(data):
        raise ExtractionError(path, "binary content (NUL bytes); it is not an HTML file")
    try:
        markup: str | bytes = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        markup = data  # let BeautifulSoup honour <meta charset> / sniff the encoding
    return html_to_text(markup)


def html_to_text(markup: str | bytes) -> tuple[str, str]:
    """Convert HTML to ``(text, title)``.

    Scripts, styles, navigation and forms are dropped; block elements become paragraphs
    separated by blank lines; ``<br>`` becomes a line break; ``<pre>`` keeps its layout.
    The title is ``<title>``, else the first ``<h1>``, else ``""``.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, _html_parser())
    title = ""
    if soup.title is not None:
        title = soup.title.get_text(" ", strip=True)
    if not title:
        h1 = soup.find("h1")
        title = h1.get_text(" ", strip=True) if h1 is not None else ""
    return "\n\n".join(_html_blocks(soup)), title


def _html_parser() -> str:
    try:
        import lxml  # noqa: F401
    except ImportError:
        return "html.parser"
    return "lxml"


def _html_blocks(root) -> list[str]:
    """Walk the tree iteratively (deep documents must not hit the recursion limit)."""
    from bs4.element import NavigableString, PreformattedString, Tag

    blocks: list[str] = []
    buf: list[str] = []

    def flush() -> None:
        raw = "".join(buf)
        buf.clear()
        lines = (" ".join(line.split()) for line in raw.split("\n"))
        block = "\n".join(line for line in lines if line)
        if block:
            blocks.append(block)

    stack = [iter(root.children)]
    closers: list[str | None] = [None]
    while stack:
        try:
            node = next(stack[-1])
        except StopIteration:
            stack.pop()
            if closers.pop() is not None:
                flush()
            continue
        if isinstance(node, Tag):
            name = (node.name or "").lower()
            if name in _HTML_DROP:
                continue
            if name == "br":
                buf.append("\n")
            elif name == "pre":
                flush()
                pre = node.get_text().strip("\n")
                if pre.strip():
                    blocks.append(pre)
            elif name in _HTML_BLOCKS:
                flush()
                stack.append(iter(node.children))
                closers.append(name)
            else:
                stack.append(iter(node.children))
                closers.append(None)
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            # Source newlines inside a block are just whitespace in HTML.
            buf.append(str(node).replace("\n", " "))
    flush()
    return blocks


# --------------------------------------------------------------------------- PDF


def _extract_pdf(path: Path, data: bytes) -> tuple[str, str]:
    from pypdf import PasswordType, PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                result = reader.decrypt("")
            except Exception as exc:  # noqa: BLE001 - e.g. DependencyError for AES
                raise ExtractionError(
                    path, f"encrypted PDF that could not be opened ({exc}); decrypt it first"
                ) from None
            if result == PasswordType.NOT_DECRYPTED:
                raise ExtractionError(
                    path, "encrypted PDF (needs a password); save an unencrypted copy to index it"
                )
        pages = reader.pages
        n_pages = len(pages)
    except ExtractionError:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on corrupt input
        raise ExtractionError(
            path, f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})"
        ) from exc
    if n_pages == 0:
        raise ExtractionError(path, "PDF has no pages")

    texts: list[str] = []
    failed = 0
    for number in range(n_pages):
        try:
            page_text = pages[number].extract_text() or ""
        except Exception as exc:  # noqa: BLE001
            failed += 1
            logger.warning("%s: page %d: text extraction failed (%s)", path, number + 1, exc)
            continue
        page_text = _normalize_newlines(page_text).strip()
        if page_text:
            texts.append(page_text)
    if failed == n_pages:
        raise ExtractionError(path, f"corrupt PDF: text extraction failed on all {n_pages} pages")

    text = "\n\n".join(texts)
    return text, _pdf_title(reader) or first_line_title(text)


def _pdf_title(reader) -> str:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # noqa: BLE001 - broken metadata must not lose the text
        return ""
    return title if isinstance(title, str) else ""


# --------------------------------------------------------------------------- DOCX


def _extract_docx(path: Path, data: bytes) -> tuple[str, str]:
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
    try:
        for item in document.iter_inner_content():
            if isinstance(item, Paragraph):
                text = item.text.strip()
                if not text:
                    continue
                blocks.append(text)
                if not heading and _is_heading_style(item):
                    heading = text
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
    return text, core_title.strip() or heading or first_line_title(text)


def _is_heading_style(paragraph) -> bool:
    try:
        name = (paragraph.style.name or "") if paragraph.style is not None else ""
    except Exception:  # noqa: BLE001 - dangling style references
        return False
    return name == "Title" or name.startswith("Heading")


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


__all__ = [
    "DEFAULT_MAX_BYTES",
    "SUPPORTED_SUFFIXES",
    "Extracted",
    "ExtractionError",
    "csv_to_text",
    "decode_bytes",
    "extract",
    "first_line_title",
    "html_to_text",
    "looks_binary",
    "markdown_title",
    "rst_title",
]
