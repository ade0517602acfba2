"""Sections of a document by its headings: ``(title, own text)`` per heading of reST, Markdown or HTML.

Fine-tuning reads them as heading -> section training pairs (:mod:`finetune.structure`) and the
evaluation sets as title -> section queries (:mod:`evaluation.docsets`)::

    >>> list(text_sections("Install\\n=======\\n\\nRun pip install rag-search to get it."))
    [('Install', 'Run pip install rag-search to get it.')]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from .rst import clean_rst_title

_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_:.<>])\1{2,}\s*$")
_MD_HEADING = re.compile(r"^#{1,6}\s+(\S.*?)\s*#*\s*$")
#: Section numbers that Sphinx puts before a title: "9.3. ", "B. ", "4.8.19. ".
_NUMBERING = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)*\.?|[A-Z]\.(?:[0-9]+\.)*)\s+")


def text_sections(text: str) -> Iterator[tuple[str, str]]:
    """``(title, own text)`` of each section of a reST or Markdown text (headings by adornment or ``#``)."""
    lines = text.splitlines()
    heads: list[tuple[int, int, str]] = []          # (first line of the heading, first body line, title)
    i = 0
    while i < len(lines):
        md = _MD_HEADING.match(lines[i])
        if md:
            heads.append((i, i + 1, md.group(1)))
        elif (i + 1 < len(lines) and lines[i].strip() and not _RST_ADORNMENT.match(lines[i])
              and _RST_ADORNMENT.match(lines[i + 1]) and len(lines[i + 1].strip()) >= len(lines[i].strip())):
            over = i > 0 and _RST_ADORNMENT.match(lines[i - 1]) is not None
            heads.append((i - 1 if over else i, i + 2, lines[i].strip()))
            i += 1
        i += 1
    for n, (_, body, title) in enumerate(heads):
        end = heads[n + 1][0] if n + 1 < len(heads) else len(lines)
        own = "\n".join(lines[body:end]).strip()
        if own:
            yield clean_rst_title(title), own


def html_sections(html: str) -> Iterator[tuple[str, str]]:
    """``(title, own text)`` per ``<h1>``..``<h6>`` of an HTML page: the text up to the next heading."""
    from lxml import html as lxml_html

    root = lxml_html.fromstring(html or "<html></html>")
    for bad in root.xpath("//script|//style|//nav|//*[contains(@class, 'headerlink')]"):
        bad.drop_tree()
    body = root.xpath('//div[@itemprop="articleBody"]') or root.xpath("//body") or [root]
    title, parts = None, []
    for el in body[0].iter():
        if not isinstance(el.tag, str):
            if title is not None and el.tail:
                parts.append(el.tail)
            continue
        if re.fullmatch(r"h[1-6]", el.tag):
            if title is not None and " ".join(parts).split():
                yield title, re.sub(r"\s*\n\s*", "\n", " ".join(parts)).strip()
            title = _NUMBERING.sub("", " ".join(el.text_content().split()))
            parts = [el.tail or ""]
            continue
        if title is not None and el.getparent() is not None and not _inside_heading(el):
            parts.append((el.text or "") + "\n")
            parts.append(el.tail or "")
    if title is not None and " ".join(parts).split():
        yield title, re.sub(r"\s*\n\s*", "\n", " ".join(parts)).strip()


def _inside_heading(el) -> bool:
    return any(re.fullmatch(r"h[1-6]", a.tag) for a in el.iterancestors() if isinstance(a.tag, str))


def file_sections(path: Path) -> Iterator[tuple[str, str]]:
    """``(title, own text)`` per section of one file, by its type."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix in (".html", ".htm"):
        return html_sections(text)
    return text_sections(text)
