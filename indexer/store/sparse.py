"""BM25 sparse vectors shared by both store backends.

The encoder is qdrant-edge-py's built-in :class:`qdrant_edge.Bm25` (Rust, the same
tokenizer/stemmer/stopword pipeline as Qdrant's server-side ``qdrant/bm25`` model).
It is called directly for both backends so that the embedded store and a Qdrant
server hold byte-identical sparse vectors:

- documents: :func:`encode_document` -> BM25 term-frequency weights using
  ``(k, b, avg_len)`` from :data:`BM25_SETTINGS`; token ids are hashes of the
  stemmed tokens, so no vocabulary has to be stored.
- queries: :func:`encode_query` -> weight 1.0 per unique token.

The IDF part of BM25 is applied by the engine at query time: the ``bm25`` sparse
vector is configured with ``Modifier.IDF`` in both backends, so IDF statistics follow
the collection's current content.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import qdrant_edge

#: Encoder settings; part of :func:`bm25_fingerprint`, changing them needs a re-index.
BM25_SETTINGS: dict[str, object] = {
    "impl": "qdrant_edge.Bm25",
    "k": 1.2,
    "b": 0.75,
    "avg_len": 256.0,
    "language": "english",
}


@dataclass(frozen=True, slots=True)
class SparseVec:
    """A backend-neutral sparse vector (parallel ``indices`` / ``values``)."""

    indices: list[int]
    values: list[float]

    def __bool__(self) -> bool:
        return bool(self.indices)


@functools.cache
def _model() -> qdrant_edge.Bm25:
    config = qdrant_edge.Bm25Config(
        k=float(BM25_SETTINGS["k"]),  # type: ignore[arg-type]
        b=float(BM25_SETTINGS["b"]),  # type: ignore[arg-type]
        avg_len=float(BM25_SETTINGS["avg_len"]),  # type: ignore[arg-type]
        language=str(BM25_SETTINGS["language"]),
    )
    return qdrant_edge.Bm25(config)


def encode_document(text: str) -> SparseVec:
    """BM25 document-side sparse vector of ``text`` (empty for text without tokens)."""
    vec = _model().embed_document(text)
    return SparseVec(list(vec.indices), list(vec.values))


def encode_query(text: str) -> SparseVec:
    """BM25 query-side sparse vector of ``text`` (empty when only stopwords remain)."""
    vec = _model().embed_query(text)
    return SparseVec(list(vec.indices), list(vec.values))


def bm25_fingerprint() -> dict[str, object]:
    """Settings that determine the sparse vectors, for storing in collection meta."""
    return dict(BM25_SETTINGS)
