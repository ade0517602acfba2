"""Factories that turn :class:`~app.settings.Settings` into the objects the libraries take."""

from __future__ import annotations

from typing import TYPE_CHECKING

from indexer.store import VectorStore, open_store

from .settings import Settings

if TYPE_CHECKING:       # loaded when a factory runs: torch and transformers take seconds to import
    from embedder import Embedder, ModelInfo
    from indexer.embedding import EmbeddingStage
    from indexer.pipeline import Indexer, IndexSettings
    from indexer.rerank import Reranker


def build_embedder(settings: Settings, *, lazy: bool = False, info: ModelInfo | None = None) -> Embedder:
    """The query/document model; ``lazy``: read its config and tokenizer now and its weights on
    first embed (:class:`embedder.LazyEmbedder`, reusing ``info`` when :func:`check_model` read it)."""
    from embedder import Embedder, LazyEmbedder

    if lazy:
        return LazyEmbedder(settings.embedder_config(), info=info)
    return Embedder.from_config(settings.embedder_config())


def check_model(settings: Settings, store: VectorStore, *, recreate: bool = False) -> ModelInfo | None:
    """Refuse a model that cannot match the collection before its weights are loaded (seconds to
    minutes): the fingerprint and chunk sizes come from the model's config and tokenizer alone.
    Nothing to check when the collection does not exist yet (or ``recreate`` will drop it).
    Returns the model's description when it was read (a LazyEmbedder can reuse it), else None."""
    from embedder import describe_model
    from indexer.collection import check_compatible
    from indexer.pipeline import chunk_sizes

    meta = None if recreate else store.collection_meta(settings.collection)
    if meta is None:
        return None
    info = describe_model(settings.embedder_config())
    check_compatible(settings.collection, meta, info.fingerprint,
                     chunk_sizes(info, settings.chunk_tokens, settings.chunk_overlap), settings.chunk_context)
    return info


def build_reranker(settings: Settings) -> Reranker:
    from embedder import Embedder
    from indexer.rerank import Reranker

    return Reranker(Embedder.from_config(settings.reranker_config()), settings.rerank_depth)


def build_store(settings: Settings) -> VectorStore:
    store = open_store(settings.qdrant_url, settings.api_key(), settings.data_dir,
                       options=settings.collection_options())
    store.fusion = settings.fusion
    return store


def index_settings(settings: Settings) -> IndexSettings:
    from indexer.pipeline import IndexSettings

    return IndexSettings(chunk_tokens=settings.chunk_tokens, chunk_overlap=settings.chunk_overlap,
                         max_bytes=int(settings.max_file_mb * 1024 * 1024), parse_workers=settings.parse_workers,
                         chunk_context=settings.chunk_context)


def build_indexer(settings: Settings, store: VectorStore, embedder: Embedder | None = None, *,
                  collection: str | None = None, workers: int | None = None) -> Indexer:
    """The indexer into ``collection`` (default: the settings' collection), embedding as
    :func:`build_embedding_stage` chooses."""
    from indexer.pipeline import Indexer

    return Indexer(build_embedding_stage(settings, embedder, workers=workers), store,
                   collection or settings.collection, index_settings(settings))


def build_embedding_stage(settings: Settings, embedder: Embedder | None = None, *,
                          workers: int | None = None) -> EmbeddingStage:
    """Where an index run embeds: Ray workers when ``workers`` (default: ``settings.workers``,
    RAG_WORKERS) is above 1, each loading the model; else this process with ``embedder`` (default:
    the settings' model)."""
    workers = settings.workers if workers is None else workers
    if workers > 1:
        from indexer.distributed import RayEmbedding

        return RayEmbedding(settings.embedder_config(), workers=workers, address=settings.ray_address)
    from indexer.embedding import LocalEmbedding

    return LocalEmbedding(embedder or build_embedder(settings))
