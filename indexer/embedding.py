"""Where an index run embeds its chunks: the stage an :class:`~indexer.pipeline.Indexer` is built with.

- :class:`LocalEmbedding`: parsing on threads ahead of one :class:`~embedder.Embedder` in this
  process (the default: ``Indexer(embedder, ...)`` wraps the embedder in one);
- :class:`~indexer.distributed.RayEmbedding`: parsing and embedding on a Ray cluster, N models at
  once (``rag index --workers N``).

Everything else about a run (skip-unchanged, deterministic ids, stale chunks deleted after the new
ones are in, the report) is the indexer's, whichever stage embeds.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import TYPE_CHECKING

from .parsing import ParseWindow, parse_workers

if TYPE_CHECKING:
    from embedder import Embedder, ModelInfo

    from .pipeline import IndexSettings, StoredFiles
    from .prepare import DocumentPreparer, ParsedFile
    from .walk import FileEntry

logger = logging.getLogger(__name__)


class EmbeddingStage(ABC):
    """Turns the files of a run into embedded :class:`~indexer.prepare.ParsedFile` objects."""

    @property
    @abstractmethod
    def info(self) -> ModelInfo:
        """The model's tokenizer, recipe and fingerprint (what chunking and the collection check need)."""

    @property
    def device(self) -> str | None:
        """Where the model runs (``cuda``, ``cpu``), which sets the default embedding batch; None
        when each worker decides."""
        return None

    @abstractmethod
    def embedded(self, entries: list[FileEntry], stored: StoredFiles, preparer: DocumentPreparer,
                 settings: IndexSettings) -> Iterator[ParsedFile]:
        """Every entry prepared (``preparer.prepare``) and its points embedded, in any order."""


class LocalEmbedding(EmbeddingStage):
    """One :class:`~embedder.Embedder` in this process; files are prepared ahead of it, on threads
    or in worker processes (:mod:`indexer.parsing`, ``settings.parse_workers``).

    Files are prepared up to ``settings.parse_ahead`` ahead of the model (at least two per worker
    process) and embedded together in calls of about ``settings.embed_batch`` chunks. A file that
    is slow to prepare (a large PDF) does not hold back the files behind it: the model takes
    whatever is ready. The calls run on an embedding thread, the next one queued behind the
    current one, so the model does not wait while a call's points are handed to the writer.
    """

    #: Embedding calls queued on the embedding thread (the running one included).
    QUEUED_CALLS = 2

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    @property
    def info(self) -> ModelInfo:
        return self.embedder.info

    @property
    def device(self) -> str:
        return self.embedder.device.type

    def embedded(self, entries: list[FileEntry], stored: StoredFiles, preparer: DocumentPreparer,
                 settings: IndexSettings) -> Iterator[ParsedFile]:
        workers = parse_workers(settings.parse_workers, self.device)
        if workers:
            logger.info("parsing in %d worker processes", workers)
        window = ParseWindow(entries, stored.complete_digest, preparer, workers, settings.parse_ahead)
        # one call at a time; after Ctrl-C the running call ends before the run does (a thread
        # left running torch at interpreter exit aborts the process)
        embedding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        calls: deque[Future] = deque()
        waiting: list[ParsedFile] = []  # parsed, not yet in a call
        chunks = 0  # theirs
        try:
            while True:
                for parsed in window.finished():
                    waiting.append(parsed)
                    chunks += len(parsed.points)
                if chunks < settings.embed_batch:  # no more parsing once a full call is waiting
                    window.fill()
                finished = []
                while calls and calls[0].done():
                    finished.append(calls.popleft())
                # a full call; or, with the model idle, whatever is parsed (the model never waits
                # while there is work: the first calls of a run are small, then they fill up); or
                # the last files. Decided before the finished calls go to the writer.
                full, idle, last = chunks >= settings.embed_batch, not calls and chunks > 0, not window.futures
                if waiting and (full or idle or last) and len(calls) < self.QUEUED_CALLS:
                    call, waiting = _take(waiting, settings.embed_batch)
                    chunks -= sum(len(f.points) for f in call)
                    calls.append(embedding.submit(self._embed, call))
                for done in finished:
                    yield from done.result()
                if not (window.futures or waiting or calls):
                    return
                wait([*window.futures, *calls], return_when=FIRST_COMPLETED)
        finally:
            embedding.shutdown(wait=True, cancel_futures=True)
            window.close()

    def _embed(self, files: list[ParsedFile]) -> list[ParsedFile]:  # on the embedding thread
        points = [p for f in files for p in f.points]
        rows = iter(self.embedder.embed_documents([p.text for p in points]) if points else ())  # (n, dim)
        for f in files:  # numpy rows: the store converts them where it writes
            f.points = [replace(p, dense=next(rows)) for p in f.points]
        return files


def _take(files: list[ParsedFile], chunks: int) -> tuple[list[ParsedFile], list[ParsedFile]]:
    """The first files of ``files`` up to about ``chunks`` chunks (at least one file), and the rest."""
    total = 0
    for i, f in enumerate(files):
        total += len(f.points)
        if total >= chunks:
            return files[:i + 1], files[i + 1:]
    return files, []
