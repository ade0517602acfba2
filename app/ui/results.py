"""How a result's text is cut for its card on the page: whole lines and sentences, never half a statement."""

from __future__ import annotations

import re

SNIPPET_CHARS = 700
_SENTENCE_END = re.compile(r"(?<=[.!?])[ \t]+(?=\S)")
_OPEN, _CLOSE = "([{", ")]}"


def _units(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every line of ``text``, long prose lines split after their sentences."""
    units, pos = [], 0
    for line in text.split("\n"):
        start = pos
        code = line.startswith((" ", "\t", ">>>", "..."))    # code and sessions: whole lines only
        for m in () if code else _SENTENCE_END.finditer(line):
            units.append((start, pos + m.start()))
            start = pos + m.end()
        units.append((start, pos + len(line)))
        pos += len(line) + 1
    return [(s, e) for s, e in units if text[s:e].strip()]


def _depth(text: str) -> int:
    return sum(text.count(c) for c in _OPEN) - sum(text.count(c) for c in _CLOSE)


def _continues(unit: str) -> bool:
    """A ``...`` continuation line of an interactive session: part of the statement above."""
    return unit.startswith("...") and not unit.startswith("....")


def _looks_like_a_start(unit: str) -> bool:
    if _depth(unit) < 0:    # closes a bracket opened before it: the tail of a statement
        return False
    first = unit.lstrip()[:1]
    return bool(first) and (first.isupper() or first.isdigit() or unit.lstrip().startswith((">>>", "#", "-", "*", "$")))


def card_snippet(text: str, terms: list[str], *, max_chars: int = SNIPPET_CHARS, mid_file: bool = True) -> str:
    """The part of a chunk shown on its card: whole lines and sentences only.

    The window of lines/sentences (at most ``max_chars``, unless one alone is longer) holding the
    most query ``terms`` is chosen (on a tie, one that starts like a sentence or a statement, then
    the earliest); it is widened until its brackets
    close and its ``...`` continuation lines end, so neither ``>>> matrix = [`` nor
    ``>>> for i in range(4):`` is left open. A chunk from the middle of a file
    (``mid_file``) that starts inside a sentence drops that fragment. ``…`` marks what was cut.
    """
    units = _units(text)
    if not units:
        return text.strip()
    if mid_file and len(units) > 1 and not _looks_like_a_start(text[units[0][0]:units[0][1]]):
        units = units[1:]
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, terms)) + r")", re.IGNORECASE) if terms else None
    hits = [len(pattern.findall(text[s:e])) if pattern else 0 for s, e in units]
    best, best_key = (0, 0), (-1, False)
    for i in range(len(units)):
        j = i
        while j + 1 < len(units) and units[j + 1][1] - units[i][0] <= max_chars:
            j += 1
        key = (sum(hits[i:j + 1]), i == 0 or _looks_like_a_start(text[units[i][0]:units[i][1]]))
        if key > best_key:
            best, best_key = (i, j), key
    i, j = best
    while j + 1 < len(units) and units[j + 1][1] - units[i][0] <= 2 * max_chars and (
            _depth(text[units[i][0]:units[j][1]]) > 0 or _continues(text[units[j + 1][0]:units[j + 1][1]])):
        j += 1
    start, end = units[i][0], units[j][1]
    out = text[start:end].strip()
    if text[:start].strip():
        out = "… " + out
    if text[end:].strip():
        out += " …"
    return out
