"""Factories that turn :class:`~app.settings.Settings` into the objects the libraries take."""

from __future__ import annotations

from embedder import Embedder
from indexer.pipeline import Indexer, IndexSettings
from indexer.rerank import Reranker
from indexer.store import VectorStore, open_store

from .settings import Settings


def build_embedder(settings: Settings) -> Embedder:
    return Embedder.from_config(settings.embedder_config())


def build_reranker(settings: Settings) -> Reranker:
    return Reranker(Embedder.from_config(settings.reranker_config()), settings.rerank_depth)


def build_store(settings: Settings) -> VectorStore:
    return open_store(settings.qdrant_url, settings.api_key(), settings.data_dir,
                      options=settings.collection_options())


def index_settings(settings: Settings) -> IndexSettings:
    return IndexSettings(chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap,
                         max_bytes=int(settings.max_file_mb * 1024 * 1024))


def build_indexer(settings: Settings, store: VectorStore) -> Indexer:
    """The in-process indexer, or the Ray one when ``settings.workers > 1``."""
    if settings.workers > 1:
        from indexer.distributed import RayIndexer

        return RayIndexer(settings.embedder_config(), store, settings.collection, index_settings(settings),
                          workers=settings.workers, address=settings.ray_address)
    return Indexer(build_embedder(settings), store, settings.collection, index_settings(settings))
