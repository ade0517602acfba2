"""Where an index run embeds its chunks: the stage an :class:`~indexer.pipeline.Indexer` is built with.

- :class:`LocalEmbedding`: parsing on threads ahead of one :class:`~embedder.Embedder` in this
  process (the default: ``Indexer(embedder, ...)`` wraps the embedder in one);
- :class:`~indexer.distributed.RayEmbedding`: parsing and embedding on a Ray cluster, N models at
  once (``rag index --workers N``).

Everything else about a run (skip-unchanged, deterministic ids, stale chunks deleted after the new
ones are in, the report) is the indexer's, whichever stage embeds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from itertools import islice
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedder import Embedder, ModelInfo

    from .pipeline import IndexSettings, StoredFiles
    from .prepare import DocumentPreparer, ParsedFile
    from .walk import FileEntry


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
    """One :class:`~embedder.Embedder` in this process; files are prepared on two threads ahead of it.

    Files are prepared up to ``settings.parse_ahead`` ahead of the model and embedded together in
    batches of about ``settings.embed_batch`` chunks. A file that is slow to prepare (a large PDF)
    does not hold back the files behind it: the model takes whatever is ready.
    """

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
        todo = iter(entries)
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="parse") as pool:
            running: set[Future] = set()

            def refill() -> None:
                for entry in islice(todo, settings.parse_ahead - len(running)):
                    running.add(pool.submit(preparer.prepare, entry, stored.complete_digest(str(entry.path))))

            refill()
            waiting: list[ParsedFile] = []
            chunks = 0
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    waiting.append(future.result())
                    chunks += len(waiting[-1].points)
                refill()
                if chunks >= settings.embed_batch or not running:
                    yield from self._embed(waiting)
                    waiting, chunks = [], 0

    def _embed(self, files: list[ParsedFile]) -> list[ParsedFile]:
        points = [p for f in files for p in f.points]
        vectors = iter(self.embedder.embed_documents([p.text for p in points]) if points else [])
        for f in files:
            f.points = [replace(p, dense=next(vectors).tolist()) for p in f.points]
        return files
