"""HTML: visible text as paragraphs, via BeautifulSoup."""

from __future__ import annotations

from pathlib import Path

from .base import ExtractionError
from .text import looks_binary


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


def _extract_html(path: Path, data: bytes) -> tuple[str, str, list[tuple[int, str, str]]]:
    if looks_binary(data):
        raise ExtractionError(path, "binary content (NUL bytes); it is not an HTML file")
    try:
        markup: str | bytes = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        markup = data  # let BeautifulSoup honour <meta charset> / sniff the encoding
    return html_document(markup)


def html_to_text(markup: str | bytes) -> tuple[str, str]:
    """Convert HTML to ``(text, title)``.

    Scripts, styles, navigation, forms and heading permalinks (Sphinx's "¶") are dropped; block elements become paragraphs
    separated by blank lines; ``<br>`` becomes a line break; ``<pre>`` keeps its layout.
    The title is ``<title>``, else the first ``<h1>``, else ``""``.
    """
    text, title, _ = html_document(markup)
    return text, title


def html_document(markup: str | bytes) -> tuple[str, str, list[tuple[int, str, str]]]:
    """:func:`html_to_text` and the headings (``<h1>``-``<h6>``) as ``(level, title, line)``."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(markup, _html_parser())
    title = ""
    if soup.title is not None:
        title = soup.title.get_text(" ", strip=True)
    if not title:
        h1 = soup.find("h1")
        title = h1.get_text(" ", strip=True) if h1 is not None else ""
    heads: list[tuple[int, str, str]] = []
    return "\n\n".join(_html_blocks(soup, heads)), title, heads


_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

#: Page furniture that is not the document: Sphinx's heading permalinks (the "¶" after every
#: heading), its sidebars and relation bars, and anything marked as navigation or search.
_CHROME_CLASSES = frozenset({"headerlink", "sphinxsidebar", "related", "breadcrumbs", "toc-backref"})
_CHROME_ROLES = frozenset({"navigation", "search", "banner", "contentinfo"})


def _is_chrome(tag) -> bool:
    classes = tag.get("class") or ()
    return bool(_CHROME_CLASSES.intersection(classes)) or tag.get("role") in _CHROME_ROLES


def _html_parser() -> str:
    try:
        import lxml  # noqa: F401
    except ImportError:
        return "html.parser"
    return "lxml"


def _html_blocks(root, heads: list[tuple[int, str, str]]) -> list[str]:
    """Walk the tree iteratively (deep documents must not hit the recursion limit); each heading's
    block is appended to ``heads`` as ``(level, title, line)``."""
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
            closer = closers.pop()
            if closer is not None:
                before = len(blocks)
                flush()
                if closer in _HEADINGS and len(blocks) > before and "\n" not in blocks[-1]:
                    heads.append((int(closer[1]), blocks[-1], blocks[-1]))
            continue
        if isinstance(node, Tag):
            name = (node.name or "").lower()
            if name in _HTML_DROP or _is_chrome(node):
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
