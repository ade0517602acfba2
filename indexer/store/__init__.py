"""Vector store layer: one interface, two Qdrant backends.

- :class:`EdgeStore`: embedded default, Qdrant's engine in-process (qdrant-edge-py),
  one shard directory per collection under a data directory; single process.
- :class:`QdrantClientStore`: a Qdrant server (or qdrant-client's local modes).

Use :func:`open_store` to pick one from the settings. Payload layout:
:mod:`indexer.store.payload`; BM25 sparse vectors: :mod:`indexer.store.sparse`.
"""

from __future__ import annotations

from pathlib import Path

from indexer.store.base import (
    MODES,
    CollectionMismatch,
    CollectionNotFound,
    Hit,
    Point,
    SearchFilter,
    SearchMode,
    StoreError,
    StoreLocked,
    VectorStore,
)
from indexer.store.client import QdrantClientStore
from indexer.store.edge import EdgeStore
from indexer.store.payload import ChunkMetadata, ChunkPayload, chunk_id, make_payload
from indexer.store.sparse import bm25_fingerprint

__all__ = [
    "MODES",
    "ChunkMetadata",
    "ChunkPayload",
    "CollectionMismatch",
    "CollectionNotFound",
    "EdgeStore",
    "Hit",
    "Point",
    "QdrantClientStore",
    "SearchFilter",
    "SearchMode",
    "StoreError",
    "StoreLocked",
    "VectorStore",
    "bm25_fingerprint",
    "chunk_id",
    "make_payload",
    "open_store",
]


def open_store(
    url: str | None, api_key: str | None, data_dir: Path, *, timeout: float = 10.0
) -> VectorStore:
    """A :class:`QdrantClientStore` when ``url`` is set (RAG_QDRANT_URL), else an :class:`EdgeStore`.

    Raises :class:`StoreError` when the server is unreachable or the embedded store is
    held by another process.
    """
    if url:
        return QdrantClientStore.connect(url, api_key=api_key, timeout=timeout)
    return EdgeStore(Path(data_dir))
