"""Searching a collection: the query is embedded with its task instruction, then dense, sparse
(BM25) or hybrid (RRF) search runs in the engine."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .collection import CollectionMismatch, check_compatible
from .ids import point_id
from .store import DEFAULT_MODE, MODES, CollectionNotFound, Hit, Query, SearchFilter, VectorStore, score_kind

if TYPE_CHECKING:
    from embedder import Embedder

    from .rerank import Reranker



class NoIndex(Exception):
    """The collection does not exist yet; the message says how to create it."""


@dataclass(frozen=True)
class SearchResult:
    """One ranked chunk."""

    rank: int
    score: float
    id: str
    text: str
    metadata: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.metadata.get("source", "")

    @property
    def title(self) -> str:
        return self.metadata.get("title") or self.source.rsplit("/", 1)[-1]

    @property
    def section(self) -> str:
        """The chunk's heading path in its document ("More on Lists › Sets"; "" when none)."""
        return self.metadata.get("section") or ""

    def to_dict(self) -> dict:
        return {"rank": self.rank, "score": self.score, "id": self.id, "text": self.text,
                "metadata": self.metadata}

    @classmethod
    def from_dict(cls, d: dict) -> SearchResult:
        """The inverse of :meth:`to_dict` (a result read back from JSON)."""
        return cls(d["rank"], d["score"], d["id"], d["text"], d.get("metadata") or {})


@dataclass(frozen=True)
class SearchResponse:
    query: str
    query_text: str           # exactly what the model embedded
    mode: str
    results: list[SearchResult]
    seconds: float
    reranked: bool = False    # the top results were re-scored by the reranker (score = its cosine)
    #: what ``score`` means: ``cosine`` (dense), ``bm25`` (sparse), the fusion (hybrid: ``dbsf`` or
    #: ``rrf``), or ``rerank cosine`` (the reranking model's cosine, for the re-scored top results)
    score_kind: str = ""

    def to_dict(self) -> dict:
        return {"query": self.query, "query_text": self.query_text, "mode": self.mode,
                "score_kind": self.score_kind, "reranked": self.reranked, "seconds": self.seconds,
                "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, d: dict) -> SearchResponse:
        """The inverse of :meth:`to_dict` (a response read back from JSON)."""
        return cls(d["query"], d["query_text"], d["mode"], [SearchResult.from_dict(r) for r in d["results"]],
                   d["seconds"], d.get("reranked", False), d.get("score_kind", ""))


def _result(rank: int, hit: Hit) -> SearchResult:
    payload = hit.payload or {}
    return SearchResult(rank=rank, score=float(hit.score), id=str(hit.id),
                        text=payload.get("page_content", ""), metadata=payload.get("metadata", {}))


def collection_meta_or_raise(store: VectorStore, collection: str) -> dict:
    """The metadata of ``collection``; :class:`NoIndex` (saying how to make it) when it does not exist."""
    meta = store.collection_meta(collection)
    if meta is None:
        raise NoIndex(f"No collection {collection!r} in {store.describe()} yet. Index a folder first: rag index PATH")
    return meta


class Searcher:
    """Searches one collection with the embedder that built it."""

    def __init__(self, embedder: Embedder | None, store: VectorStore, collection: str,
                 reranker: Reranker | None = None) -> None:
        """``embedder`` None: sparse (BM25) search only, which needs no model at all."""
        self.embedder = embedder
        self.store = store
        self.collection = collection
        self.reranker = reranker
        self._checked = False

    def check(self) -> dict:
        """The collection's metadata, read now; raises :class:`NoIndex` or :class:`CollectionMismatch`.

        :meth:`search` checks once per searcher, and again only if the collection went missing."""
        meta = collection_meta_or_raise(self.store, self.collection)
        if not self._checked:
            if self.embedder is not None:
                check_compatible(self.collection, meta, self.embedder.fingerprint)
            self._checked = True
        return meta

    def query_text(self, query: str, task: str | None = None, instruction: str | None = None) -> str:
        if self.embedder is None:
            return query
        return self.embedder.format_query(query, instruction=instruction, task=task)

    def search(self, query: str, *, k: int = 10, mode: str = DEFAULT_MODE, task: str | None = None,
               instruction: str | None = None, flt: SearchFilter | None = None,
               rerank: bool = False) -> SearchResponse:
        """Rank the collection's chunks for ``query``; ``rerank`` re-scores the top candidates
        with the searcher's :class:`~indexer.rerank.Reranker`."""
        if mode not in MODES:
            raise ValueError(f"Unknown search mode {mode!r}; choose one of: {', '.join(MODES)}.")
        if k < 1:
            raise ValueError(f"k={k} must be at least 1.")
        if rerank and self.reranker is None:
            raise ValueError("Reranking was asked for but no reranker is loaded; set RAG_RERANK=true "
                             "(model: RAG_RERANK_MODEL) or search without --rerank.")
        if mode != "sparse" and self.embedder is None:
            raise ValueError(f"{mode} search embeds the query, but no model was given; pass an embedder "
                             "or search with mode='sparse'.")
        if not self._checked:
            self.check()    # once per searcher: a query then costs the store one request, not three
        if mode != "sparse" and hasattr(self.embedder, "load"):
            self.embedder.load()    # a LazyEmbedder's weights load here, not in the timed query
        start = time.perf_counter()
        text = self.query_text(query, task, instruction)
        dense = None
        if mode != "sparse":
            dense = self.embedder.encode([text])[0].tolist()
        fetch = max(k, self.reranker.depth) if rerank else k
        request = Query.of(mode, dense, query)   # both vectors, once; the store only runs it
        try:
            hits = self.store.run_query(self.collection, request, k=fetch, flt=flt)
        except CollectionNotFound:   # dropped since the check: NoIndex if gone, else check the new one
            self._checked = False
            self.check()
            hits = self.store.run_query(self.collection, request, k=fetch, flt=flt)
        results = [_result(i + 1, h) for i, h in enumerate(hits)]
        if rerank:
            results = self.reranker.rerank(query, results, task=task, instruction=instruction)[:k]
        kind = "rerank cosine" if rerank else score_kind(mode, self.store.fusion)
        return SearchResponse(query, text, mode, results, round(time.perf_counter() - start, 4), rerank, kind)

    def neighbours(self, result: SearchResult, before: int = 1, after: int = 1) -> list[SearchResult]:
        """The chunks around ``result`` in its file (ids are deterministic, so no scan is needed)."""
        meta = result.metadata
        index, count = meta.get("chunk_index", 0), meta.get("chunk_count", 1)
        wanted = [i for i in range(index - before, index + after + 1) if 0 <= i < count]
        ids = [point_id(meta["source"], i, meta["content_hash"]) for i in wanted]
        hits = {h.id: h for h in self.store.retrieve(self.collection, ids)}
        return [_result(0, hits[pid]) for pid in ids if pid in hits]


__all__ = ["CollectionMismatch", "MODES", "NoIndex", "SearchResponse", "SearchResult", "Searcher"]
