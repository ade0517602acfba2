"""Vector store layer: one interface, two Qdrant backends.

- :class:`EdgeStore`: embedded default, Qdrant's engine in-process (qdrant-edge-py),
  one shard directory per collection under a data directory; single process.
- :class:`QdrantClientStore`: a Qdrant server (or qdrant-client's local modes).

Use :func:`open_store` to pick one from the settings. Value types and errors:
:mod:`indexer.store.types`; the interface: :mod:`indexer.store.base`. Payload layout:
:mod:`indexer.store.payload`; BM25 sparse vectors: :mod:`indexer.store.sparse`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.modes import DEFAULT_FUSION, DEFAULT_MODE, FUSIONS, MODE_HELP, MODES, SearchMode, score_kind
from indexer.store.base import Query, VectorStore
from indexer.store.edge import EdgeStore
from indexer.store.payload import ChunkMetadata, ChunkPayload, chunk_id, make_payload
from indexer.store.sparse import bm25_fingerprint
from indexer.store.types import (
    CollectionMismatch,
    CollectionNotFound,
    CollectionOptions,
    Hit,
    Point,
    SearchFilter,
    StoreError,
    StoreLocked,
)

if TYPE_CHECKING:
    from indexer.store.client import QdrantClientStore, collection_config

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_FUSION",
    "DEFAULT_MODE",
    "FUSIONS",
    "MODE_HELP",
    "MODES",
    "ChunkMetadata",
    "ChunkPayload",
    "CollectionMismatch",
    "CollectionNotFound",
    "CollectionOptions",
    "EdgeStore",
    "Hit",
    "Point",
    "QdrantClientStore",
    "Query",
    "SearchFilter",
    "SearchMode",
    "StoreError",
    "StoreLocked",
    "VectorStore",
    "score_kind",
    "bm25_fingerprint",
    "chunk_id",
    "collection_config",
    "make_payload",
    "open_store",
]


def open_store(
    url: str | None,
    api_key: str | None,
    data_dir: Path,
    *,
    timeout: float = 10.0,
    options: CollectionOptions | None = None,
) -> VectorStore:
    """A :class:`QdrantClientStore` when ``url`` is set (RAG_QDRANT_URL), else an :class:`EdgeStore`
    at ``data_dir``. ``url`` is a server (``http(s)://HOST:6333``) or ``path:DIR``, qdrant-client's
    local files (offline copies and tests).

    ``options`` (shards, replicas, on-disk, int8) shape the collections a server creates;
    the embedded store (one local shard) ignores them, with a warning.
    Raises :class:`StoreError` when the server is unreachable or the store is held by another
    process.
    """
    if url:
        from indexer.store.client import QdrantClientStore

        if url.startswith("path:"):
            return QdrantClientStore.open_local(url.removeprefix("path:"), options=options)
        return QdrantClientStore.connect(url, api_key=api_key, timeout=timeout, options=options)
    if options is not None and not options.is_default():
        log.warning(
            "RAG_SHARDS / RAG_REPLICATION / RAG_ON_DISK / RAG_INT8 apply to a Qdrant server "
            "(RAG_QDRANT_URL); the embedded store ignores them."
        )
    return EdgeStore(Path(data_dir))


def __getattr__(name: str):
    """The server backend loads qdrant-client (seconds) only when it is used."""
    if name in ("QdrantClientStore", "collection_config"):
        from indexer.store import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
