"""The search modes: one definition for the store, the CLI, the page, the API and the README.

Kept free of imports so that entry points can build their argument parsers and widgets without
loading the store or the model.
"""

from __future__ import annotations

from typing import Literal

SearchMode = Literal["dense", "sparse", "hybrid"]
MODES: tuple[str, ...] = ("dense", "sparse", "hybrid")
#: The search mode used when none is asked for (`rag search`, the page, the retriever, RAG_MODE):
#: the best on the real-query sets in bench/README.md ("Search quality").
DEFAULT_MODE: SearchMode = "hybrid"
#: How hybrid search fuses the dense and the sparse ranking (RAG_FUSION): distribution-based score
#: fusion (the default: best on the real-query sets) or reciprocal rank fusion.
FUSIONS: tuple[str, ...] = ("dbsf", "rrf")
DEFAULT_FUSION = "dbsf"
#: The second-stage reranker (RAG_RERANK_MODEL, RAG_RERANK_DEPTH): on python-synopsis, reranking the
#: hybrid top 10 with multilingual-e5-small (fused with the first order) gained 0.015 MRR@10 at ~2 s
#: a query on one CPU thread; all-mpnet-base-v2 lost 0.011 at 7 s (bench/README.md).
DEFAULT_RERANK_MODEL = "multilingual-e5-small"
DEFAULT_RERANK_DEPTH = 10
#: One line per mode, for help texts.
MODE_HELP: dict[str, str] = {
    "dense": "meaning: embeddings, cosine similarity",
    "sparse": "keywords: BM25 over the chunks' words",
    "hybrid": "both, fused (the score is the fusion's, not a similarity)",
}


def score_kind(mode: str, fusion: str = DEFAULT_FUSION) -> str:
    """What a result's ``score`` is in ``mode``: ``cosine``, ``bm25``, or the hybrid fusion's name
    (``dbsf``, ``rrf``). One name everywhere: CLI, JSON, page, API."""
    return fusion if mode == "hybrid" else {"dense": "cosine", "sparse": "bm25"}[mode]
