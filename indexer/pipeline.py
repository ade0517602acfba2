"""Folders into a collection, incrementally and crash-safely.

Each file is hashed; a file whose stored chunks all carry its current hash is skipped. A new or
changed file is extracted, chunked and embedded; its new chunks are written first, then the chunks
of its previous content are deleted, so a search never sees the file vanish. Point ids are derived
from (path, chunk index, content hash): after a kill at any moment, the next run rewrites the same
ids (nothing duplicated) and finishes what was missing (nothing lost). Files that disappeared from
an indexed root lose their chunks.

Where the chunks are embedded is a stage the indexer is built with (:mod:`indexer.embedding`):
in this process, preparing files on threads ahead of the model (:class:`~indexer.embedding.LocalEmbedding`,
the default), or on a Ray cluster (:class:`~indexer.distributed.RayEmbedding`). Writing runs in a
thread behind the model, so the model is kept busy. Preparing a file (hash, extract, chunk,
payloads) is :class:`~indexer.prepare.DocumentPreparer`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from .collection import (
    DEFAULT_CHUNK_CONTEXT,
    check_compatible,
    collection_meta,
    stored_chunk_context,
)
from .embedding import EmbeddingStage, LocalEmbedding
from .prepare import Chunker, DocumentPreparer, ParsedFile  # noqa: F401  (Chunker, ParsedFile: old homes)
from .store import Point, VectorStore
from .walk import is_under, walk

if TYPE_CHECKING:
    from embedder import Embedder, ModelInfo

logger = logging.getLogger(__name__)

_STATE_FIELDS = ["metadata.source", "metadata.content_hash", "metadata.chunk_count"]


@dataclass
class FileFailure:
    path: str
    reason: str


@dataclass
class IndexReport:
    """What one ``rag index`` run did."""

    collection: str
    files_seen: int = 0
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    seconds: float = 0.0
    failed: list[FileFailure] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StoredFiles:
    """The collection's points per source file: ``versions[source][content_hash] -> [point ids]``."""

    versions: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    chunk_counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, source: str, digest: str, pid: str, chunk_count: int) -> None:
        self.versions[source][digest].append(pid)
        self.chunk_counts[(source, digest)] = chunk_count

    def complete_digest(self, source: str) -> str | None:
        """The content hash of ``source`` when only that content is stored, with all of its chunks."""
        versions = self.versions.get(source, {})
        if len(versions) != 1:
            return None
        (digest, ids), = versions.items()
        return digest if len(ids) == self.chunk_counts.get((source, digest)) else None

    def stale_ids(self, source: str, digest: str) -> list[str]:
        """Point ids of ``source``'s other (older) contents."""
        return [pid for d, ids in self.versions.get(source, {}).items() if d != digest for pid in ids]


#: Chunks per embedding call by device, when ``IndexSettings.embed_batch`` is None. On an H100 a
#: 7B model embedded 1.25x faster in calls of 256 chunks than of 64 (fewer, fuller batches of the
#: 16384-token budget); on a CPU a call of 64 already fills several 2048-token batches.
EMBED_BATCH = {"cuda": 256, "cpu": 64}


def default_embed_batch(device: str) -> int:
    """Chunks per embedding call for a model on ``device`` (``cuda``, ``cpu``, ...)."""
    return EMBED_BATCH.get(device, EMBED_BATCH["cpu"])


@dataclass(frozen=True)
class IndexSettings:
    chunk_tokens: int = 256
    chunk_overlap: int = 32
    max_bytes: int = 50 * 1024 * 1024
    embed_batch: int | None = None  # chunks per embedding call; None: by device (EMBED_BATCH)
    parse_ahead: int = 8            # files parsed ahead of the model (at least 2 per parse process)
    parse_workers: int | None = None  # parse processes; 0: threads; None: by device (indexer.parsing)
    #: what goes before each chunk where it is embedded (store.payload.CHUNK_CONTEXTS); None: what
    #: an existing collection was indexed with, "title" for a new one
    chunk_context: str | None = None


def chunk_sizes(info: ModelInfo, chunk_tokens: int, chunk_overlap: int) -> tuple[int, int]:
    """The ``(chunk tokens, overlap)`` the indexer cuts for this model: the requested sizes, lowered
    to leave room for the special tokens and the document prefix inside the model's max length."""
    prefix = len(info.tokenizer(info.spec.document_prefix, add_special_tokens=False)["input_ids"])
    size = max(8, min(chunk_tokens, info.max_length - 2 - prefix))
    return size, min(chunk_overlap, size // 2)


class Indexer:
    """Indexes folders into one collection.

    ``embedder``: an :class:`~embedder.Embedder` (embedding in this process: wrapped in a
    :class:`~indexer.embedding.LocalEmbedding`) or any :class:`~indexer.embedding.EmbeddingStage`,
    such as :class:`~indexer.distributed.RayEmbedding` for ``--workers N``.
    """

    def __init__(self, embedder: Embedder | EmbeddingStage, store: VectorStore, collection: str,
                 settings: IndexSettings = IndexSettings()) -> None:
        self.stage = embedder if isinstance(embedder, EmbeddingStage) else LocalEmbedding(embedder)
        info = self.stage.info
        if settings.embed_batch is None and self.stage.device is not None:
            settings = replace(settings, embed_batch=default_embed_batch(self.stage.device))
        self.fingerprint = info.fingerprint
        self.store = store
        self.collection = collection
        self.settings = settings
        self.chunk_tokens, self.chunk_overlap = chunk_sizes(info, settings.chunk_tokens, settings.chunk_overlap)
        if self.chunk_tokens < settings.chunk_tokens:
            logger.info("chunk size lowered from %d to %d tokens to fit the model's max length",
                        settings.chunk_tokens, self.chunk_tokens)
        self.preparer = DocumentPreparer(info.tokenizer, self.chunk_tokens, self.chunk_overlap, settings.max_bytes,
                                         settings.chunk_context or DEFAULT_CHUNK_CONTEXT)

    @property
    def embedder(self) -> Embedder | None:
        """The model embedding in this process (None when the stage embeds elsewhere)."""
        return getattr(self.stage, "embedder", None)

    # -- collection ------------------------------------------------------------------------------
    def open_collection(self, recreate: bool = False) -> bool:
        """Check that the existing collection matches this embedder (``recreate`` drops it first).

        Returns whether the collection exists. A missing one is made by :meth:`create_collection`
        when the first points are written, so a run that writes nothing leaves no empty
        collection behind (a search then says "index a folder first", not "0 results").
        """
        meta = self.store.collection_meta(self.collection)
        if meta is not None and recreate:
            logger.info("dropping collection %s (--recreate)", self.collection)
            self.store.drop_collection(self.collection)
            meta = None
        if meta is not None:
            check_compatible(self.collection, meta, self.fingerprint, (self.chunk_tokens, self.chunk_overlap),
                             self.settings.chunk_context)
            # new chunks are embedded as the collection's are (unset: adopted; set: checked just above)
            self.preparer = replace(self.preparer, chunk_context=stored_chunk_context(meta))
        elif self.settings.chunk_context is None:
            self.preparer = replace(self.preparer, chunk_context=DEFAULT_CHUNK_CONTEXT)
        return meta is not None

    def create_collection(self) -> None:
        """Create the collection for this embedder, unless another run made it meanwhile (then check it)."""
        if self.open_collection():
            return
        fp = self.fingerprint
        meta = collection_meta(fp, self.chunk_tokens, self.chunk_overlap, self.preparer.chunk_context)
        self.store.create_collection(self.collection, fp.dim, meta)

    def stored_state(self) -> StoredFiles:
        """What the collection holds, per source file and content hash."""
        stored = StoredFiles()
        for pid, payload in self.store.iter_payloads(self.collection, _STATE_FIELDS):
            meta = payload.get("metadata", {})
            source, digest = meta.get("source"), meta.get("content_hash")
            if source is not None:
                stored.add(source, digest, pid, meta.get("chunk_count", -1))
        return stored

    # -- the run -----------------------------------------------------------------------------------
    def run(self, roots: Sequence[Path], include: Sequence[str] = (), exclude: Sequence[str] = (),
            recreate: bool = False, progress: bool = True,
            on_progress: Callable[[int, int], None] | None = None) -> IndexReport:
        """Index ``roots`` (folders or files) into the collection; returns what was done.

        ``progress`` shows a terminal progress bar; ``on_progress(files_done, files_total)`` is
        called after each file (for a UI progress bar).
        """
        start = time.perf_counter()
        report = IndexReport(self.collection)
        roots = [Path(r).expanduser().resolve() for r in roots]
        exists = self.open_collection(recreate)
        stored = self.stored_state() if exists else StoredFiles()
        walker = walk(roots, include=include, exclude=exclude, max_bytes=self.settings.max_bytes)
        entries = list(walker)
        for path, reason in walker.failures:
            report.failed.append(FileFailure(str(path), reason))
        report.files_seen = len(entries) + len(walker.failures)
        seen = {str(e.path) for e in entries}

        bar = tqdm(total=len(entries), desc="indexing", unit="file", disable=not progress or not entries)
        if not getattr(self.embedder, "warm", True):  # said while the first files wait for it
            bar.set_description("indexing (the first batch compiles the model, once: ~10 s on a GPU)")
        # points per upsert: the embedding call size (a distributed run picks its own per worker device)
        write_batch = self.settings.embed_batch or EMBED_BATCH["cpu"]
        try:
            with _Writer(self.store, self.collection, write_batch) as writer:
                for done, parsed in enumerate(self.stage.embedded(entries, stored, self.preparer, self.settings),
                                              start=1):
                    if done == 1:
                        bar.set_description("indexing")
                    bar.update(1)
                    if on_progress is not None:
                        on_progress(done, len(entries))
                    if parsed.error:
                        report.failed.append(FileFailure(str(parsed.entry.path), parsed.error))
                        logger.warning("skipped %s: %s", parsed.entry.path, parsed.error)
                        continue
                    if parsed.unchanged:
                        report.unchanged += 1
                        continue
                    if not exists:
                        self.create_collection()
                        exists = True
                    report.indexed += 1
                    report.chunks += len(parsed.points)
                    bar.set_postfix(chunks=report.chunks, refresh=False)
                    writer.add(parsed.points, stored.stale_ids(str(parsed.entry.path), parsed.content_hash))
        finally:
            bar.close()     # ends the bar's line, also when interrupted, before anything else is printed
        report.failed.sort(key=lambda f: f.path)  # files finish parsing in any order
        report.seconds = round(time.perf_counter() - start, 3)
        if not exists:
            logger.info("nothing to write: collection %s not created", self.collection)
            return report
        report.removed = self._remove_missing(roots, seen, stored)
        if report.chunks:
            self.store.build_index(self.collection)
        known = self.store.collection_meta(self.collection).get("roots", [])
        self.store.update_collection_meta(self.collection, {
            "last_indexed": time.time(), "roots": sorted(set(known) | {str(r) for r in roots}),
        })
        report.seconds = round(time.perf_counter() - start, 3)
        logger.info("indexed %d files (%d chunks), %d unchanged, %d removed, %d failed in %.1fs",
                    report.indexed, report.chunks, report.unchanged, report.removed, len(report.failed),
                    report.seconds)
        return report

    def _remove_missing(self, roots: list[Path], seen: set[str], stored: StoredFiles) -> int:
        removed = 0
        for source in list(stored.versions):
            if source in seen or not any(is_under(Path(source), root) for root in roots):
                continue
            self.store.delete_where(self.collection, source)
            removed += 1
        return removed


class _Writer:
    """Writes points in batches on a background thread, behind the model.

    A file's stale points (its previous content) are deleted in the same job, after its new
    points are in: the file never vanishes from search.
    """

    def __init__(self, store: VectorStore, collection: str, batch: int, max_pending: int = 2) -> None:
        self.store, self.collection, self.batch, self.max_pending = store, collection, batch, max_pending
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write")
        self._pending: list[Future] = []
        self._points: list[Point] = []
        self._stale: list[str] = []

    def add(self, points: list[Point], stale: list[str]) -> None:
        self._points.extend(points)
        self._stale.extend(stale)
        if len(self._points) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self._points or self._stale:
            self._pending.append(self._pool.submit(self._write, self._points, self._stale))
            self._points, self._stale = [], []
        while len(self._pending) > self.max_pending:
            self._pending.pop(0).result()

    def _write(self, points: list[Point], stale: list[str]) -> None:
        if points:
            self.store.upsert(self.collection, points)
        if stale:
            self.store.delete(self.collection, stale)

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, exc_type, *_) -> None:
        try:
            if exc_type is None:
                self.flush()
                for fut in self._pending:
                    fut.result()
        finally:
            self._pool.shutdown(wait=True)
