"""The model-free steps: malformed queries, near-duplicate queries, repetitive passages."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace

from .minhash import near_duplicate_groups
from .records import Dropped, Example, RefineReport, _finish
from .text import (
    ARTIFACT_RE,
    copied_from,
    letter_ratio,
    normalize_text,
    shingles,
    strip_artifacts,
    words,
)

logger = logging.getLogger(__name__)

def drop_malformed(examples: Sequence[Example], passages: Mapping[str, str], *, min_words: int = 3,
                   max_words: int = 128, max_chars: int = 1000, min_letter_ratio: float = 0.5,
                   copy_ratio: float = 0.9, copy_min_words: int = 6,
                   report: RefineReport | None = None) -> tuple[list[Example], list[Dropped]]:
    """Strip LLM artifacts from queries, then drop malformed examples.

    Reasons: ``missing_positive`` (positive id not in ``passages`` or empty passage),
    ``llm_artifact`` (refusals, "as an AI", code fences, numbered lists of several queries, left
    after stripping), ``too_short``
    (< ``min_words`` words), ``too_long`` (> ``max_words`` words or > ``max_chars`` chars),
    ``not_text`` (letters < ``min_letter_ratio`` of the characters), ``copied`` (the query
    equals the passage, or - for queries of at least ``copy_min_words`` words - a run of
    ``copy_ratio`` of its words occurs verbatim in the passage). Kept examples carry the
    stripped query; the report counts them as ``stripped``.
    """
    kept: list[Example] = []
    dropped: list[Dropped] = []
    n_stripped = 0
    for ex in examples:
        query = strip_artifacts(ex.query)
        passage = passages.get(ex.positive_id)
        qwords = words(query)
        reason, detail = "", ""
        if not passage or not passage.strip():
            reason, detail = "missing_positive", ex.positive_id
        elif artifact := ARTIFACT_RE.search(query):
            reason, detail = "llm_artifact", artifact.group(0).strip()
        elif len(qwords) < min_words:
            reason, detail = "too_short", f"{len(qwords)} words"
        elif len(qwords) > max_words or len(query) > max_chars:
            reason, detail = "too_long", f"{len(qwords)} words, {len(query)} chars"
        elif letter_ratio(query) < min_letter_ratio:
            reason, detail = "not_text", f"letter ratio {letter_ratio(query):.2f}"
        else:
            pwords = words(passage)
            if qwords == pwords or (len(qwords) >= copy_min_words and copied_from(qwords, pwords, copy_ratio)):
                reason, detail = "copied", "verbatim span of the positive passage"
        if reason:
            dropped.append(Dropped(ex, reason, detail))
            continue
        if query != ex.query:
            n_stripped += 1
            ex = replace(ex, query=query)
        kept.append(ex)
    return _finish("drop_malformed", len(examples), kept, dropped, report, stripped=n_stripped)


def dedupe_queries(examples: Sequence[Example], *, threshold: float = 0.8, shingle_size: int = 4,
                   per_task: bool = False,
                   report: RefineReport | None = None) -> tuple[list[Example], list[Dropped]]:
    """Keep the first of each group of near-duplicate queries.

    Duplicates: equal normalised text (reason ``duplicate``) or character ``shingle_size``-gram
    Jaccard >= ``threshold`` (reason ``near_duplicate``). Duplicates are removed across tasks
    unless ``per_task``. ``Dropped.detail`` is the kept query.
    """
    kept: list[Example] = []
    dropped: list[Dropped] = []
    groups: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[ex.task if per_task else ""].append(i)
    keep_flags = [True] * len(examples)
    for idx in groups.values():
        seen: dict[str, int] = {}
        unique: list[int] = []
        for i in idx:
            norm = normalize_text(examples[i].query)
            if norm in seen:
                keep_flags[i] = False
                dropped.append(Dropped(examples[i], "duplicate", examples[seen[norm]].query))
            else:
                seen[norm] = i
                unique.append(i)
        owner = near_duplicate_groups([shingles(examples[i].query, shingle_size) for i in unique], threshold)
        for pos, j in enumerate(owner):
            if j != -1:
                keep_flags[unique[pos]] = False
                dropped.append(Dropped(examples[unique[pos]], "near_duplicate", examples[unique[j]].query))
    kept = [ex for ex, keep in zip(examples, keep_flags) if keep]
    return _finish("dedupe_queries", len(examples), kept, dropped, report)


def drop_repetitive_passages(passages: Mapping[str, str], *, threshold: float = 0.9, shingle_size: int = 3,
                             min_unique_ratio: float = 0.25, unique_min_words: int = 30,
                             report: RefineReport | None = None) -> tuple[dict[str, str], list[Dropped]]:
    """Drop degenerate and near-duplicate passages; returns ``(kept passages, dropped)``.

    Reasons: ``empty``; ``repetitive`` (passages of at least ``unique_min_words`` words whose
    distinct-word share is below ``min_unique_ratio``, e.g. boilerplate repeated);
    ``near_duplicate`` (word ``shingle_size``-gram Jaccard >= ``threshold`` with an earlier kept
    passage; ``Dropped.detail`` is that passage's id, so positives can be redirected).
    ``Dropped.item`` is the passage id.
    """
    dropped: list[Dropped] = []
    candidates: list[str] = []
    for pid, text in passages.items():
        toks = words(text)
        if not toks:
            dropped.append(Dropped(pid, "empty"))
        elif len(toks) >= unique_min_words and len(set(toks)) / len(toks) < min_unique_ratio:
            dropped.append(Dropped(pid, "repetitive", f"unique-word ratio {len(set(toks)) / len(toks):.2f}"))
        else:
            candidates.append(pid)
    owner = near_duplicate_groups([shingles(passages[p], shingle_size, "word") for p in candidates], threshold)
    kept: dict[str, str] = {}
    for pid, j in zip(candidates, owner):
        if j == -1:
            kept[pid] = passages[pid]
        else:
            dropped.append(Dropped(pid, "near_duplicate", candidates[j]))
    _finish("drop_repetitive_passages", len(passages), list(kept), dropped, report)
    return kept, dropped
