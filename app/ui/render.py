"""A source file rendered as a document for the page's preview, with the hit marked.

Markdown is rendered (markdown-it, CommonMark); every other type is the extracted text (reST and
HTML already cleaned by the indexer) with its paragraphs and indented code blocks kept. The hit's
characters ``[start, end)`` of the extracted text are wrapped in ``<mark id="hit">`` so the page
can scroll to them.
"""

from __future__ import annotations

import html
import re

#: Private-use characters that survive Markdown rendering and mark where the hit starts and ends.
_OPEN, _CLOSE = "\ue000", "\ue001"
_CODE_LINE = re.compile(r"^( {4}|\t)")


def preview_html(text: str, file_type: str, start: int | None = None, end: int | None = None) -> str:
    """``text`` as safe HTML, the span ``[start, end)`` marked ``<mark id="hit">``."""
    marked = text
    if start is not None and end is not None and 0 <= start < end <= len(text):
        # one mark per paragraph of the hit: a mark cannot span blocks
        span = re.sub(r"\n\s*\n", lambda m: _CLOSE + m.group(0) + _OPEN, text[start:end])
        marked = text[:start] + _OPEN + span + _CLOSE + text[end:]
    body = _markdown(marked) if file_type in ("md", "markdown") else _plain(marked)
    return body.replace(_OPEN, '<mark id="hit">', 1).replace(_OPEN, "<mark>").replace(_CLOSE, "</mark>")


def _markdown(text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)   # raw HTML escaped


def _plain(text: str) -> str:
    """Paragraphs as ``<p>``, runs of indented lines as ``<pre>`` (code), everything escaped."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip("\n")):
        lines = block.split("\n")
        if all(_CODE_LINE.match(line) or not line.strip() for line in lines):
            out.append(f"<pre>{html.escape(block)}</pre>")
        else:
            out.append("<p>" + "<br>".join(html.escape(line) for line in lines) + "</p>")
    return "\n".join(out)
