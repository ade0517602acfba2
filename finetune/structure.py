"""Cheap training pairs from a collection's own structure: heading -> the section it heads.

E5's weakly supervised stage trains on (title, passage) pairs that the web gives for free; a
folder of documentation gives the same thing from its headings, with no LLM. Each section of a
reST, Markdown or HTML file becomes one passage (its own text, the heading removed, nested
sections left to themselves) and its heading one query of task ``title``::

    >>> from finetune.structure import text_sections
    >>> list(text_sections("Install\\n=======\\n\\nRun pip install rag-search to get it."))
    [('Install', 'Run pip install rag-search to get it.')]

Passage ids are ``page#n``; ``page`` (the file's path under the folder) is recorded with each
passage, so the split holds out whole pages (a page's sections never straddle train and test).
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from indexer.extract.rst import clean_rst_title

logger = logging.getLogger(__name__)

#: File types whose headings are read.
STRUCTURE_SUFFIXES = (".rst", ".md", ".markdown", ".txt", ".html", ".htm")
_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_:.<>])\1{2,}\s*$")
_MD_HEADING = re.compile(r"^#{1,6}\s+(\S.*?)\s*#*\s*$")
#: Section numbers that Sphinx puts before a title: "9.3. ", "B. ", "4.8.19. ".
_NUMBERING = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)*\.?|[A-Z]\.(?:[0-9]+\.)*)\s+")
_SKIP_PAGES = re.compile(r"(^|/)(genindex[^/]*|py-modindex|search|contents|modindex)\.html$")


@dataclass(frozen=True)
class Section:
    """One section of one file: ``id`` is ``page#n``."""

    id: str
    page: str
    title: str
    text: str


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


def collect_sections(folder: Path, *, min_words: int = 30, max_pages: int | None = None,
                     exclude: tuple[str, ...] = ()) -> list[Section]:
    """Every section of ``min_words``+ words under ``folder`` (files of :data:`STRUCTURE_SUFFIXES`).

    ``.rst.txt`` Sphinx sources are read as reST; index pages (genindex, search...) are skipped;
    pages (paths under ``folder``) matching a glob of ``exclude`` are left out, e.g. an evaluation set's.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass --docs a folder of .rst, .md or .html files.")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in STRUCTURE_SUFFIXES)
    files = [p for p in files if not _SKIP_PAGES.search(p.as_posix())]
    sections: list[Section] = []
    pages = 0
    for path in files:
        page = path.relative_to(folder).as_posix()
        if any(fnmatch.fnmatch(page, pattern) for pattern in exclude):
            continue
        found = [(t, s) for t, s in file_sections(path) if len(s.split()) >= min_words]
        if not found:
            continue
        sections += [Section(f"{page}#{n}", page, title, text) for n, (title, text) in enumerate(found)]
        pages += 1
        if max_pages is not None and pages >= max_pages:
            break
    logger.info("%d sections of %d+ words in %d pages under %s", len(sections), min_words, pages, folder)
    return sections


def title_pairs(sections: list[Section], *, min_title_words: int = 2) -> list[dict]:
    """One ``generated.jsonl`` record per section whose heading is unique and has ``min_title_words``+ words.

    A heading shared by several sections ("Introduction", "Examples") names none of them.
    """
    counts = Counter(s.title.lower() for s in sections)
    return [{"query": s.title, "positive_id": s.id, "task": "title", "instruction_task": "title_lookup",
             "generator": "structure"}
            for s in sections if counts[s.title.lower()] == 1 and len(s.title.split()) >= min_title_words]
