"""Where files are prepared (hash, extract, chunk) ahead of the model: threads or worker processes.

Extraction and chunking are pure Python. On threads of the embedding process they hold the GIL
that the model's thread needs to launch its kernels: with a fast GPU model (a 7B decoder launches
hundreds of kernels per batch, each one a GIL release and retake) busy parse threads slow the
launches down and the GPU waits. :class:`ProcessParsing` prepares files in worker processes
instead: the :class:`~indexer.prepare.DocumentPreparer` is sent once per worker (its tokenizer
included), the workers import no torch, and each parsed file comes back pickled.

:func:`parse_workers` picks between the two: processes when the model is on a GPU and the
machine has cores to spare, threads otherwise (a CPU model needs the cores itself).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from itertools import chain, islice
from typing import Any

from .prepare import DocumentPreparer, ParsedFile
from .walk import FileEntry

logger = logging.getLogger(__name__)

#: Worker processes at most when chosen automatically, and the cores left to the model's process.
MAX_AUTO_WORKERS = 8
CORES_KEPT = 2
#: Parse threads (``parse_workers=0``, or a model on the CPU).
PARSE_THREADS = 2


def parse_workers(requested: int | None, device: str | None, cores: int | None = None) -> int:
    """Worker processes for parsing; 0 means threads in the embedding process.

    ``requested``: a count (0 = threads), or None to choose by ``device``: processes
    (``min(8, cores - 2)``) for a ``cuda`` model on a machine with at least 4 cores, else threads.
    """
    if requested is not None:
        if requested < 0:
            raise ValueError(f"parse_workers={requested} is not valid: use 0 (threads), a number of "
                             "processes, or None (chosen by device).")
        return requested
    cores = cores or os.cpu_count() or 1
    if device == "cuda" and cores >= 4:
        return min(MAX_AUTO_WORKERS, cores - CORES_KEPT)
    return 0


class ThreadParsing:
    """Files prepared on threads of this process (``workers`` = 0)."""

    processes = 0
    started = True  # threads always start

    def __init__(self, preparer: DocumentPreparer, threads: int = PARSE_THREADS) -> None:
        # Not the model's Hugging Face tokenizer: each of its calls first sets truncation on the
        # shared Rust tokenizer, so a parse thread's untruncated call racing the embedder's
        # truncated one (max_length) lost the end of a file, silently. The copy is never changed.
        self.preparer = replace(preparer, tokenizer=RustTokenizer.of(preparer.tokenizer))
        self.size = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="parse")

    def prepare(self, entry: FileEntry, stored_digest: str | None) -> Future[ParsedFile]:
        return self._pool.submit(self.preparer.prepare, entry, stored_digest)

    def restart(self) -> None:  # threads do not die
        pass

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ThreadParsing:
        return self

    def __exit__(self, *_) -> None:
        self.close()


class RustTokenizer:
    """What chunking calls of a Hugging Face fast tokenizer (``is_fast``, ``__call__`` for ids and
    offsets, special tokens excluded), on its Rust ``tokenizers.Tokenizer`` alone: a parse worker
    then imports neither transformers nor torch (unpickling the Hugging Face tokenizer imports
    transformers, ~1.4 s per worker)."""

    is_fast = True

    def __init__(self, backend: Any) -> None:
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_str(backend.to_str())  # a copy: chunking counts untruncated, unpadded
        self.backend.no_truncation()
        self.backend.no_padding()

    @classmethod
    def of(cls, tokenizer: Any) -> Any:
        """``tokenizer``'s Rust tokenizer, or ``tokenizer`` itself when it has none (a slow tokenizer)."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        return cls(backend) if backend is not None else tokenizer

    def __call__(self, text: str | list[str], add_special_tokens: bool = True, **_: Any) -> dict[str, list]:
        if isinstance(text, str):
            enc = self.backend.encode(text, add_special_tokens=add_special_tokens)
            return {"input_ids": enc.ids, "offset_mapping": enc.offsets}
        encs = self.backend.encode_batch(list(text), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encs], "offset_mapping": [e.offsets for e in encs]}


_preparer: DocumentPreparer | None = None
_main_lock = threading.Lock()


@contextlib.contextmanager
def _main_hidden():
    """While workers are spawned: the parent's ``__main__`` replaced by an empty module.

    A spawned process first re-runs its parent's main script (``__main__.__file__``) to rebuild
    its globals. The parse workers need none of it (their code is this module), and the script
    may not be safe to re-run: an indexing script without an ``if __name__ == "__main__":``
    guard, or a Streamlit page, which Streamlit runs as ``__main__`` (the page would start over
    in each worker). With an empty ``__main__``, a worker imports only what it unpickles.
    """
    with _main_lock:
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            yield
        finally:
            if main is not None:
                sys.modules["__main__"] = main


def _init_worker(preparer_file: str) -> None:
    global _preparer
    with open(preparer_file, "rb") as f:
        _preparer = pickle.load(f)
    # Ctrl-C reaches the whole process group: the main process stops the run (and this pool);
    # a worker interrupted mid-file would only print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _prepare_in_worker(entry: FileEntry, stored_digest: str | None) -> ParsedFile:
    return _preparer.prepare(entry, stored_digest)


class ProcessParsing:
    """Files prepared in ``workers`` processes (``spawn``: safe after CUDA is initialised).

    The preparer goes to each worker once, at its start, through a temporary file (its tokenizer
    is megabytes: sent through the start pipe, a worker that died while starting left the parent
    blocked on that pipe for ever); a file's :class:`ParsedFile` comes back pickled. A worker that
    dies (killed, out of memory) breaks the pool: the futures of the files in flight raise
    :class:`~concurrent.futures.process.BrokenProcessPool` and :meth:`restart` starts a new pool
    for the files after them. ``started`` tells whether any file came back from a worker.
    """

    def __init__(self, preparer: DocumentPreparer, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"ProcessParsing needs at least 1 worker, got {workers}; use ThreadParsing "
                             "for parsing in this process.")
        # the workers tokenize with the Rust tokenizer: same ids and offsets, no transformers import
        self.preparer = replace(preparer, tokenizer=RustTokenizer.of(preparer.tokenizer))
        self.size = self.processes = workers
        self.started = False
        with tempfile.NamedTemporaryFile("wb", prefix="rag-preparer-", suffix=".pkl", delete=False) as f:
            pickle.dump(self.preparer, f)
        self._file = f.name
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self._file,))

    def prepare(self, entry: FileEntry, stored_digest: str | None) -> Future[ParsedFile]:
        future = self.submit(_prepare_in_worker, entry, stored_digest)
        future.add_done_callback(self._came_back)
        return future

    def _came_back(self, future: Future) -> None:
        if not future.cancelled() and future.exception() is None:
            self.started = True

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run any picklable ``fn(*args)`` in a worker (what a worker has loaded, say)."""
        with _main_hidden():  # the pool spawns its workers on submit
            return self._pool.submit(fn, *args)

    def restart(self) -> None:
        """A new pool after a worker died (the broken one is shut down)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = self._start()

    def close(self) -> None:
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self._file)

    def __enter__(self) -> ProcessParsing:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def open_parsing(preparer: DocumentPreparer, workers: int) -> ThreadParsing | ProcessParsing:
    """Threads for ``workers`` = 0, else that many worker processes."""
    return ProcessParsing(preparer, workers) if workers else ThreadParsing(preparer)


#: How the failure of a file whose parse worker died begins.
DIED = "the parse worker died"


def died(entry: FileEntry, exc: BaseException) -> ParsedFile:
    """The failure of a file whose parse worker died."""
    return ParsedFile(entry, error=f"{DIED} ({type(exc).__name__}: {exc}); run again to retry "
                                   "this file, or parse in threads with --parse-workers 0")


def _died(parsed: ParsedFile) -> bool:
    return bool(parsed.error and parsed.error.startswith(DIED))


class ParseWindow:
    """The files of a run being prepared ahead of the model: at most ``ahead`` in flight (at
    least two per worker process), on threads or in ``workers`` processes.

    A worker that dies fails the files it had in flight (:func:`died`) and a new pool takes the
    files after them. Processes that cannot start at all (no file ever came back from one) give
    way to threads, which prepare those files again.
    """

    def __init__(self, entries: Iterable[FileEntry], stored_digest: Callable[[str], str | None],
                 preparer: DocumentPreparer, workers: int, ahead: int) -> None:
        self._todo: Iterator[FileEntry] = iter(entries)
        self._stored_digest = stored_digest
        self._preparer = preparer
        self._parsing = open_parsing(preparer, workers)
        self.ahead = max(ahead, 2 * self._parsing.size)
        self._running: dict[Future, FileEntry] = {}

    @property
    def futures(self) -> list[Future]:
        """The files in flight (to wait on)."""
        return list(self._running)

    def fill(self) -> None:
        """Start files until ``ahead`` are in flight or none are left."""
        for entry in islice(self._todo, max(0, self.ahead - len(self._running))):
            future = self._parsing.prepare(entry, self._stored_digest(str(entry.path)))
            self._running[future] = entry

    def finished(self) -> list[ParsedFile]:
        """The files prepared since the last call, in the order they finished."""
        done, broken = [], None
        for future in [f for f in self._running if f.done()]:
            entry = self._running.pop(future)
            try:
                done.append(future.result())
            except BrokenProcessPool as exc:  # a worker died: these files fail, the run goes on
                logger.error("a parse worker died while parsing %s", entry.path)
                done.append(died(entry, exc))
                broken = exc
        if broken is None:
            return done
        if not self._parsing.started:
            return self._to_threads(done, broken)
        done += [died(entry, broken) for entry in self._running.values()]  # the pool's other files
        self._running.clear()
        self._parsing.restart()
        return done

    def _to_threads(self, done: list[ParsedFile], broken: BaseException) -> list[ParsedFile]:
        """No worker ever answered: the processes cannot start here; their files go to threads."""
        logger.warning("parse worker processes failed to start (%s); parsing in threads "
                       "(--parse-workers 0 chooses threads).", broken)
        self._parsing.close()
        self._parsing = open_parsing(self._preparer, 0)
        retry = [p.entry for p in done if _died(p)]
        self._todo = chain(retry, list(self._running.values()), self._todo)
        self._running.clear()
        return [p for p in done if not _died(p)]

    def close(self) -> None:
        self._parsing.close()


__all__ = ["DIED", "BrokenProcessPool", "ParseWindow", "ProcessParsing", "ThreadParsing", "died", "open_parsing",
           "parse_workers"]
