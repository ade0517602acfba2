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
from itertools import chain, islice
from typing import TYPE_CHECKING

from .parsing import DIED, BrokenProcessPool, died, open_parsing, parse_workers

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
        todo = iter(entries)
        parsing = open_parsing(preparer, workers)
        # one call at a time; after Ctrl-C the running call ends before the run does (a thread
        # left running torch at interpreter exit aborts the process)
        embedding = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        calls: deque[Future] = deque()
        try:
            ahead = max(settings.parse_ahead, 2 * parsing.size)
            running: dict[Future, FileEntry] = {}
            waiting: list[ParsedFile] = []
            chunks = 0
            while True:
                # parsed files wait for the model: no more parsing once a full call is waiting
                room = ahead - len(running) if chunks < settings.embed_batch else 0
                for entry in islice(todo, room):
                    running[parsing.prepare(entry, stored.complete_digest(str(entry.path)))] = entry
                broken = None
                for future in [f for f in running if f.done()]:
                    entry = running.pop(future)
                    try:
                        waiting.append(future.result())
                    except BrokenProcessPool as exc:  # a worker died: these files fail, the run goes on
                        logger.error("a parse worker died while parsing %s", entry.path)
                        waiting.append(died(entry, exc))
                        broken = exc
                    chunks += len(waiting[-1].points)
                if broken is not None and not parsing.started:
                    # no worker ever answered: the processes cannot start here; the files go to
                    # threads instead
                    logger.warning("parse worker processes failed to start (%s); parsing in threads "
                                   "(--parse-workers 0 chooses threads).", broken)
                    parsing.close()
                    parsing = open_parsing(preparer, 0)
                    retry = [w.entry for w in waiting if w.error and w.error.startswith(DIED)]
                    waiting = [w for w in waiting if not (w.error and w.error.startswith(DIED))]
                    todo = chain(retry, list(running.values()), todo)
                    running.clear()
                    continue
                if broken is not None:
                    for entry in running.values():  # the other files in flight in the broken pool
                        waiting.append(died(entry, broken))
                    running.clear()
                    parsing.restart()
                    continue
                finished = []
                while calls and calls[0].done():
                    finished.append(calls.popleft())
                # a full call; or, with the model idle, whatever is parsed (the model never waits
                # while there is work: the first calls of a run are small, then they fill up); or
                # the last files. Decided before the finished calls go to the writer.
                full, idle = chunks >= settings.embed_batch, not calls and chunks > 0
                if waiting and (full or idle or not running) and len(calls) < self.QUEUED_CALLS:
                    call, waiting = _take(waiting, settings.embed_batch)
                    chunks -= sum(len(f.points) for f in call)
                    calls.append(embedding.submit(self._embed, call))
                for done in finished:
                    yield from done.result()
                if not (running or waiting or calls):
                    return
                wait([*running, *calls], return_when=FIRST_COMPLETED)
        finally:
            embedding.shutdown(wait=True, cancel_futures=True)
            parsing.close()

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
