"""Text helpers of the filters: normalisation, words, LLM artifacts, copying, shingles and Jaccard."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_ARTIFACT_PREFIX_RE = re.compile(
    r"""^\s*(?:
        (?:sure|certainly|of\s+course|okay)[!,.:]\s*
      | here(?:'s|\s+is|\s+are)\b[^:\n]{0,80}:\s*
      | (?:\*\*)?(?:generated\s+|search\s+|user\s+|synthetic\s+|example\s+)?(?:query|question)(?:\s*\d+)?
        (?:\*\*)?\s*:\s*(?:\*\*)?
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_QUOTES = "\"'`“”‘’«»"
#: Signs of an LLM answer rather than a query; checked after :func:`strip_artifacts`.
ARTIFACT_RE = re.compile(
    r"\bas an ai\b|\bas a (?:large )?language model\b|\bi(?:'m| am) sorry\b|\bi apologi[sz]e\b"
    r"|\bi (?:cannot|can't|can not) (?:provide|generate|create|write|help|assist)\b"
    r"|\bhere (?:is|are) (?:a|an|the|some) (?:\w+ )?(?:query|queries|question|questions)\b"
    r"|```|<\|[a-z_]+\|>|\[/?inst\]|(?:^|\n)\s*\d+[.)]\s.*\n\s*\d+[.)]\s",
    re.IGNORECASE,
)


def normalize_text(text: str) -> str:
    """Lower-case, NFKC, punctuation removed, whitespace collapsed: the form duplicates are compared in."""
    return " ".join(_WORD_RE.findall(unicodedata.normalize("NFKC", text).lower()))


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``."""
    return normalize_text(text).split()


def strip_artifacts(query: str) -> str:
    """Remove LLM wrapping from a generated query: "Here is a query:", "Query:", "**Question:**", quotes.

    Applied repeatedly, so "Sure! Here is the query: "what is X"" becomes ``what is X``.
    """
    text = query.strip()
    while True:
        stripped = _ARTIFACT_PREFIX_RE.sub("", text, count=1).strip()
        if len(stripped) >= 2 and stripped[0] in _QUOTES and stripped[-1] in _QUOTES:
            stripped = stripped[1:-1].strip()
        if stripped == text:
            return text
        text = stripped


def letter_ratio(text: str) -> float:
    """Share of letters among the non-space characters of ``text`` (0 for empty text)."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def copied_from(query_words: Sequence[str], passage_words: Sequence[str], ratio: float) -> bool:
    """True when a contiguous run of at least ``ratio`` of the query's words occurs verbatim in the passage."""
    n = max(1, int(np.ceil(ratio * len(query_words))))
    if not query_words or n > len(passage_words):
        return False
    grams = {tuple(passage_words[i:i + n]) for i in range(len(passage_words) - n + 1)}
    return any(tuple(query_words[i:i + n]) in grams for i in range(len(query_words) - n + 1))


def shingles(text: str, n: int = 4, unit: str = "char") -> frozenset[str]:
    """Shingles of the normalised text: character ``n``-grams (``unit="char"``) or word ``n``-grams."""
    norm = normalize_text(text)
    if unit == "word":
        toks = norm.split()
        if len(toks) <= n:
            return frozenset([" ".join(toks)]) if toks else frozenset()
        return frozenset(" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1))
    if len(norm) <= n:
        return frozenset([norm]) if norm else frozenset()
    return frozenset(norm[i:i + n] for i in range(len(norm) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
