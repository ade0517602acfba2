"""Dense retrieval evaluation of an :class:`~embedder.Embedder` on a BEIR test set, exact search in numpy.

Documents are embedded as ``title + " " + text`` (BEIR / MTEB convention) with the model's
document prefix; queries with the task instruction (instructed models) or query prefix.
Search is exact cosine top-k (the vectors are L2-normalised, so a matrix product), done in
blocks so memory stays bounded for large corpora.
"""

from __future__ import annotations

import logging

import numpy as np

from embedder import Embedder

from .beir import BeirDataset

logger = logging.getLogger(__name__)

#: Query rows and corpus rows per matrix-product block (at most 1024 x 65536 float32 = 256 MiB).
QUERY_BLOCK = 1024
CORPUS_BLOCK = 65536


def exact_top_k(query_vecs: np.ndarray, doc_vecs: np.ndarray, k: int, *, query_block: int = QUERY_BLOCK,
                corpus_block: int = CORPUS_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` documents by dot product for each query: ``(indices, scores)``, each ``(n_queries, k')``.

    ``k' = min(k, n_docs)``. Rows are sorted by score descending, ties by lower document index.
    """
    if query_vecs.ndim != 2 or doc_vecs.ndim != 2 or query_vecs.shape[1] != doc_vecs.shape[1]:
        raise ValueError(f"query vectors {query_vecs.shape} and document vectors {doc_vecs.shape} must be "
                         "2-D with the same dimension; embed both with the same model.")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n_q, n_d = query_vecs.shape[0], doc_vecs.shape[0]
    kk = min(k, n_d)
    out_idx = np.zeros((n_q, kk), dtype=np.int64)
    out_score = np.zeros((n_q, kk), dtype=np.float32)
    if n_d == 0:
        return out_idx, out_score
    for qs in range(0, n_q, query_block):
        q = query_vecs[qs:qs + query_block].astype(np.float32, copy=False)
        best_idx = np.empty((q.shape[0], 0), dtype=np.int64)
        best_score = np.empty((q.shape[0], 0), dtype=np.float32)
        for ds in range(0, n_d, corpus_block):
            scores = q @ doc_vecs[ds:ds + corpus_block].astype(np.float32, copy=False).T  # (bq, bd)
            idx = np.broadcast_to(np.arange(ds, ds + scores.shape[1]), scores.shape)
            best_score = np.concatenate([best_score, scores], axis=1)
            best_idx = np.concatenate([best_idx, idx], axis=1)
            best_idx, best_score = _keep_top(best_idx, best_score, kk)
        out_idx[qs:qs + q.shape[0]] = best_idx
        out_score[qs:qs + q.shape[0]] = best_score
    return out_idx, out_score


def _keep_top(idx: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` best candidate columns, sorted by score desc then document index asc.

    Documents tied exactly at the k-th score (duplicate documents) may be cut either way.
    """
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        idx, scores = np.take_along_axis(idx, part, axis=1), np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((idx, -scores), axis=1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(scores, order, axis=1)


def embed_corpus(embedder: Embedder, dataset: BeirDataset, *, sep: str = " ",
                 show_progress: bool = False) -> tuple[list[str], np.ndarray]:
    """Doc ids and their document vectors ``(n_docs, dim)``."""
    doc_ids = list(dataset.corpus)
    texts = [dataset.document(d, sep) for d in doc_ids]
    return doc_ids, embedder.embed_documents(texts, show_progress=show_progress)


def dense_rankings(embedder: Embedder, dataset: BeirDataset, k: int = 100, task: str | None = None,
                   instruction: str | None = None, *, sep: str = " ", ignore_identical_ids: bool = True,
                   show_progress: bool = False) -> dict[str, list[str]]:
    """``{query id: [doc id, ...]}``: the top ``k`` documents per query by exact cosine similarity.

    ``ignore_identical_ids`` drops a document whose id equals the query id, as BEIR and MTEB
    do (ArguAna, Quora hold queries that are also documents).
    """
    doc_ids, doc_vecs = embed_corpus(embedder, dataset, sep=sep, show_progress=show_progress)
    qids = list(dataset.queries)
    query_vecs = embedder.embed_queries([dataset.queries[q] for q in qids], instruction=instruction, task=task)
    extra = 1 if ignore_identical_ids else 0
    top_idx, _ = exact_top_k(query_vecs, doc_vecs, k + extra)
    rankings: dict[str, list[str]] = {}
    for row, qid in enumerate(qids):
        ranked = [doc_ids[i] for i in top_idx[row]]
        if ignore_identical_ids:
            ranked = [d for d in ranked if d != qid]
        rankings[qid] = ranked[:k]
    return rankings
