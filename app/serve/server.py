"""Run the service with uvicorn: the endpoint file is written once the port is bound and removed
at exit; SIGTERM/SIGINT shut down gracefully (requests finish, a running index job stops between
files and can be resumed by indexing the folder again)."""

from __future__ import annotations

import ipaddress
import logging
import os
from contextlib import asynccontextmanager

import anyio

from ..settings import Settings
from .api import create_app, wrap
from .endpoint import Endpoint, remove_endpoint, write_endpoint
from .runtime import Runtime, ServeOptions

log = logging.getLogger(__name__)

THREADS = 256     # worker threads for blocking routes: concurrent requests waiting on the batcher


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key: str | None) -> None:
    """Refuse to bind a non-loopback address without an API key."""
    if not is_loopback(host) and not api_key:
        raise ValueError(f"--host {host} exposes the service beyond this machine; set RAG_API_KEY "
                         "(clients send 'Authorization: Bearer <key>') or bind 127.0.0.1.")


def build_asgi(runtime: Runtime, host: str, port: int, api_key: str | None, mcp_http: bool = True):
    """The whole ASGI app: API (+ MCP at /mcp), body limit, auth; its lifespan owns the endpoint file."""
    mcp_server = None
    if mcp_http:
        from .mcp import build_mcp

        mcp_server = build_mcp(runtime, allow_index=runtime.options.mcp_index)

    @asynccontextmanager
    async def lifespan(app):
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADS
        write_endpoint(runtime.settings.data_dir, Endpoint(host, port, os.getpid()))
        try:
            if mcp_server is not None:
                async with mcp_server.session_manager.run():
                    yield
            else:
                yield
        finally:
            remove_endpoint(runtime.settings.data_dir, os.getpid())
            await anyio.to_thread.run_sync(runtime.close)

    app = create_app(runtime, api_key, lifespan=lifespan)
    if mcp_server is not None:   # its routes join the API's, at /mcp
        mcp_app = mcp_server.streamable_http_app(streamable_http_path="/mcp", host=host)
        app.router.routes.extend(mcp_app.routes)
    return wrap(app, runtime, api_key)


def serve(settings: Settings, options: ServeOptions, host: str = "127.0.0.1", port: int = 8800,
          api_key: str | None = None) -> None:
    """Load the model, open the store and serve until SIGTERM/SIGINT."""
    import uvicorn

    check_exposure(host, api_key)
    runtime = Runtime.from_settings(settings, options)
    app = build_asgi(runtime, host, port, api_key)
    # "auto" picks httptools and uvloop (dependencies) over h11 and asyncio: less CPU per request
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, http="auto", loop="auto",
                timeout_graceful_shutdown=30)
