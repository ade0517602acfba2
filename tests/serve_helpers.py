"""A real uvicorn server for the service, on a free localhost port, in a thread of the test."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import httpx

from app.serve.jobs import ACTIVE


def index_corpus(data_dir, corpus, embedder):
    """``corpus`` indexed into an embedded store at ``data_dir`` (64-token chunks); returns ``data_dir``."""
    from app.factories import index_settings
    from app.settings import Settings
    from indexer.pipeline import Indexer
    from indexer.store import EdgeStore

    store = EdgeStore(data_dir)
    try:
        Indexer(embedder, store, "documents", index_settings(Settings(data_dir=data_dir, chunk_tokens=64))
                ).run([corpus], progress=False)
    finally:
        store.close()
    return data_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(runtime, api_key: str | None = None, mcp_http: bool = True):
    """Serve ``runtime`` until the block ends; yields the base URL. Shutdown runs the lifespan
    (endpoint file removed, jobs stopped, store closed)."""
    import uvicorn

    from app.serve.server import build_asgi

    port = free_port()
    app = build_asgi(runtime, "127.0.0.1", port, api_key, mcp_http=mcp_http)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/index/{job_id}").json()
        if job["state"] not in ACTIVE:
            return job
        time.sleep(0.1)
    raise TimeoutError(f"index job {job_id} still running after {timeout}s")
