"""The steps that read the model's vectors: the false-positive filter and hard-negative mining."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from .records import Dropped, Example, RefineReport, _finish
from .text import jaccard, normalize_text, shingles

logger = logging.getLogger(__name__)


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
    duplicate = _DuplicateOfPositive(p, passages, duplicate_threshold, duplicate_cosine)
    skipped: Counter[str] = Counter()
    kept: list[Example] = []
    dropped: list[Dropped] = []
    for start in range(0, len(examples), block):
        scores = q[start:start + block] @ p.T
        for row, ex in enumerate(examples[start:start + block]):
            pos = index.get(ex.positive_id)
            if pos is None:
                dropped.append(Dropped(ex, "missing_positive", ex.positive_id))
                continue
            own = [index[o] for o in positives[normalize_text(ex.query)] if o in index]  # includes pos
            negatives = _negatives_of(scores[row], pos, own, passage_ids, n_negatives, margin, duplicate, skipped)
            if len(negatives) < need:
                dropped.append(Dropped(ex, "too_few_negatives", f"{len(negatives)} of {need}"))
            else:
                kept.append(replace(ex, hard_negative_ids=negatives))
    return _finish("mine_hard_negatives", len(examples), kept, dropped, report, **skipped)


class _DuplicateOfPositive:
    """Is a candidate a near-duplicate of the positive: cosine >= ``cosine`` between their vectors,
    or (with ``passages``) word-trigram Jaccard >= ``threshold`` between their texts?"""

    def __init__(self, unit_vecs: np.ndarray, passages: Mapping[str, str] | None, threshold: float,
                 cosine: float) -> None:
        self.p, self.passages, self.threshold, self.cosine = unit_vecs, passages, threshold, cosine
        self._shingles: dict[str, frozenset[str]] = {}

    def _text(self, pid: str) -> frozenset[str]:
        if pid not in self._shingles:
            self._shingles[pid] = shingles(self.passages[pid], 3, "word")
        return self._shingles[pid]

    def __call__(self, cand: int, cand_id: str, pos: int, pos_id: str) -> bool:
        if float(self.p[cand] @ self.p[pos]) >= self.cosine:
            return True
        return (self.passages is not None and cand_id in self.passages and pos_id in self.passages
                and jaccard(self._text(cand_id), self._text(pos_id)) >= self.threshold)


def _negatives_of(row_scores: np.ndarray, pos: int, own: list[int], passage_ids: Sequence[str], n_negatives: int,
                  margin: float | None, duplicate: _DuplicateOfPositive, skipped: Counter[str]) -> list[str]:
    """One query's negatives: the best-scoring candidates under the margin, never its own positives
    (``own``) or a near-duplicate of ``pos``; ``skipped`` counts what each guard kept out."""
    ceiling = np.inf if margin is None else margin * float(row_scores[pos])
    eligible = row_scores <= ceiling
    above = ~eligible
    eligible[own] = False
    above[own] = False
    candidates = np.flatnonzero(eligible)
    negatives: list[str] = []
    last = -np.inf
    for cand in _ranked(row_scores[candidates], 4 * n_negatives + 32):
        if len(negatives) == n_negatives:
            break
        cand = int(candidates[cand])
        if duplicate(cand, passage_ids[cand], pos, passage_ids[pos]):
            skipped["skipped_duplicate_of_positive"] += 1
        else:
            negatives.append(passage_ids[cand])
            last = float(row_scores[cand])
    # the margin guard counts the passages it kept out that outrank the last negative picked
    floor = last if len(negatives) == n_negatives else -np.inf
    skipped["skipped_above_margin"] += int(np.count_nonzero(above & (row_scores > floor)))
    return negatives
