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
#: What a result's score is, per mode: one name everywhere (CLI, JSON, page, API).
SCORE_KINDS: dict[str, str] = {"dense": "cosine", "sparse": "bm25", "hybrid": "rrf"}
#: One line per mode, for help texts.
MODE_HELP: dict[str, str] = {
    "dense": "meaning: embeddings, cosine similarity",
    "sparse": "keywords: BM25 over the chunks' words",
    "hybrid": "both, fused by reciprocal rank (the score is the fused rank score, not a similarity)",
}
