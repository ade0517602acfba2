"""Token-aware, structure-aware text chunking.

:func:`chunk_text` cuts a text into chunks of at most ``chunk_tokens`` tokens (as
counted by the embedding model's own tokenizer, special tokens excluded), preferring to
cut before headings and at paragraph breaks, then at sentence ends, then at line breaks,
then between words, and only as a last resort inside a word. Consecutive chunks overlap
by about ``overlap_tokens`` tokens. Every chunk is an exact slice of the input,
``chunk.text == text[chunk.start:chunk.end]``, without leading or trailing whitespace.

The text is tokenized once; every cut lies on a token boundary from that pass. Because
a slice can tokenize slightly differently on its own than in context (e.g. a BPE word
losing its leading space), each chunk is re-counted in batches and shrunk if needed,
so the limit holds for ``len(tokenizer(chunk.text, add_special_tokens=False).input_ids)``.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

logger = logging.getLogger(__name__)

# Cut scores: higher is a better place to end a chunk.
INVALID = -1  # inside one character shared by several tokens: never cut here by choice
MID_WORD = 0
WORD = 1
LINE = 2
SENTENCE = 3
PARAGRAPH = 4
HEADING = 5

_MIN_BATCH = 4
_MAX_BATCH = 128

_NEWLINE = re.compile(r"\n[ \t]*")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE = re.compile(r"[.!?…](?:[\"'”’»)\]]*)(\s+|\Z)|[。！？]")
_ATX_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+\S[^\n]*$", re.MULTILINE)
# A line of 3+ identical punctuation characters: a setext (Markdown) or reST underline or
# overline, with the title on the line before (underline) or after (overline).
_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+_:.<>])\1{2,}[ \t]*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A slice of the source text: ``text == source[start:end]`` (character offsets)."""

    text: str
    start: int
    end: int


def chunk_text(
    text: str, tokenizer: Any, chunk_tokens: int = 256, overlap_tokens: int = 32
) -> list[Chunk]:
    """Split ``text`` into overlapping chunks of at most ``chunk_tokens`` tokens.

    Args:
        text: the document text.
        tokenizer: a Hugging Face fast tokenizer (``PreTrainedTokenizerFast``); it
            must support ``return_offsets_mapping``.
        chunk_tokens: the maximum number of tokens per chunk (special tokens excluded,
            so leave room for them below the model's maximum sequence length).
        overlap_tokens: about how many tokens consecutive chunks share; the overlap
            starts on a token boundary, preferably between words.

    Returns:
        Chunks in document order; ``[]`` for empty or whitespace-only text.

    Raises:
        ValueError: a size is not a positive integer or the overlap is not smaller than
            the chunk size.
        TypeError: the tokenizer is not a fast tokenizer.

    Notes:
        Chunks never start or end with whitespace. The limit can only be exceeded when a
        single in-context token re-tokenizes on its own into more than ``chunk_tokens``
        tokens (conceivable for ``chunk_tokens`` below ~8); that chunk is kept and a
        warning logged. A WordPiece tokenizer maps an unbroken run of over 100
        characters to one ``[UNK]`` token, so such a run stays in one chunk.
    """
    _validate_sizes(chunk_tokens, overlap_tokens)
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            f"chunk_text needs a fast tokenizer with offset mappings, got "
            f"{type(tokenizer).__name__}; load it with AutoTokenizer.from_pretrained(..., "
            "use_fast=True)"
        )
    if not text or not text.strip():
        return []
    starts, ends = _token_offsets(text, tokenizer)
    starts, ends = _strip_blank_tokens(text, starts, ends)
    if not starts:
        return []
    max_end = _prefix_max(ends)
    scores = cut_scores(text, starts, max_end)
    planner = _Planner(len(starts), scores, chunk_tokens, overlap_tokens)
    spans = _verified_spans(text, tokenizer, planner, starts, max_end)
    chunks: list[Chunk] = []
    for first, stop in spans:
        start, end = _char_span(text, starts, max_end, first, stop)
        if start >= end:
            continue
        # Trimming whitespace tokens (or shrinking) can make a span contain, or be
        # contained in, its neighbour: keep only the larger one, coverage is unchanged.
        while chunks and start <= chunks[-1].start and end >= chunks[-1].end:
            chunks.pop()
        if chunks and chunks[-1].start <= start and end <= chunks[-1].end:
            continue
        chunks.append(Chunk(text[start:end], start, end))
    return chunks


def _char_span(
    text: str, starts: list[int], max_end: list[int], first: int, stop: int
) -> tuple[int, int]:
    """Character span of tokens ``[first, stop)``, without leading/trailing whitespace.

    Tokenizers whose tokens carry whitespace (byte-level BPE has blank-line tokens and
    leading-space word tokens) would otherwise start or end chunks with blank space.
    """
    start, end = starts[first], max_end[stop - 1]
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _validate_sizes(chunk_tokens: int, overlap_tokens: int) -> None:
    if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens <= 0:
        raise ValueError(f"chunk_tokens must be a positive integer, got {chunk_tokens!r}")
    if (
        isinstance(overlap_tokens, bool)
        or not isinstance(overlap_tokens, int)
        or overlap_tokens < 0
    ):
        raise ValueError(f"overlap_tokens must be an integer >= 0, got {overlap_tokens!r}")
    if overlap_tokens >= chunk_tokens:
        raise ValueError(
            f"overlap_tokens ({overlap_tokens}) must be smaller than chunk_tokens "
            f"({chunk_tokens}); lower the overlap or raise the chunk size"
        )


# --------------------------------------------------------------------------- tokens


def _token_offsets(text: str, tokenizer: Any) -> tuple[list[int], list[int]]:
    """Character start and end of every token of ``text`` (one tokenizer pass)."""
    encoding = tokenizer(
        text,
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        truncation=False,
        verbose=False,
    )
    offsets = encoding["offset_mapping"]
    return [int(s) for s, _ in offsets], [int(e) for _, e in offsets]


def _strip_blank_tokens(
    text: str, starts: list[int], ends: list[int]
) -> tuple[list[int], list[int]]:
    """Drop whitespace-only tokens (byte-level BPE has them) at the text's two ends."""
    lo, hi = 0, len(starts)
    while lo < hi and not text[starts[lo] : ends[lo]].strip():
        lo += 1
    while hi > lo and not text[starts[hi - 1] : ends[hi - 1]].strip():
        hi -= 1
    if lo == 0 and hi == len(starts):
        return starts, ends
    return starts[lo:hi], ends[lo:hi]


def count_tokens(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Token counts of ``texts`` (special tokens excluded), in one batched call."""
    if not texts:
        return []
    encoding = tokenizer(
        list(texts),
        add_special_tokens=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        truncation=False,
        verbose=False,
    )
    return [len(ids) for ids in encoding["input_ids"]]


def _prefix_max(values: list[int]) -> list[int]:
    out = []
    current = 0
    for value in values:
        if value > current:
            current = value
        out.append(current)
    return out


# --------------------------------------------------------------------------- cut scores


def cut_scores(text: str, starts: list[int], max_end: list[int]) -> list[int]:
    """Score every possible cut; ``scores[i]`` is for cutting just before token ``i``.

    Entries 0 and ``len(starts)`` (the text's ends) are unused. ``max_end[i]`` is the
    largest end offset of tokens ``0..i``.
    """
    n, length = len(starts), len(text)
    scores = [MID_WORD] * (n + 1)
    for i in range(1, n):
        start = starts[i]
        if max_end[i - 1] > start:
            scores[i] = INVALID
        elif (
            max_end[i - 1] < start
            or start == 0
            or start >= length
            or text[start].isspace()
            or text[start - 1].isspace()
        ):
            scores[i] = WORD

    def raise_to(score: int, lo: int, hi: int) -> None:
        i = bisect_left(starts, lo)
        if 0 < i < n and starts[i] <= hi and scores[i] != INVALID and scores[i] < score:
            scores[i] = score

    for m in _NEWLINE.finditer(text):
        raise_to(LINE, m.start(), m.end())
    for m in _SENTENCE.finditer(text):
        after_punct = m.start(1) if m.lastindex else m.end()
        raise_to(SENTENCE, after_punct, m.end())
    for m in _PARAGRAPH.finditer(text):
        raise_to(PARAGRAPH, m.start(), m.end())

    heading_ends: list[int] = []
    for start, end in _heading_lines(text):
        ws_start = start
        while ws_start > 0 and text[ws_start - 1].isspace():
            ws_start -= 1
        raise_to(HEADING, ws_start, start)
        heading_ends.append(end)
    for end in heading_ends:  # do not end a chunk right after a heading
        ws_end = end
        while ws_end < len(text) and text[ws_end].isspace():
            ws_end += 1
        i = bisect_left(starts, end)
        if 0 < i < n and starts[i] <= ws_end and scores[i] > WORD:
            scores[i] = WORD
    return scores


def _heading_lines(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of heading blocks (title line plus adornments)."""
    spans = [(m.start(), m.end()) for m in _ATX_HEADING.finditer(text)]
    for m in _ADORNMENT.finditer(text):
        line_start = m.start()
        if line_start == 0:
            continue
        prev_start = text.rfind("\n", 0, line_start - 1) + 1
        prev_line = text[prev_start : line_start - 1]
        if not prev_line.strip() or _ADORNMENT.fullmatch(prev_line):
            continue  # an overline or a transition; its title line is handled as underline
        start = prev_start
        if prev_start > 0:  # reST overline above the title?
            over_start = text.rfind("\n", 0, prev_start - 1) + 1
            if text[over_start : prev_start - 1].rstrip() == m.group(0).rstrip():
                start = over_start
        spans.append((start, m.end()))
    return spans


# --------------------------------------------------------------------------- planning


class _Planner:
    """Chooses chunk spans ``[first, stop)`` in token indices from the cut scores."""

    def __init__(self, n: int, scores: list[int], chunk_tokens: int, overlap_tokens: int):
        self.n = n
        self.scores = scores
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap_tokens
        self.min_fill = max(overlap_tokens + 1, chunk_tokens // 2)

    def choose_stop(self, first: int, limit: int | None = None, after: int = 0) -> int:
        """Best stop for a chunk starting at ``first`` with at most ``limit`` tokens.

        The stop is preferably beyond ``after`` (the previous chunk's stop), so that a
        chunk is never a mere subset of the one before.
        """
        limit = self.chunk_tokens if limit is None else limit
        hi = min(self.n, first + limit)
        if hi == self.n and limit >= self.n - first:
            return self.n
        lo = min(hi, max(first + self.min_fill, after + 1))
        best = self._best_cut(lo, hi)
        if best is None:
            best = self._best_cut(first + 1, lo - 1)
        return best if best is not None else hi

    def _best_cut(self, lo: int, hi: int) -> int | None:
        """Highest-scoring valid cut in ``[lo, hi]``, the latest one on ties."""
        scores = self.scores
        best, best_score = None, INVALID
        for i in range(hi, lo - 1, -1):
            if scores[i] > best_score:
                best, best_score = i, scores[i]
                if best_score == HEADING:
                    break
        return best

    def next_first(self, first: int, stop: int) -> int:
        """Start of the chunk after ``[first, stop)``: about ``overlap`` tokens back."""
        if self.overlap == 0:
            return stop
        target = max(first + 1, stop - self.overlap)
        window = max(2, self.overlap // 4)
        fallback = None
        for delta in range(window + 1):
            for i in (target + delta, target - delta):
                if first < i < stop:
                    if self.scores[i] >= WORD:
                        return i
                    if fallback is None and self.scores[i] != INVALID:
                        fallback = i
        return fallback if fallback is not None else target

    def plan(self, first: int, after: int, max_chunks: int) -> list[tuple[int, int]]:
        """Up to ``max_chunks`` spans from token ``first`` on (``after``: previous stop)."""
        spans: list[tuple[int, int]] = []
        while len(spans) < max_chunks:
            stop = self.choose_stop(first, after=after)
            spans.append((first, stop))
            if stop >= self.n:
                break
            first, after = self.next_first(first, stop), stop
        return spans


def _verified_spans(
    text: str, tokenizer: Any, planner: _Planner, starts: list[int], max_end: list[int]
) -> list[tuple[int, int]]:
    """Plan spans in batches, re-count each chunk on its own and shrink any too long."""

    def piece(span: tuple[int, int]) -> str:
        start, end = _char_span(text, starts, max_end, *span)
        return text[start:end]

    limit = planner.chunk_tokens
    spans: list[tuple[int, int]] = []
    first, after, batch = 0, 0, 16
    while True:
        planned = planner.plan(first, after, batch)
        counts = count_tokens(tokenizer, [piece(span) for span in planned])
        bad = next((k for k, count in enumerate(counts) if count > limit), None)
        if bad is None:
            spans.extend(planned)
            batch = min(_MAX_BATCH, batch * 2)
        else:
            spans.extend(planned[:bad])
            spans.append(_shrink(planned[bad], counts[bad], planner, tokenizer, piece))
            batch = _MIN_BATCH
        last_first, last_stop = spans[-1]
        if last_stop >= planner.n:
            return spans
        first, after = planner.next_first(last_first, last_stop), last_stop


def _shrink(span, count, planner: _Planner, tokenizer: Any, piece) -> tuple[int, int]:
    """Move the span's stop back until the chunk alone fits in ``chunk_tokens``."""
    first, stop = span
    limit = planner.chunk_tokens
    while count > limit and stop - first > 1:
        # Aim below the current stop by the excess (at least one token).
        budget = min(stop - first - 1, limit - (count - (stop - first)))
        stop = planner.choose_stop(first, max(1, budget))
        count = count_tokens(tokenizer, [piece((first, stop))])[0]
    if count > limit:
        logger.warning(
            "chunk of tokens %d..%d re-tokenizes to %d tokens, over chunk_tokens=%d, and "
            "cannot be shrunk further; keeping it (raise chunk_tokens to avoid this)",
            first,
            stop,
            count,
            limit,
        )
    return first, stop


__all__ = ["Chunk", "chunk_text", "count_tokens", "cut_scores"]
