"""Cheap training pairs from a collection's own structure: heading -> the section it heads.

E5's weakly supervised stage trains on (title, passage) pairs that the web gives for free; a
folder of documentation gives the same thing from its headings, with no LLM. Each section of a
reST, Markdown or HTML file becomes one passage (its own text, the heading removed, nested
sections left to themselves) and its heading one query of task ``title``::

    >>> from indexer.extract.sections import text_sections
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
from dataclasses import dataclass
from pathlib import Path

from indexer.extract.sections import file_sections

logger = logging.getLogger(__name__)

#: File types whose headings are read.
STRUCTURE_SUFFIXES = (".rst", ".md", ".markdown", ".txt", ".html", ".htm")
_SKIP_PAGES = re.compile(r"(^|/)(genindex[^/]*|py-modindex|search|contents|modindex)\.html$")


@dataclass(frozen=True)
class Section:
    """One section of one file: ``id`` is ``page#n``."""

    id: str
    page: str
    title: str
    text: str


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
