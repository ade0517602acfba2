"""``rag eval``: retrieval quality on a BEIR test set, through numpy (dense) or a real store.

- dense: exact cosine search in numpy (:func:`evaluation.dense.dense_rankings`), no store;
- sparse / hybrid (and dense on request): the corpus is indexed into a temporary collection
  of a :class:`~indexer.store.VectorStore` (BM25 from ``Point.text``, dense vectors from the
  embedder) and every query runs through ``store.search(mode=...)``, the same path `rag search`
  takes. The temporary collection is dropped afterwards.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from embedder import Embedder
from evaluation.beir import BeirDataset
from evaluation.dense import dense_rankings
from evaluation.metrics import DEFAULT_METRICS, compute_metrics, per_query_metrics
from indexer.collection import DEFAULT_CHUNK_CONTEXT
from indexer.pipeline import chunk_sizes
from indexer.rerank import Reranker
from indexer.store import MODES, EdgeStore, VectorStore

from .engine import EvalCollection
from .rankings import chunk_dataset

logger = logging.getLogger(__name__)
#: Chunks fetched per document wanted, when documents are ranked by their best chunk.
CHUNK_DEPTH = 10


def store_rankings(embedder: Embedder | None, store: VectorStore, dataset: BeirDataset, mode: str,
                   k: int = 100, task: str | None = None, instruction: str | None = None, *,
                   sep: str = " ", ignore_identical_ids: bool = True) -> dict[str, list[str]]:
    """Index ``dataset.corpus`` into a temporary collection of ``store``, search every query with ``mode``.

    Returns ``{query id: [doc id, ...]}`` (at most ``k`` per query). For ``mode="sparse"``
    no embedding is needed: ``embedder`` may be None. The collection is dropped even when a
    search fails (:class:`evaluation.engine.EvalCollection`).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown search mode {mode!r}; valid modes: {', '.join(MODES)}")
    if embedder is None and mode != "sparse":
        raise ValueError(f"mode {mode!r} needs an embedder for the dense vectors; pass one, or use mode='sparse'.")
    doc_ids = list(dataset.corpus)
    texts = [dataset.document(d, sep) for d in doc_ids]
    qids = list(dataset.queries)
    qtexts = [dataset.queries[q] for q in qids]
    vectors = query_vecs = None
    if mode != "sparse":
        vectors = embedder.embed_documents(texts)
        query_vecs = embedder.embed_queries(qtexts, instruction=instruction, task=task)
    meta = {"dataset": dataset.name, "embedder": embedder.fingerprint.to_dict() if vectors is not None else None}
    with EvalCollection(store, doc_ids, texts, vectors, meta) as collection:
        return collection.rankings(qids, qtexts, query_vecs, mode, k, ignore_identical_ids=ignore_identical_ids)


def run_eval(embedder: Embedder | None, dataset: BeirDataset, mode: str = "dense",
             store_factory: Callable[[Path], VectorStore] | None = None, *, k: int = 100,
             task: str | None = None, instruction: str | None = None,
             metrics: tuple[str, ...] = DEFAULT_METRICS, dense_via_store: bool = False,
             chunks: tuple[int, int] | None = None, reranker: Reranker | None = None,
             per_query: bool = False, chunk_context: str = DEFAULT_CHUNK_CONTEXT) -> dict[str, Any]:
    """Evaluate retrieval with ``mode`` on ``dataset``; the dict ``rag eval --json`` prints.

    ``mode="dense"`` searches in numpy unless ``dense_via_store``; sparse and hybrid (and dense
    via store) index into a fresh store made by ``store_factory(tempdir)`` (default: an
    :class:`EdgeStore` in a temporary directory), which is closed and deleted afterwards.

    ``chunks=(chunk_tokens, overlap)`` evaluates what `rag index` + `rag search` do: every
    document is cut by the indexer's chunker (sizes lowered to fit the model as the indexer does),
    the chunks are searched in the store with ``mode``, and documents are ranked by their best
    chunk (``CHUNK_DEPTH`` x ``k`` chunks per query). It needs the embedder (its tokenizer).

    ``reranker`` re-orders each query's top ``reranker.depth`` candidates (chunks before they are
    pooled into documents, or documents), as ``rag search --rerank`` does.

    Returns ``{"mode", "metrics": {"ndcg@10": ...}, "model": fingerprint dict or None,
    "dataset", "n_queries", "n_docs", "k", "seconds"}``, and with ``per_query`` also
    ``"per_query": {query id: {metric: value}}`` (for paired comparisons).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown search mode {mode!r}; valid modes: {', '.join(MODES)}")
    deepest = max(int(m.split("@")[1]) for m in metrics)
    if k < deepest:
        raise ValueError(f"k={k} is smaller than the deepest metric cut-off ({deepest}); raise k.")
    start = time.perf_counter()
    if chunks is not None:
        rankings = _chunk_rankings(embedder, dataset, mode, chunks, store_factory, k, task, instruction,
                                   reranker, chunk_context)
    elif mode == "dense" and not dense_via_store:
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
        if reranker is not None:
            rankings = _reranked(reranker, dataset, rankings, task, instruction)
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
        "unit": "chunks" if chunks is not None else "documents",
        "rerank": None if reranker is None else {"model": reranker.embedder.fingerprint.model,
                                                   "depth": reranker.depth},
        "seconds": seconds,
    } | ({"per_query": per_query_metrics(rankings, dataset.qrels, metrics)} if per_query else {})


def _chunk_rankings(embedder: Embedder | None, dataset: BeirDataset, mode: str, chunks: tuple[int, int],
                    store_factory: Callable[[Path], VectorStore] | None, k: int, task: str | None,
                    instruction: str | None, reranker: Reranker | None = None,
                    chunk_context: str = DEFAULT_CHUNK_CONTEXT) -> dict[str, list[str]]:
    if embedder is None:
        raise ValueError("chunked evaluation cuts documents with the embedder's tokenizer; pass the embedder.")
    size, overlap = chunk_sizes(embedder.info, *chunks)
    # each chunk embedded as `rag index` embeds it: after its document's title (chunk_context "title")
    header = (lambda doc_id, title, chunk: title) if chunk_context == "title" else None
    chunked = chunk_dataset(dataset, embedder.tokenizer, size, overlap, header=header)
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        store = (store_factory or EdgeStore)(Path(tmp))
        try:
            ranked = store_rankings(embedder if mode != "sparse" else None, store, chunked.chunks, mode,
                                    CHUNK_DEPTH * k, task, instruction)
        finally:
            store.close()
    if reranker is not None:
        ranked = _reranked(reranker, chunked.chunks, ranked, task, instruction)
    return chunked.pool(ranked, k)


def _reranked(reranker: Reranker, dataset: BeirDataset, rankings: dict[str, list[str]], task: str | None,
              instruction: str | None) -> dict[str, list[str]]:
    return {q: reranker.rerank_ids(dataset.queries[q], ids, dataset.document, task=task, instruction=instruction)
            for q, ids in rankings.items()}
