"""Refinement of synthetic (query, positive passage) training data, after Linq-Embed-Mistral / NV-Retriever.

Each step is a pure function over records returning ``(kept, dropped)``; ``dropped`` holds
:class:`Dropped` entries with a reason. Pass a :class:`RefineReport` to count them. A typical
order::

    report = RefineReport()
    passages, _ = drop_repetitive_passages(passages, report=report)
    examples, _ = drop_malformed(examples, passages, report=report)      # also drops lost positives
    examples, _ = dedupe_queries(examples, report=report)
    # the caller embeds queries (with the task instruction) and passages, then:
    kept, _ = filter_false_positives(examples, q_vecs, p_vecs, p_ids, top_k=20, report=report)
    q_vecs, examples = q_vecs[rows_of(kept, examples)], kept
    examples, _ = mine_hard_negatives(examples, q_vecs, p_vecs, p_ids, n_negatives=7,
                                      passages=passages, report=report)

Vectors: ``query_vecs`` has one row per example (in order); ``passage_vecs`` one row per id
in ``passage_ids``. Scores are cosine similarities (rows are L2-normalised here).
Near-duplicate text detection uses shingle Jaccard similarity with MinHash-LSH candidate
search, so it scales to large sets; candidates are always verified with the exact Jaccard.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


# -- records and report ------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """One training record: a query, the id of its positive passage, its task, hard negatives."""

    query: str
    positive_id: str
    task: str
    hard_negative_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Dropped:
    """A record a step removed: the example (or passage id), the reason, and a detail."""

    item: Any
    reason: str
    detail: str = ""


@dataclass
class RefineReport:
    """Counts per step: ``{step: {"in": n, "kept": n, <reason>: n, ...}}``."""

    steps: dict[str, dict[str, int]] = field(default_factory=dict)

    def record(self, step: str, n_in: int, n_kept: int, dropped: Iterable[Dropped], **extra: int) -> None:
        """Add the counts of one run of ``step`` (repeated runs accumulate)."""
        counts = self.steps.setdefault(step, {"in": 0, "kept": 0})
        counts["in"] += n_in
        counts["kept"] += n_kept
        for reason, n in Counter(d.reason for d in dropped).items():
            counts[reason] = counts.get(reason, 0) + n
        for key, n in extra.items():
            counts[key] = counts.get(key, 0) + n

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {step: dict(c) for step, c in self.steps.items()}

    def summary(self) -> str:
        """One line per step: ``dedupe_queries: 1000 -> 950 (near_duplicate=50)``."""
        lines = []
        for step, c in self.steps.items():
            rest = ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("in", "kept"))
            lines.append(f"{step}: {c['in']} -> {c['kept']}" + (f" ({rest})" if rest else ""))
        return "\n".join(lines)


def rows_of(subset: Sequence[Example], examples: Sequence[Example]) -> list[int]:
    """Positions in ``examples`` of the records in ``subset`` (the same objects, as steps that do
    not rewrite a record return them), to select the matching rows of a vector matrix."""
    position = {id(e): i for i, e in enumerate(examples)}
    try:
        return [position[id(e)] for e in subset]
    except KeyError:
        raise ValueError("rows_of: subset holds records that are not in examples (a step that rewrites "
                         "records returns new objects); re-embed those queries instead.") from None


def _finish(step: str, n_in: int, kept: list, dropped: list[Dropped], report: RefineReport | None,
            **extra: int) -> tuple[list, list[Dropped]]:
    if report is not None:
        report.record(step, n_in, len(kept), dropped, **extra)
    logger.info("%s: kept %d of %d (%s)", step, len(kept), n_in,
                ", ".join(f"{r}={n}" for r, n in Counter(d.reason for d in dropped).items()) or "none dropped")
    return kept, dropped


# -- text helpers ------------------------------------------------------------------------------
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
_ARTIFACT_RE = re.compile(
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


# -- MinHash LSH near-duplicate search ---------------------------------------------------------
_MERSENNE = np.uint64((1 << 61) - 1)
_NUM_PERM = 128
_BANDS = 32  # 32 bands x 4 rows: a pair with Jaccard 0.7 becomes a candidate with p > 0.9998


def _minhash(sh: frozenset[str], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not sh:
        return np.full(a.shape, np.iinfo(np.uint64).max, dtype=np.uint64)
    h = np.fromiter((zlib.crc32(s.encode()) for s in sh), dtype=np.uint64, count=len(sh))
    return ((np.outer(a, h) + b[:, None]) % _MERSENNE).min(axis=1)


def near_duplicate_groups(texts: Sequence[frozenset[str]], threshold: float, seed: int = 0) -> list[int]:
    """For each shingle set, the index of the earlier *kept* set it duplicates (Jaccard >= threshold), or -1.

    Greedy in input order: the first of a group is kept, later ones point at it. Candidate
    pairs come from MinHash LSH (recall > 0.999 for Jaccard >= 0.7; lower thresholds may miss
    pairs) and are verified with the exact Jaccard, so no false duplicates are reported.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 61, size=_NUM_PERM, dtype=np.uint64)
    b = rng.integers(0, 1 << 61, size=_NUM_PERM, dtype=np.uint64)
    rows = _NUM_PERM // _BANDS
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    owner = [-1] * len(texts)
    for i, sh in enumerate(texts):
        sig = _minhash(sh, a, b)
        keys = [(band, sig[band * rows:(band + 1) * rows].tobytes()) for band in range(_BANDS)]
        candidates = dict.fromkeys(j for key in keys for j in buckets.get(key, ()))
        match = next((j for j in sorted(candidates) if jaccard(sh, texts[j]) >= threshold), -1)
        owner[i] = match
        if match == -1:
            for key in keys:
                buckets[key].append(i)
    return owner


# -- steps -------------------------------------------------------------------------------------
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
        elif artifact := _ARTIFACT_RE.search(query):
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


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def _check_vectors(examples: Sequence[Example], query_vecs: np.ndarray, passage_vecs: np.ndarray,
                   passage_ids: Sequence[str]) -> dict[str, int]:
    if len(query_vecs) != len(examples):
        raise ValueError(f"query_vecs has {len(query_vecs)} rows for {len(examples)} examples; "
                         "embed one query per example, in order.")
    if len(passage_vecs) != len(passage_ids):
        raise ValueError(f"passage_vecs has {len(passage_vecs)} rows for {len(passage_ids)} passage ids; "
                         "embed one passage per id, in order.")
    if len(examples) and np.shape(query_vecs)[1] != np.shape(passage_vecs)[1]:
        raise ValueError(f"query vectors are {np.shape(query_vecs)[1]}-dim but passage vectors "
                         f"{np.shape(passage_vecs)[1]}-dim; embed both with the same model.")
    return {pid: i for i, pid in enumerate(passage_ids)}


def filter_false_positives(examples: Sequence[Example], query_vecs: np.ndarray, passage_vecs: np.ndarray,
                           passage_ids: Sequence[str], *, top_k: int = 20, block: int = 1024,
                           report: RefineReport | None = None) -> tuple[list[Example], list[Dropped]]:
    """Keep an example only if its positive ranks within ``top_k`` among all passages for its query.

    Rank = 1 + number of passages scoring strictly higher than the positive. Reasons:
    ``positive_rank`` (detail: the rank) and ``missing_positive`` (positive not in
    ``passage_ids``).
    """
    index = _check_vectors(examples, query_vecs, passage_vecs, passage_ids)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    q, p = _unit_rows(query_vecs), _unit_rows(passage_vecs)
    kept: list[Example] = []
    dropped: list[Dropped] = []
    for start in range(0, len(examples), block):
        chunk = examples[start:start + block]
        scores = q[start:start + block] @ p.T  # (block, n_passages)
        for row, ex in enumerate(chunk):
            pos = index.get(ex.positive_id)
            if pos is None:
                dropped.append(Dropped(ex, "missing_positive", ex.positive_id))
                continue
            rank = 1 + int(np.count_nonzero(scores[row] > scores[row, pos]))
            if rank <= top_k:
                kept.append(ex)
            else:
                dropped.append(Dropped(ex, "positive_rank", str(rank)))
    return _finish("filter_false_positives", len(examples), kept, dropped, report)


def _ranked(scores: np.ndarray, window: int) -> Iterable[int]:
    """Indices of ``scores`` by descending score (ties: lower index first), the top ``window`` sorted
    cheaply first; the rest are sorted only if the caller reads past them."""
    if window >= len(scores):
        yield from np.lexsort((np.arange(len(scores)), -scores)).tolist()
        return
    top = np.argpartition(-scores, window - 1)[:window]
    top = top[np.lexsort((top, -scores[top]))]
    yield from top.tolist()
    seen = set(top.tolist())
    yield from (i for i in np.lexsort((np.arange(len(scores)), -scores)).tolist() if i not in seen)


def mine_hard_negatives(examples: Sequence[Example], query_vecs: np.ndarray, passage_vecs: np.ndarray,
                        passage_ids: Sequence[str], *, n_negatives: int = 7, margin: float | None = 0.95,
                        min_negatives: int | None = None, passages: Mapping[str, str] | None = None,
                        duplicate_threshold: float = 0.8, duplicate_cosine: float = 0.99,
                        block: int = 1024,
                        report: RefineReport | None = None) -> tuple[list[Example], list[Dropped]]:
    """Fill ``hard_negative_ids`` with the best-scoring passages that are safe negatives.

    For each query, candidates are taken by descending cosine score, skipping (NV-Retriever
    "TopK-PercPos" false-negative guard) any candidate scoring above ``margin`` x the positive's
    score, the positive itself, other positives of the same (normalised) query, and
    near-duplicates of the positive: passage vectors with cosine >= ``duplicate_cosine`` to
    the positive's, or (when ``passages`` is given) word-trigram Jaccard >=
    ``duplicate_threshold`` with its text. Examples left with fewer than ``min_negatives``
    (default ``n_negatives``) are dropped (reason ``too_few_negatives``); ``missing_positive``
    when the positive has no vector. The report counts the candidates each guard skipped
    before the last negative was picked. Run :func:`filter_false_positives` first: the margin
    assumes the positive scores well above 0. ``margin=None`` switches the guard off (ablation).
    """
    index = _check_vectors(examples, query_vecs, passage_vecs, passage_ids)
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    need = n_negatives if min_negatives is None else min_negatives
    q, p = _unit_rows(query_vecs), _unit_rows(passage_vecs)
    positives: dict[str, set[str]] = defaultdict(set)
    for ex in examples:
        positives[normalize_text(ex.query)].add(ex.positive_id)
    shingle_cache: dict[str, frozenset[str]] = {}

    def text_shingles(pid: str) -> frozenset[str]:
        if pid not in shingle_cache:
            shingle_cache[pid] = shingles(passages[pid], 3, "word") if passages and pid in passages else frozenset()
        return shingle_cache[pid]

    skipped: Counter[str] = Counter()
    kept: list[Example] = []
    dropped: list[Dropped] = []
    for start in range(0, len(examples), block):
        chunk = examples[start:start + block]
        scores = q[start:start + block] @ p.T
        for row, ex in enumerate(chunk):
            pos = index.get(ex.positive_id)
            if pos is None:
                dropped.append(Dropped(ex, "missing_positive", ex.positive_id))
                continue
            row_scores = scores[row]
            ceiling = np.inf if margin is None else margin * float(row_scores[pos])
            own = [index[o] for o in positives[normalize_text(ex.query)] if o in index]  # includes pos
            eligible = row_scores <= ceiling
            above = ~eligible
            eligible[own] = False
            above[own] = False
            candidates = np.flatnonzero(eligible)
            negatives: list[str] = []
            for cand in _ranked(row_scores[candidates], 4 * n_negatives + 32):
                if len(negatives) == n_negatives:
                    break
                cand = int(candidates[cand])
                pid = passage_ids[cand]
                if float(p[cand] @ p[pos]) >= duplicate_cosine or (
                        passages is not None and pid in passages and ex.positive_id in passages
                        and jaccard(text_shingles(pid), text_shingles(ex.positive_id)) >= duplicate_threshold):
                    skipped["skipped_duplicate_of_positive"] += 1
                else:
                    negatives.append(pid)
            # the margin guard counts the passages it kept out that outrank the last negative picked
            floor = float(row_scores[index[negatives[-1]]]) if len(negatives) == n_negatives else -np.inf
            skipped["skipped_above_margin"] += int(np.count_nonzero(above & (row_scores > floor)))
            if len(negatives) < need:
                dropped.append(Dropped(ex, "too_few_negatives", f"{len(negatives)} of {need}"))
            else:
                kept.append(replace(ex, hard_negative_ids=negatives))
    return _finish("mine_hard_negatives", len(examples), kept, dropped, report, **skipped)
