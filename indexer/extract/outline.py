"""Where a document's headings are in its extracted text, and the section a chunk is in.

The reST, Markdown, HTML and DOCX parsers report their headings as ``(level, title, line)`` in
document order (``line``: the heading's line as the text has it, ``"## Sorting"`` in Markdown);
:func:`locate` finds each line in the final text (after the newline clean-up), and
:func:`section_at` gives a chunk its heading path, shown with each search result::

    >>> heads = locate("Lists\\n\\nText.\\n\\nSorting\\n\\nMore.",
    ...                [(1, "Lists", "Lists"), (2, "Sorting", "Sorting")])
    >>> heads
    (Heading(offset=0, level=1, title='Lists'), Heading(offset=14, level=2, title='Sorting'))
    >>> section_at(heads, 15, 30)
    'Lists › Sorting'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

#: Between the titles of a heading path.
SEPARATOR = " › "


class Heading(NamedTuple):
    offset: int   # where the heading's line starts in the extracted text
    level: int    # 1 = top
    title: str


def locate(text: str, heads: Iterable[tuple[int, str, str]]) -> tuple[Heading, ...]:
    """The headings ``(level, title, line)`` whose line is a whole line of ``text``, in order; a
    heading whose line is not found after the previous one's is left out."""
    found: list[Heading] = []
    pos = 0
    for level, title, line in heads:
        title, line = " ".join(title.split()), " ".join(line.split())
        if not title or not line:
            continue
        at = _line_at(text, line, pos)
        if at >= 0:
            found.append(Heading(at, level, title))
            pos = at + len(line)
    return tuple(found)


def _line_at(text: str, wanted: str, pos: int) -> int:
    """Offset of the first line at or after ``pos`` that reads ``wanted`` (spaces collapsed), or -1."""
    at = text.find(wanted, pos)
    while at >= 0:
        start = text.rfind("\n", 0, at) + 1
        end = text.find("\n", at)
        line = text[start:] if end < 0 else text[start:end]
        if " ".join(line.split()) == wanted:
            return start
        at = text.find(wanted, at + 1)
    return -1


def section_at(headings: Sequence[Heading], start: int, end: int, title: str = "") -> str:
    """The heading path of the chunk ``text[start:end]``: the section it starts in, or the one
    that begins in its first half (a chunk cut just before a heading is about what follows).
    A top heading that begins the document's ``title`` is left out; "" before any heading."""
    middle = start + (end - start) // 2
    path: list[Heading] = []
    inside = False  # a heading after the chunk's start was taken: the first one only
    for heading in headings:
        if heading.offset > middle or (heading.offset > start and inside):
            break
        inside = heading.offset > start
        while path and path[-1].level >= heading.level:
            path.pop()
        path.append(heading)
    titles = [h.title for h in path]
    if titles and " ".join(title.split()).startswith(titles[0]):
        titles = titles[1:]  # the document's own title ("Sorting HOW TO" of "Sorting HOW TO — Python docs")
    return SEPARATOR.join(titles)
