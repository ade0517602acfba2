"""HTML: visible text as paragraphs, via BeautifulSoup."""

from __future__ import annotations

from pathlib import Path

from .base import ExtractionError
from .text import looks_binary


_HTML_DROP = frozenset(
    {"script", "style", "nav", "noscript", "template", "head", "svg", "canvas", "iframe",
     "object", "embed", "button", "select", "form"}
)  # fmt: skip
#: Elements dropped by class or role: Sphinx's permalink marks (the "¶" after headings), its
#: navigation bars and sidebars, and any element marked as navigation or search.
_HTML_DROP_CLASSES = frozenset({"headerlink", "sphinxsidebar", "related", "footer", "skip-link",
                                "mobile-nav", "inline-search"})
_HTML_DROP_ROLES = frozenset({"navigation", "search"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
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
    return "\n\n".join(text for _, text in _html_blocks(soup)), title


def html_blocks(markup: str | bytes) -> list[tuple[str, str]]:
    """``[(kind, text), ...]`` of an HTML page, kind ``h1``..``h6``, ``p`` or ``code``; their
    texts joined by blank lines are exactly :func:`html_to_text`'s text."""
    from bs4 import BeautifulSoup

    return _html_blocks(BeautifulSoup(markup, _html_parser()))


def _html_parser() -> str:
    try:
        import lxml  # noqa: F401
    except ImportError:
        return "html.parser"
    return "lxml"


def _dropped(node) -> bool:
    if (node.name or "").lower() in _HTML_DROP:
        return True
    attrs = node.attrs or {}
    classes = attrs.get("class") or ()
    if isinstance(classes, str):
        classes = classes.split()
    return bool(_HTML_DROP_CLASSES.intersection(classes)) or attrs.get("role") in _HTML_DROP_ROLES


def _html_blocks(root) -> list[tuple[str, str]]:
    """Walk the tree iteratively (deep documents must not hit the recursion limit)."""
    from bs4.element import NavigableString, PreformattedString, Tag

    blocks: list[tuple[str, str]] = []
    buf: list[str] = []

    def flush(closing: str | None = None) -> None:
        raw = "".join(buf)
        buf.clear()
        lines = (" ".join(line.split()) for line in raw.split("\n"))
        block = "\n".join(line for line in lines if line)
        if block:
            where = closing or next((c for c in reversed(closers) if c is not None), None)
            blocks.append((where if where in _HEADINGS else "p", block))

    stack = [iter(root.children)]
    closers: list[str | None] = [None]
    while stack:
        try:
            node = next(stack[-1])
        except StopIteration:
            stack.pop()
            closing = closers.pop()
            if closing is not None:
                flush(closing)
            continue
        if isinstance(node, Tag):
            name = (node.name or "").lower()
            if _dropped(node):
                continue
            if name == "br":
                buf.append("\n")
            elif name == "pre":
                flush()
                pre = node.get_text().strip("\n")
                if pre.strip():
                    blocks.append(("code", pre))
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
