"""Dynamic batching: concurrent requests share model calls and get their own vectors back; a lone
client does not wait for the batching window."""

from __future__ import annotations

import threading
import time

import numpy as np

from app.serve.adapters import AdapterSet
from app.serve.batching import MicroBatcher

from .conftest import CORPUS


def batcher_for(embedder, window_ms: float) -> MicroBatcher:
    adapters = AdapterSet(embedder, {})
    return MicroBatcher(adapters.encode, embedder.count_tokens, embedder.batch_tokens, window_ms=window_ms)


def test_concurrent_requests_share_one_model_call(tiny_embedder):
    batcher = batcher_for(tiny_embedder, window_ms=5)
    texts = [CORPUS[i % len(CORPUS)] + f" #{i}" for i in range(16)]
    results: dict[int, np.ndarray] = {}
    try:
        with batcher._lock:          # the model is busy until every request is queued
            threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher.encode([texts[i]])))
                       for i in range(len(texts))]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while batcher._queue.unfinished_tasks < len(texts) and time.monotonic() < deadline:
                time.sleep(0.01)     # (puts so far: the batcher never marks a task done)
        for t in threads:
            t.join(30)
    finally:
        batcher.close()
    # the worker took the first request (and any queued with it) before the model was free, then the rest
    assert batcher.stats.requests == 16 and batcher.stats.calls <= 2
    want = tiny_embedder.encode(texts)
    got = np.concatenate([results[i] for i in range(len(texts))])
    assert got.shape == want.shape
    cos = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
    assert cos.min() >= 0.9999    # each request got its own vector back


def test_a_lone_client_does_not_wait_for_the_window(tiny_embedder):
    window_ms = 3000
    batcher = batcher_for(tiny_embedder, window_ms=window_ms)
    try:
        for text in CORPUS[:3]:
            start = time.perf_counter()
            batcher.encode([text])
            assert time.perf_counter() - start < window_ms / 1000 / 2
    finally:
        batcher.close()
    assert batcher.stats.calls == 3
