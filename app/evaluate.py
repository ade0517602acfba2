"""``rag eval``: retrieval quality on a BEIR test set, through numpy (dense) or a real store.

- dense: exact cosine search in numpy (:func:`finetune.evaluate.dense_rankings`), no store;
- sparse / hybrid (and dense on request): the corpus is indexed into a temporary collection
  of a :class:`~indexer.store.VectorStore` (BM25 from ``Point.text``, dense vectors from the
  embedder) and every query runs through ``store.search(mode=...)``, the same path `rag search`
  takes. The temporary collection is dropped afterwards.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embedder import Embedder
from finetune.beir import BeirDataset
from finetune.evaluate import dense_rankings, embed_corpus
from finetune.metrics import DEFAULT_METRICS, compute_metrics
from indexer.store import MODES, EdgeStore, Point, VectorStore, bm25_fingerprint

logger = logging.getLogger(__name__)

#: Payload key holding the BEIR document id of a point in an evaluation collection.
DOC_ID_KEY = "beir_id"
_ID_NAMESPACE = uuid.UUID("9f1c7e0a-3b2d-4c55-8e61-2a7d0b9c4f13")
_BATCH = 1024


def point_id(doc_id: str) -> str:
    """Deterministic UUID for a BEIR document id (store point ids must be UUIDs)."""
    return str(uuid.uuid5(_ID_NAMESPACE, doc_id))


def store_rankings(embedder: Embedder | None, store: VectorStore, dataset: BeirDataset, mode: str,
                   k: int = 100, task: str | None = None, instruction: str | None = None, *,
                   sep: str = " ", ignore_identical_ids: bool = True) -> dict[str, list[str]]:
    """Index ``dataset.corpus`` into a temporary collection of ``store``, search every query with ``mode``.

    Returns ``{query id: [doc id, ...]}`` (at most ``k`` per query). For ``mode="sparse"``
    no embedding is needed: ``embedder`` may be None and points get a constant 1-dim vector.
    The collection (``eval-<random>``) is dropped even when a search fails.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown search mode {mode!r}; valid modes: {', '.join(MODES)}")
    if embedder is None and mode != "sparse":
        raise ValueError(f"mode {mode!r} needs an embedder for the dense vectors; pass one, or use mode='sparse'.")
    use_dense = mode != "sparse"
    if use_dense:
        doc_ids, doc_vecs = embed_corpus(embedder, dataset, sep=sep)
        dim = int(doc_vecs.shape[1])
    else:
        doc_ids, doc_vecs, dim = list(dataset.corpus), np.ones((len(dataset.corpus), 1), np.float32), 1
    qids = list(dataset.queries)
    query_vecs = (embedder.embed_queries([dataset.queries[q] for q in qids], instruction=instruction, task=task)
                  if use_dense else None)
    name = f"eval-{uuid.uuid4().hex[:12]}"
    meta = {"purpose": "rag eval (temporary)", "dataset": dataset.name, "bm25": bm25_fingerprint(),
            "embedder": embedder.fingerprint.to_dict() if embedder is not None and use_dense else None}
    store.create_collection(name, dim, meta)
    try:
        for start in range(0, len(doc_ids), _BATCH):
            batch = doc_ids[start:start + _BATCH]
            store.upsert(name, [Point(point_id(d), doc_vecs[start + i], dataset.document(d, sep),
                                      {DOC_ID_KEY: d}) for i, d in enumerate(batch)])
        store.build_index(name)
        extra = 1 if ignore_identical_ids else 0
        rankings: dict[str, list[str]] = {}
        for row, qid in enumerate(qids):
            hits = store.search(name, dense=query_vecs[row] if query_vecs is not None else None,
                                text=dataset.queries[qid], mode=mode, k=k + extra)
            ranked = [str(h.payload[DOC_ID_KEY]) for h in hits]
            if ignore_identical_ids:
                ranked = [d for d in ranked if d != qid]
            rankings[qid] = ranked[:k]
        return rankings
    finally:
        store.drop_collection(name)


def run_eval(embedder: Embedder | None, dataset: BeirDataset, mode: str = "dense",
             store_factory: Callable[[Path], VectorStore] | None = None, *, k: int = 100,
             task: str | None = None, instruction: str | None = None,
             metrics: tuple[str, ...] = DEFAULT_METRICS, dense_via_store: bool = False) -> dict[str, Any]:
    """Evaluate retrieval with ``mode`` on ``dataset``; the dict ``rag eval --json`` prints.

    ``mode="dense"`` searches in numpy unless ``dense_via_store``; sparse and hybrid (and dense
    via store) index into a fresh store made by ``store_factory(tempdir)`` (default: an
    :class:`EdgeStore` in a temporary directory), which is closed and deleted afterwards.

    Returns ``{"mode", "metrics": {"ndcg@10": ...}, "model": fingerprint dict or None,
    "dataset", "n_queries", "n_docs", "k", "seconds"}``.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown search mode {mode!r}; valid modes: {', '.join(MODES)}")
    deepest = max(int(m.split("@")[1]) for m in metrics)
    if k < deepest:
        raise ValueError(f"k={k} is smaller than the deepest metric cut-off ({deepest}); raise k.")
    start = time.perf_counter()
    if mode == "dense" and not dense_via_store:
        if embedder is None:
            raise ValueError("mode 'dense' needs an embedder; pass one, or use mode='sparse'.")
        rankings = dense_rankings(embedder, dataset, k, task, instruction)
    else:
        factory = store_factory or EdgeStore
        with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
            store = factory(Path(tmp))
            try:
                rankings = store_rankings(embedder, store, dataset, mode, k, task, instruction)
            finally:
                store.close()
    scores = compute_metrics(rankings, dataset.qrels, metrics)
    seconds = round(time.perf_counter() - start, 3)
    logger.info("eval %s on %s: %s (%.1fs)", mode, dataset.name or "dataset",
                ", ".join(f"{m}={v:.4f}" for m, v in scores.items()), seconds)
    return {
        "mode": mode,
        "metrics": scores,
        "model": embedder.fingerprint.to_dict() if embedder is not None and mode != "sparse" else None,
        "dataset": dataset.name,
        "n_queries": len(dataset.queries),
        "n_docs": len(dataset.corpus),
        "k": k,
        "seconds": seconds,
    }
