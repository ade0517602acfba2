"""Copy a collection from the embedded store to a Qdrant server (or any store): ``rag migrate``.

Every point keeps its id, payload and stored dense vector; the BM25 sparse vector is
recomputed from ``page_content`` by the target's :meth:`~indexer.store.VectorStore.upsert`
(the same code that built the source, so identical); the collection meta (embedder
fingerprint, chunking, timestamps) is copied too, so ``rag search`` against the target
accepts the same embedder and ``rag index`` continues incrementally there.

Safe to re-run: ids are deterministic, so an interrupted run resumes by upserting the same
points again. A target collection that exists with other contents (different meta or
dim) is refused unless ``recreate`` drops it first.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from indexer.store import open_store
from indexer.store.base import VectorStore
from indexer.store.types import CollectionNotFound, CollectionOptions, StoreError

log = logging.getLogger(__name__)

TARGET_HELP = (
    "target store: a Qdrant server URL (http://HOST:6333; default --qdrant-url / RAG_QDRANT_URL), "
    "path:DIR (qdrant-client local files: offline copies and tests) or edge:DIR (another embedded store)"
)


def migrate(
    source: VectorStore,
    target: VectorStore,
    collection: str,
    target_collection: str | None = None,
    batch: int = 256,
    progress: bool = True,
    recreate: bool = False,
) -> dict[str, Any]:
    """Copy ``collection`` of ``source`` into ``target_collection`` (default: same name) of ``target``.

    Returns a summary dict (source, target, collection, target_collection, dim, points,
    target_count, resumed, recreated, seconds). Raises :class:`StoreError` when the target
    collection holds something else (pass ``recreate=True``) or the final counts differ.
    """
    name = target_collection or collection
    started = time.perf_counter()
    meta = source.collection_meta(collection)
    if meta is None:
        raise CollectionNotFound(
            f"Nothing to migrate: collection {collection!r} does not exist in {source.describe()} "
            f"(existing: {', '.join(source.collections()) or 'none'}); pick one with --collection."
        )
    dim, total = source.dim(collection), source.count(collection)
    resumed = recreated = False
    existing = target.collection_meta(name)
    if existing is not None and recreate:
        target.drop_collection(name)
        recreated = True
    elif existing is not None:
        if existing != meta or target.dim(name) != dim:
            raise StoreError(
                f"Collection {name!r} already exists in {target.describe()} with other contents "
                f"({target.count(name)} points, different embedder meta or dim); pass --recreate to "
                "replace it, or --target-collection NAME to copy under another name."
            )
        resumed = True
        log.info("resuming migration into %s (%d points there)", name, target.count(name))
    target.create_collection(name, dim, meta)
    copied = _copy_points(source, target, collection, name, batch, total, progress)
    target.build_index(name)
    target_count = target.count(name)
    if target_count != total or target.collection_meta(name) != meta:
        raise StoreError(
            f"Migration check failed: {target.describe()} has {target_count} points in {name!r} "
            f"(source: {total}) or different meta; re-run `rag migrate` to resume, or add "
            "--recreate to copy from scratch."
        )
    return {
        "source": source.describe(), "target": target.describe(), "collection": collection,
        "target_collection": name, "dim": dim, "points": copied, "target_count": target_count,
        "resumed": resumed, "recreated": recreated, "seconds": round(time.perf_counter() - started, 3),
    }


def _copy_points(
    source: VectorStore, target: VectorStore, collection: str, name: str,
    batch: int, total: int, progress: bool,
) -> int:
    from tqdm import tqdm

    copied = 0
    with tqdm(total=total, unit="chunk", desc=f"migrate {collection}", disable=not progress) as bar:
        for page in source.iter_points(collection, batch):
            target.upsert(name, page)
            copied += len(page)
            bar.update(len(page))
    return copied


def open_target(
    spec: str, api_key: str | None = None, options: CollectionOptions | None = None,
    source_dir: Path | None = None,
) -> VectorStore:
    """The store named by ``--to``: ``http(s)://...``, ``path:DIR`` or ``edge:DIR``, opened by
    :func:`~indexer.store.open_store` like every other store."""
    if spec.startswith(("http://", "https://")):
        return open_store(spec, api_key, Path(), options=options)
    kind, _, rest = spec.partition(":")
    if kind not in ("path", "edge") or not rest:
        raise ValueError(f"--to {spec!r} is not a target; use {TARGET_HELP}.")
    folder = Path(rest).expanduser().resolve()
    if source_dir is not None and folder == Path(source_dir).expanduser().resolve():
        raise ValueError(f"--to {spec!r} is the source store itself; copy to another folder or a server.")
    return open_store(f"path:{folder}" if kind == "path" else None, None, folder, options=options)
