"""A file's preview rendered as the document: headings, paragraphs and code, the hit marked.

:func:`document_blocks` reads a file back as typed blocks whose texts, joined by blank lines, are
exactly the extracted (indexed) text, so a result's ``start``/``end`` offsets locate it among
them; :func:`document_html` renders them (Markdown through markdown-it, reST and HTML through
their block readers, code and plain text as written), wraps the blocks of the hit in
``<div class="hit-here">`` with query words in ``<mark>`` and scrolls the preview to it.
Every piece of the file's text is escaped: a document can never inject markup or script.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: Characters of the document rendered around the hit (from its start when there is no hit).
WINDOW_CHARS = 20_000
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
PREVIEW_CSS = """<style>
.doc-preview {max-height:30rem; overflow-y:auto; border:1px solid #e5e7eb; border-radius:.5rem;
  padding:.5rem 1rem; line-height:1.5; font-size:.92rem}
.doc-preview p {white-space:pre-line; margin:.4rem 0}
.doc-preview pre {background:#f6f7f9; padding:.5rem; border-radius:.3rem; overflow-x:auto; margin:.4rem 0}
.doc-preview .sig code {font-weight:600}
.doc-preview h1, .doc-preview h2, .doc-preview h3, .doc-preview h4, .doc-preview h5, .doc-preview h6
  {margin:.8rem 0 .3rem; padding:0; line-height:1.25}
.doc-preview .hit-here {background:#fffbeb; outline:2px solid #fcd34d; border-radius:.3rem; padding:0 .3rem;
  scroll-initial-target:nearest}
.doc-preview mark {background:#fde68a; color:inherit; padding:0 .1rem; border-radius:.2rem}
.doc-preview .doc-cut {color:#6b7280; font-size:.8rem; text-align:center}
</style>"""
#: Scrolls each preview to its hit (our own script: the document's text is escaped).
SCROLL_JS = """<script>
document.querySelectorAll('.doc-preview').forEach(function (box) {
  var hit = box.querySelector('.hit-here');
  if (hit) { box.scrollTop = hit.offsetTop - box.offsetTop - 24; }
});
</script>"""


def _split_paragraphs(text: str, kind: str) -> list[tuple[str, str]]:
    return [(kind, part) for part in text.split("\n\n")]


def _markdown_blocks(text: str) -> list[tuple[str, str]]:
    """Blank-line separated Markdown blocks; a fenced code block (blank lines and all) stays one."""
    blocks: list[tuple[str, str]] = []
    current: list[str] = []
    fence = None
    parts = text.split("\n\n")
    for part in parts:
        current.append(part)
        for line in part.split("\n"):
            m = _FENCE.match(line)
            if m and fence is None:
                fence = m.group(1)
            elif m and m.group(1) == fence:
                fence = None
        if fence is None:
            blocks.append(("md", "\n\n".join(current)))
            current = []
    if current:
        blocks.append(("md", "\n\n".join(current)))
    return blocks


def document_blocks(path: Path, text: str, file_type: str) -> list[tuple[str, str]]:
    """``[(kind, text), ...]`` of ``path`` whose texts joined by ``"\\n\\n"`` are ``text`` (its
    extracted text); kinds ``h1``..``h6``, ``p``, ``sig``, ``code``, ``md`` or ``pre``."""
    from indexer.extract import decode_bytes, html_blocks, is_rst_source
    from indexer.extract.rst import rst_blocks

    blocks: list[tuple[str, str]] | None = None
    try:
        if file_type == "html":
            blocks = html_blocks(path.read_bytes())
        elif is_rst_source(path):
            raw = decode_bytes(path.read_bytes()).replace("\r\n", "\n").replace("\r", "\n")
            blocks = rst_blocks(raw)
        elif file_type == "md":
            blocks = _markdown_blocks(text)
    except OSError as exc:
        log.info("preview of %s falls back to plain text: %s", path, exc)
    if blocks is not None and "\n\n".join(t for _, t in blocks) == text:
        return blocks
    if blocks is not None:
        log.info("preview of %s: blocks do not match the indexed text; shown as paragraphs", path)
    from indexer.extract import HTML_SUFFIXES, PROSE_SUFFIXES, STRUCTURED_SUFFIXES

    prose = f".{file_type}" in PROSE_SUFFIXES | HTML_SUFFIXES | STRUCTURED_SUFFIXES
    return _split_paragraphs(text, "p" if prose else "pre")


def _markdown(source: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(source)


def _block_html(kind: str, text: str, mark: Callable[[str], str]) -> str:
    if kind.startswith("h") and kind[1:].isdigit():
        return f"<{kind}>{mark(text)}</{kind}>"
    if kind == "sig":
        return f'<p class="sig"><code>{mark(text)}</code></p>'
    if kind in ("code", "pre"):
        return f"<pre><code>{mark(text)}</code></pre>"
    if kind == "md":
        return _markdown(text)
    return f"<p>{mark(text)}</p>"


def _escape(text: str) -> str:
    return html.escape(text).replace("$", "&#36;")


def document_html(blocks: list[tuple[str, str]], hit: tuple[int, int] | None = None,
                  mark: Callable[[str], str] = _escape, window: int = WINDOW_CHARS) -> str:
    """The blocks as HTML in a ``.doc-preview`` box; the blocks overlapping ``hit`` (character
    ``(start, end)`` in the joined text) are wrapped in ``.hit-here`` and have ``mark`` applied
    (it must escape what it returns, e.g. ``app.service.highlight``); others are only escaped.
    At most ``window`` characters are rendered, starting a little before the hit."""
    total = sum(len(t) for _, t in blocks) + 2 * max(len(blocks) - 1, 0)
    lo = max(0, min(hit[0] - window // 4, total - window)) if hit else 0
    hi = lo + window
    out, pos, opened = [], 0, False
    for kind, text in blocks:
        start, end = pos, pos + len(text)
        pos = end + 2
        if end < lo:
            continue
        if start > hi:
            out.append('<div class="doc-cut">⋯ the rest of the file is not shown ⋯</div>')
            break
        inside = hit is not None and start < hit[1] and end > hit[0]
        if inside and not opened:
            out.append('<div class="hit-here" id="hit">')
            opened = True
        elif not inside and opened:
            out.append("</div>")
            opened = False
        out.append(_block_html(kind, text, mark if inside else _escape))
    if opened:
        out.append("</div>")
    if lo > 0:
        out.insert(0, '<div class="doc-cut">⋯ the start of the file is not shown ⋯</div>')
    return f'<div class="doc-preview">{"".join(out)}</div>'
