"""``rag serve``, ``rag mcp`` and ``rag ui``: the long-running entry points."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ..settings import Settings
from .common import EXIT_OK, SETTING_FLAGS, add_settings_flags, service_client

#: The Streamlit script that ``rag ui`` runs.
PAGE = Path(__file__).resolve().parent.parent / "ui" / "page.py"


def add_serve_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``serve``, ``mcp`` and ``ui`` on the subparsers ``sub``."""
    p = sub.add_parser("serve", help="serve search, indexing, embeddings and MCP over HTTP (one process)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (beyond loopback needs RAG_API_KEY)")
    p.add_argument("--port", type=int, default=8800)
    p.add_argument("--no-batching", dest="batching", action="store_false",
                   help="embed each request alone (default: concurrent requests share forward passes)")
    p.add_argument("--window-ms", type=float, default=5.0, help="how long the batcher collects requests")
    p.add_argument("--lora-adapters", dest="lora_adapters",
                   help="LoRA adapters for /v1/embeddings: NAME=PATH,NAME2=PATH2 (RAG_LORA_ADAPTERS)")
    p.add_argument("--adapter-strategy", choices=["grouped", "mixed"], default="grouped",
                   help="texts for several adapters: one forward per adapter, or mixed batches")
    p.add_argument("--no-index", dest="allow_index", action="store_false", help="refuse POST /index")
    p.add_argument("--mcp-index", action="store_true", help="offer the MCP tool index_folder (off by default)")
    add_settings_flags(p)

    p = sub.add_parser("mcp", help="MCP server over stdio for agents (through `rag serve` when one runs)")
    p.add_argument("--allow-index", action="store_true", help="offer the tool index_folder (off by default)")
    p.add_argument("--direct", action="store_true", help="open the store here even if a service runs")
    add_settings_flags(p)

    p = sub.add_parser("ui", help="open the Streamlit search page")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")
    add_settings_flags(p)


def cmd_ui(args, settings: Settings) -> int:
    env = {**os.environ, **{f"RAG_{k.upper()}": str(getattr(args, k)) for k in SETTING_FLAGS.values()
                            if getattr(args, k, None) is not None}}
    print(f"Search UI: http://{args.host}:{args.port}")
    cmd = [sys.executable, "-m", "streamlit", "run", str(PAGE), "--server.port", str(args.port),
           "--server.address", args.host, "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
           "--server.fileWatcherType", "none"]
    return run_child(cmd, env)


def run_child(cmd: list[str], env: dict) -> int:
    """Run ``cmd`` and wait; SIGTERM/SIGINT to this process stop the child too (never left behind)."""
    import signal

    child = subprocess.Popen(cmd, env=env)

    def stop(signum, _frame) -> None:
        if child.poll() is None:
            child.terminate()
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


def cmd_serve(args, settings: Settings) -> int:
    from ..serve.runtime import ServeOptions
    from ..serve.server import serve

    options = ServeOptions(batching=args.batching, window_ms=args.window_ms, adapters=settings.lora_adapters,
                           adapter_strategy=args.adapter_strategy, allow_index=args.allow_index,
                           mcp_index=args.mcp_index)
    print(f"rag serve: http://{args.host}:{args.port} (API docs at /docs, MCP at /mcp)", flush=True)
    serve(settings, options, args.host, args.port, api_key=os.environ.get("RAG_API_KEY") or None)
    return EXIT_OK


def cmd_mcp(args, settings: Settings) -> int:
    from ..serve.mcp import build_mcp

    client = None if args.direct else service_client(settings)
    if client is not None:
        build_mcp(backend=client, allow_index=args.allow_index).run("stdio")
        return EXIT_OK
    from ..serve.runtime import Runtime, ServeOptions

    runtime = Runtime.from_settings(settings, ServeOptions(mcp_index=args.allow_index))
    try:
        build_mcp(runtime, allow_index=args.allow_index).run("stdio")
    finally:
        runtime.close()
    return EXIT_OK


