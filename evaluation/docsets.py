"""Evaluation sets built from real documentation that Debian packages install.

Each set pairs text a person wrote *about* a document (not copied from it) with that document:

- ``python-synopsis`` (package ``python3.11-doc``): the query is a module's ``:synopsis:`` line
  from the reST sources (``"Encode and decode the JSON format."``); the document is the whole
  HTML page that documents the module, as the product's own extractor reads it. The synopsis is
  shown only in the module index, which is left out of the corpus. Every other page of the docs
  (tutorial, HOWTOs, reference, ...) is a distractor. Page-level, known-item.
- ``kernel-sections`` (package ``linux-doc-6.1``): the query is a section title of the kernel
  documentation (``"Allocating memory with kmalloc"``); the document is that section's own text,
  with the title removed. Titles shorter than three words or shared by several sections
  (``"Introduction"``) are skipped. Section-level, known-item.

- ``headings`` (any folder of reST or Markdown files, e.g. your own notes): the same
  title -> section construction as ``kernel-sections``, from the files' own headings, so a corpus
  without labelled queries still gets a test set.

The sets are built at test or benchmark time from the installed files and written in the BEIR
layout (:func:`evaluation.beir.write_beir`), so ``rag eval FOLDER`` reads them. Nothing of the
documents is committed. ``python -m evaluation.docsets OUT`` builds both.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from evaluation.beir import BeirDataset, write_beir
from indexer.extract import ExtractionError, extract
from indexer.extract.rst import clean_rst_title
from indexer.extract.sections import text_sections

log = logging.getLogger(__name__)

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
KERNEL_DOCS = Path("/usr/share/doc/linux-doc-6.1/html")
SETS = ("python-synopsis", "kernel-sections")
#: Pages that list other pages (indexes, search, the module index that shows the synopses).
_SKIP_PAGES = re.compile(r"(^|/)(genindex[^/]*|py-modindex|search|contents|modindex)\.html$")
_SYNOPSIS = re.compile(r"^\s*:synopsis:\s*(.+?)\s*$((?:\n\s{4,}(?!:)\S.*$)*)", re.MULTILINE)
#: Section numbers that Sphinx puts before a title: "9.3. ", "B. ", "4.8.19. ".
_NUMBERING = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)*\.?|[A-Z]\.(?:[0-9]+\.)*)\s+")
_MIN_WORDS_QUERY = 3
_MIN_WORDS_SECTION = 40


class MissingDocs(FileNotFoundError):
    """The documentation package a set is built from is not installed."""


def _require(root: Path, package: str) -> None:
    if not root.is_dir():
        raise MissingDocs(f"{root} not found: install the Debian package {package} "
                          f"(apt-get install {package}) to build this evaluation set.")


def python_synopses(root: Path = PYTHON_DOCS) -> Iterator[tuple[str, str]]:
    """``(html page relative path, synopsis)`` for every ``:synopsis:`` in the reST sources."""
    sources = root / "_sources"
    for src in sorted(sources.rglob("*.rst.txt")):
        page = src.relative_to(sources).as_posix()[: -len(".rst.txt")] + ".html"
        if not (root / page).is_file():
            continue
        for m in _SYNOPSIS.finditer(src.read_text(encoding="utf-8", errors="replace")):
            yield page, clean_rst_title(m.group(1) + " " + m.group(2))


def _page_text(path: Path) -> tuple[str, str] | None:
    try:
        doc = extract(path)
    except ExtractionError as exc:
        log.info("skipped %s: %s", path, exc.reason)
        return None
    return doc.title, doc.text


def python_synopsis_set(root: Path = PYTHON_DOCS, max_distractors: int | None = None,
                        seed: int = 0) -> BeirDataset:
    """Module synopsis -> the HTML page documenting the module (see the module docstring).

    ``max_distractors`` keeps a random sample of the pages no query points to (None: all).
    """
    _require(root, "python3.11-doc")
    by_text: dict[str, str] = {}
    for page, synopsis in python_synopses(root):
        if len(synopsis.split()) >= _MIN_WORDS_QUERY:
            by_text.setdefault(synopsis.lower(), f"{page}\t{synopsis}")
    wanted = {v.split("\t")[0] for v in by_text.values()}
    pages = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html"))
    pages = [p for p in pages if not _SKIP_PAGES.search(p) and not p.startswith("_")]
    others = [p for p in pages if p not in wanted]
    if max_distractors is not None and max_distractors < len(others):
        others = sorted(random.Random(seed).sample(others, max_distractors))
    corpus: dict[str, tuple[str, str]] = {}
    for page in sorted(wanted) + others:
        got = _page_text(root / page)
        if got and got[1].strip():
            corpus[page] = got
    queries, qrels = {}, {}
    for i, value in enumerate(sorted(by_text.values())):
        page, synopsis = value.split("\t", 1)
        if page in corpus:
            qid = f"q{i}"
            queries[qid], qrels[qid] = synopsis, {page: 1}
    log.info("python-synopsis: %d queries, %d pages", len(queries), len(corpus))
    return BeirDataset(corpus, queries, qrels, name="python-synopsis")


def _sections(path: Path) -> Iterator[tuple[str, str, str]]:
    """``(section id, title, own text)`` for each ``<section>`` of a Sphinx HTML page.

    The own text leaves out the heading and the nested sections (they are sections of their own).
    """
    from lxml import etree
    from lxml import html as lxml_html

    tree = lxml_html.parse(str(path))
    body = tree.xpath('//div[@itemprop="articleBody"]') or tree.xpath("//body")
    if not body:
        return
    for sec in body[0].iter("section"):
        heading = next((c for c in sec if isinstance(c.tag, str) and re.fullmatch(r"h[1-6]", c.tag)), None)
        if heading is None or not sec.get("id"):
            continue
        for link in heading.xpath('.//a[contains(@class, "headerlink")]'):
            link.drop_tree()
        title = _NUMBERING.sub("", " ".join(heading.text_content().split()))
        parts = []
        for child in sec:
            if child is heading or not isinstance(child.tag, str) or child.tag == "section":
                continue
            for link in child.xpath('.//a[contains(@class, "headerlink")]'):
                link.drop_tree()
            parts.append(etree.tostring(child, method="text", encoding="unicode"))
        text = re.sub(r"\n\s*\n+", "\n\n", "\n".join(parts)).strip()
        yield sec.get("id"), title, text


def kernel_sections_set(root: Path = KERNEL_DOCS, max_queries: int | None = 1000,
                        max_docs: int | None = 4000, seed: int = 0) -> BeirDataset:
    """Section title -> the section's own text (see the module docstring).

    ``max_queries`` samples the queries and ``max_docs`` caps the corpus (the queries' sections
    always kept, the rest a random sample of the other sections), so the set fits a CPU run.
    """
    _require(root, "linux-doc-6.1")
    sections: list[tuple[str, str, str]] = []
    for page in sorted(root.rglob("*.html")):
        rel = page.relative_to(root).as_posix()
        if rel.startswith("_") or _SKIP_PAGES.search(rel):
            continue
        for sid, title, text in _sections(page):
            if len(text.split()) >= _MIN_WORDS_SECTION:
                sections.append((f"{rel}#{sid}", title, text))
    return _title_set(sections, "kernel-sections", max_queries, max_docs, seed)


def headings_set(folder: Path, max_queries: int | None = None, seed: int = 0) -> BeirDataset:
    """Heading -> its section's own text, over the ``.rst``/``.md``/``.txt`` files under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; give a folder of .rst or .md files.")
    sections = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".rst", ".md", ".txt") and p.is_file()):
        rel = path.relative_to(folder).as_posix()
        for n, (title, text) in enumerate(text_sections(path.read_text(encoding="utf-8", errors="replace"))):
            if len(text.split()) >= _MIN_WORDS_SECTION:
                sections.append((f"{rel}#{n}", title, text))
    return _title_set(sections, f"headings:{folder.name}", max_queries, None, seed)


def _title_set(sections: list[tuple[str, str, str]], name: str, max_queries: int | None,
               max_docs: int | None, seed: int) -> BeirDataset:
    """Unique titles of 3+ words as queries for their sections; the corpus holds every section."""
    counts = Counter(title.lower() for _, title, _ in sections)
    candidates = [(d, t) for d, t, _ in sections
                  if len(t.split()) >= _MIN_WORDS_QUERY and counts[t.lower()] == 1]
    rng = random.Random(seed)
    if max_queries is not None and max_queries < len(candidates):
        candidates = sorted(rng.sample(candidates, max_queries))
    chosen = {d for d, _ in candidates}
    rest = [s for s in sections if s[0] not in chosen]
    room = None if max_docs is None else max(0, max_docs - len(chosen))
    if room is not None and room < len(rest):
        rest = rng.sample(rest, room)
    corpus = {d: ("", text) for d, _, text in sections if d in chosen}
    corpus.update({d: ("", text) for d, _, text in rest})
    queries = {f"q{i}": title for i, (_, title) in enumerate(candidates)}
    qrels = {f"q{i}": {doc: 1} for i, (doc, _) in enumerate(candidates)}
    log.info("%s: %d queries, %d sections (of %d)", name, len(queries), len(corpus), len(sections))
    return BeirDataset(corpus, queries, qrels, name=name)


def build(name: str, **kwargs) -> BeirDataset:
    """The set called ``name`` (one of :data:`SETS`)."""
    if name == "python-synopsis":
        return python_synopsis_set(**kwargs)
    if name == "kernel-sections":
        return kernel_sections_set(**kwargs)
    raise ValueError(f"Unknown evaluation set {name!r}; choose one of: {', '.join(SETS)}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.docsets", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write one BEIR folder per set into")
    parser.add_argument("--set", dest="sets", action="append", choices=SETS, help="default: all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in args.sets or SETS:
        folder = write_beir(args.out / name, build(name))
        print(f"{name}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
