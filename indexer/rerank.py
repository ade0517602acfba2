"""Second-stage reranking: the first stage's top candidates re-scored by a stronger embedder.

No cross-encoder ships offline, so the reranker is a second, stronger bi-encoder (by default the
packaged multilingual-e5-small) that embeds the query and the candidates' text at query time. Its
order is fused with the first stage's by Reciprocal Rank Fusion, which measured better than its
order alone (bench/README.md, "Search quality"): the two models' errors differ.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .modes import DEFAULT_RERANK_DEPTH, DEFAULT_RERANK_MODEL

if TYPE_CHECKING:
    from embedder import Embedder

    from .search import SearchResult

log = logging.getLogger(__name__)

#: RRF constant for fusing the first-stage order with the reranker's.
RERANK_RRF_K = 2


@dataclass
class Reranker:
    """Re-scores the top ``depth`` results of a search with ``embedder``.

    ``fuse=True`` ranks by RRF of the first-stage and the reranker's orders; False by the
    reranker's cosine alone. Results below ``depth`` keep their first-stage order.
    """

    embedder: Embedder
    depth: int = DEFAULT_RERANK_DEPTH
    fuse: bool = True

    def __post_init__(self) -> None:
        if self.depth < 2:
            raise ValueError(f"rerank depth {self.depth} must be at least 2 (candidates to re-order).")

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_RERANK_MODEL, depth: int = DEFAULT_RERANK_DEPTH,
                        **settings) -> Reranker:
        from embedder import Embedder

        return cls(Embedder.from_pretrained(model, **settings), depth)

    def order(self, query: str, texts: Sequence[str], *, task: str | None = None,
              instruction: str | None = None) -> tuple[list[int], np.ndarray]:
        """The new order of candidates ``texts`` (given in first-stage order) and their reranker cosines."""
        q = self.embedder.embed_query(query, instruction=instruction, task=task)           # (dim,)
        sims = self.embedder.embed_documents(list(texts)) @ q                               # (n,)
        order = [int(i) for i in np.argsort(-sims, kind="stable")]
        if self.fuse:
            fused = {i: 1 / (RERANK_RRF_K + i) for i in range(len(texts))}
            for rank, i in enumerate(order):
                fused[i] += 1 / (RERANK_RRF_K + rank)
            order = sorted(fused, key=lambda i: -fused[i])
        return order, sims

    def rerank_ids(self, query: str, ids: Sequence[str], text_of: Callable[[str], str], *,
                   task: str | None = None, instruction: str | None = None) -> list[str]:
        """``ids`` (first-stage order) with the top ``depth`` re-ordered; ``text_of(id)`` gives their text."""
        head, tail = list(ids[: self.depth]), list(ids[self.depth:])
        if len(head) < 2:
            return list(ids)
        order, _ = self.order(query, [text_of(i) for i in head], task=task, instruction=instruction)
        return [head[i] for i in order] + tail

    def rerank(self, query: str, results: Sequence[SearchResult], *, task: str | None = None,
               instruction: str | None = None) -> list[SearchResult]:
        """``results`` re-ordered (ranks renumbered); the top ``depth`` get the reranker's cosine as score."""
        head, tail = list(results[: self.depth]), list(results[self.depth:])
        if len(head) < 2:
            return list(results)
        start = time.perf_counter()
        order, sims = self.order(query, [r.text for r in head], task=task, instruction=instruction)
        log.debug("reranked %d candidates in %.0f ms", len(head), 1000 * (time.perf_counter() - start))
        ranked = [replace(head[i], score=float(sims[i])) for i in order] + tail
        return [replace(r, rank=n + 1) for n, r in enumerate(ranked)]
