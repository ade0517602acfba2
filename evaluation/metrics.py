"""Ranking metrics as BEIR / MTEB report them (trec_eval definitions), as small pure functions.

- ``ndcg@k``: DCG = sum over the top k of ``rel / log2(rank + 1)`` (rank from 1, linear gain,
  as trec_eval's ``ndcg_cut``); the ideal DCG sorts *all* judged grades of the query, cut at k.
- ``mrr@k``: 1 / rank of the first document with grade > 0 within the top k, else 0.
- ``recall@k``: relevant (grade > 0) documents in the top k / relevant documents judged.

Per-query values are averaged over every judged query. A judged query with no ranking scores
0 (trec_eval ``-c``); a query with no relevant documents scores 0 (as trec_eval does).
Documents listed twice in a ranking count once, at their first position. Negative grades
count as 0. Tests cross-check these against pytrec_eval (trec_eval's own C code).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

Rankings = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]

#: The metrics :func:`compute_metrics` reports by default.
DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def dedupe(ranking: Sequence[str]) -> list[str]:
    """``ranking`` without repeated ids (first position wins)."""
    return list(dict.fromkeys(ranking))


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain of ``gains`` in rank order: sum of ``g / log2(rank + 1)``."""
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g > 0)


def ndcg_at_k(ranking: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """nDCG@k of one ranked list against the graded judgements ``rels`` of its query."""
    ideal = dcg(sorted((max(r, 0) for r in rels.values()), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([max(rels.get(d, 0), 0) for d in dedupe(ranking)[:k]]) / ideal


def mrr_at_k(ranking: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant (grade > 0) document within the top k, else 0."""
    for rank, doc in enumerate(dedupe(ranking)[:k], 1):
        if rels.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranking: Sequence[str], rels: Mapping[str, int], k: int) -> float:
    """Share of the relevant (grade > 0) documents that appear in the top k; 0 without any."""
    relevant = {d for d, r in rels.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(dedupe(ranking)[:k])) / len(relevant)


_FUNCTIONS = {"ndcg": ndcg_at_k, "mrr": mrr_at_k, "recall": recall_at_k}


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ValueError naming the valid forms otherwise."""
    base, _, cut = name.lower().partition("@")
    if base not in _FUNCTIONS or not cut.isdigit() or int(cut) < 1:
        raise ValueError(f"Unknown metric {name!r}; use <name>@<k> with name in "
                         f"{', '.join(sorted(_FUNCTIONS))} and k >= 1, e.g. 'ndcg@10'.")
    return base, int(cut)


def per_query_metrics(rankings: Rankings, qrels: Qrels,
                      metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """``{query id: {metric: value}}`` for every judged query (missing rankings score 0)."""
    parsed = [(m, *parse_metric(m)) for m in metrics]
    return {qid: {m: _FUNCTIONS[base](rankings.get(qid, ()), rels, k) for m, base, k in parsed}
            for qid, rels in qrels.items()}


def compute_metrics(rankings: Rankings, qrels: Qrels,
                    metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over the judged queries: ``{"ndcg@10": 0.71, ...}``.

    Raises ValueError when ``qrels`` is empty (there is nothing to average).
    """
    if not qrels:
        raise ValueError("No judged queries: qrels is empty; load a dataset with relevance judgements.")
    missing = [q for q in qrels if q not in rankings]
    if missing:
        logger.warning("%d of %d judged queries have no ranking (e.g. %r); they score 0",
                       len(missing), len(qrels), missing[0])
    return mean_metrics(per_query_metrics(rankings, qrels, metrics), metrics)


def mean_metrics(per_query: Mapping[str, Mapping[str, float]],
                 metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Each metric averaged over the queries of :func:`per_query_metrics`'s result."""
    return {m: sum(v[m] for v in per_query.values()) / len(per_query) for m in metrics}


def paired_comparison(before: Mapping[str, float], after: Mapping[str, float], *,
                      resamples: int = 10_000, seed: int = 0) -> dict:
    """Is ``after`` really better than ``before`` on the same queries (``{query id: score}``)?

    Returns the mean per-query difference, its 95 % bootstrap interval, and the two-sided p-value
    of a paired permutation test (each query's two scores swapped at random), both from
    ``scipy.stats``; plus how many queries got better and worse.
    """
    from scipy import stats

    if before.keys() != after.keys() or not before:
        raise ValueError("paired_comparison needs scores for the same, non-empty set of queries.")
    qids = sorted(before)
    a = np.array([before[q] for q in qids], dtype=float)
    b = np.array([after[q] for q in qids], dtype=float)
    diff = b - a
    if not diff.any():
        return {"delta": 0.0, "ci95": [0.0, 0.0], "p_value": 1.0, "queries": len(qids), "better": 0, "worse": 0}
    test = stats.permutation_test((a, b), lambda x, y, axis: np.mean(y - x, axis=axis), vectorized=True,
                                  permutation_type="samples", n_resamples=resamples, rng=seed)
    ci = stats.bootstrap((diff,), np.mean, n_resamples=resamples, method="percentile", rng=seed).confidence_interval
    return {"delta": round(float(diff.mean()), 4), "ci95": [round(float(ci.low), 4), round(float(ci.high), 4)],
            "p_value": round(float(test.pvalue), 4), "queries": len(qids),
            "better": int((diff > 0).sum()), "worse": int((diff < 0).sum())}
