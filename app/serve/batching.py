"""Dynamic batching: texts from concurrent requests are embedded together.

A request puts its texts on a queue and waits. One worker thread takes the first waiting request
and everything queued behind it (up to the embedder's token budget), and embeds all collected
texts in one :meth:`Embedder.encode` call, which packs them into the embedder's own token-budget
batches. While the model runs, the next requests queue up, so 64 clients sending one query each
are served by a few forward passes. When the last call served several requests (clients are
concurrent), the worker also keeps collecting for ``window_ms`` before it calls the model; a lone
client (the last call served one request) pays no window.
With ``enabled=False`` each request is embedded alone (the baseline the bench compares against).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

#: encode(texts, adapters) -> (n, dim) float32; adapters[i] is None for the base model
EncodeFn = Callable[[list[str], list[str | None]], np.ndarray]


@dataclass
class _Request:
    texts: list[str]
    adapter: str | None
    tokens: int
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    requests: int = 0
    calls: int = 0
    texts: int = 0

    def to_dict(self) -> dict:
        return {"requests": self.requests, "encode_calls": self.calls, "texts": self.texts}


class MicroBatcher:
    """Collects concurrent :meth:`encode` calls into few model calls (thread-safe)."""

    def __init__(self, encode: EncodeFn, count_tokens: Callable[[str], int], batch_tokens: int, *,
                 window_ms: float = 5.0, enabled: bool = True) -> None:
        self._encode = encode
        self._count = count_tokens
        self.batch_tokens = batch_tokens
        self.window = window_ms / 1000
        self.enabled = enabled
        self.stats = BatchStats()
        self._concurrent = False            # the last call served several requests: wait the window
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._lock = threading.Lock()       # the model runs one call at a time
        self._worker = threading.Thread(target=self._run, name="embed-batcher", daemon=True)
        self._worker.start()

    def encode(self, texts: Sequence[str], adapter: str | None = None) -> np.ndarray:
        """Embed already-formatted ``texts`` (with ``adapter``): (n,) -> (n, dim) float32."""
        texts = list(texts)
        if not self.enabled:
            with self._lock:
                self.stats.requests += 1
                self.stats.calls += 1
                self.stats.texts += len(texts)
                return self._encode(texts, [adapter] * len(texts))
        tokens = sum(min(self._count(t), self.batch_tokens) for t in texts) if len(texts) < 64 else self.batch_tokens
        request = _Request(texts, adapter, tokens)
        self._queue.put(request)
        return request.future.result()

    async def encode_async(self, texts: Sequence[str], adapter: str | None = None) -> np.ndarray:
        """:meth:`encode` for an event loop: waits without holding a worker thread."""
        import asyncio

        texts = list(texts)
        if not self.enabled:
            return await asyncio.to_thread(self.encode, texts, adapter)
        tokens = sum(min(self._count(t), self.batch_tokens) for t in texts) if len(texts) < 64 else self.batch_tokens
        request = _Request(texts, adapter, tokens)
        self._queue.put(request)
        return await asyncio.wrap_future(request.future)

    def _collect(self, first: _Request) -> list[_Request]:
        batch, tokens = [first], first.tokens
        deadline = time.perf_counter() + (self.window if self._concurrent else 0.0)
        while tokens < self.batch_tokens:
            left = deadline - time.perf_counter()
            try:
                item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
            tokens += item.tokens
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = self._collect(first)
            self._concurrent = len(batch) > 1
            texts = [t for r in batch for t in r.texts]
            adapters = [r.adapter for r in batch for _ in r.texts]
            try:
                with self._lock:
                    vectors = self._encode(texts, adapters)
                    self.stats.requests += len(batch)
                    self.stats.calls += 1
                    self.stats.texts += len(texts)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                for r in batch:
                    r.future.set_exception(exc)
                continue
            start = 0
            for r in batch:
                r.future.set_result(vectors[start:start + len(r.texts)])
                start += len(r.texts)

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=5)


class BatchedEmbedder:
    """The embedder as a :class:`~indexer.search.Searcher` sees it, with :meth:`encode` going
    through the :class:`MicroBatcher` (everything else is the wrapped embedder's)."""

    def __init__(self, embedder, batcher: MicroBatcher) -> None:
        self._embedder = embedder
        self._batcher = batcher

    def __getattr__(self, name: str):
        return getattr(self._embedder, name)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        return self._batcher.encode(texts)
