"""The ``rag`` command: index folders, search them, show the index, open the UI."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from indexer.modes import FUSIONS, MODES

from .finetune_cli import add_finetune_parser, cmd_eval, cmd_finetune
from .migrate import add_migrate_parser, cmd_migrate
from .settings import Settings

EXIT_OK, EXIT_PARTIAL, EXIT_ERROR = 0, 1, 2
_SETTING_FLAGS = {
    "model": "model", "quantization": "quantization", "dtype": "dtype", "device": "device",
    "adapter": "adapter", "max_length": "max_length", "batch_tokens": "batch_tokens",
    "packing": "packing", "fusion": "fusion",
    "collection": "collection", "data_dir": "data_dir", "qdrant_url": "qdrant_url",
    "workers": "workers", "ray_address": "ray_address", "lora_adapters": "lora_adapters",
}


def _common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("settings (each also read from RAG_<NAME>)")
    g.add_argument("--model", help="model folder, hub name, .gguf file, or 'default'")
    g.add_argument("--quantization", choices=["none", "8bit", "4bit"])
    g.add_argument("--dtype", choices=["auto", "bf16", "fp16", "fp32"])
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])
    g.add_argument("--adapter", help="LoRA adapter folder")
    g.add_argument("--max-length", type=int, dest="max_length")
    g.add_argument("--batch-tokens", type=int, dest="batch_tokens")
    g.add_argument("--packing", choices=["auto", "on", "off"], help="unpadded batches (default: auto)")
    g.add_argument("--fusion", choices=FUSIONS, help="how hybrid search fuses dense and sparse results (default: dbsf)")
    g.add_argument("--collection", help="collection name (default: documents)")
    g.add_argument("--data-dir", dest="data_dir", help="embedded store folder")
    g.add_argument("--qdrant-url", dest="qdrant_url", help="Qdrant server URL (default: embedded store)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")


def _direct(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--direct", action="store_true",
                        help="open the store in this process even when `rag serve` runs for the data dir")


def _service_client(settings: Settings):
    """The client of the `rag serve` running for this data dir (embedded store), or None."""
    if settings.qdrant_url:
        return None
    from .serve.client import RemoteClient

    return RemoteClient.for_data_dir(settings.data_dir)


def open_service(args: argparse.Namespace, settings: Settings):
    """The facade the command talks to: the running `rag serve` for this data dir (its
    :class:`~app.serve.remote.RemoteSearchService`) unless ``--direct``, else a
    :class:`~app.service.SearchService` over the store opened here, its model read on first use."""
    client = None if getattr(args, "direct", False) else _service_client(settings)
    if client is not None:
        from .serve.remote import RemoteSearchService

        return RemoteSearchService(client)
    from .service import SearchService

    return SearchService.from_settings(settings, lazy=True)


def _via(service) -> str | None:
    """The URL of the service a facade goes through, or None when the store is opened here."""
    client = getattr(service, "client", None)
    return getattr(client, "url", None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("index", help="index folders or files into a collection")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--glob", "--include", dest="include", action="append", default=[],
                   help="only files matching this glob (relative to the root; repeatable)")
    p.add_argument("--exclude", action="append", default=[], help="skip files matching this glob (repeatable)")
    p.add_argument("--recreate", action="store_true", help="drop the collection and index from scratch")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--workers", type=int,
                   help="embedding workers (one GPU each where the cluster has GPUs); above 1 runs on Ray")
    p.add_argument("--ray-address", dest="ray_address",
                   help="a running Ray cluster (e.g. auto, HEAD:6379); default: start a local one")
    _direct(p)
    _common(p)

    p = sub.add_parser("search", help="search a collection")
    p.add_argument("query")
    p.add_argument("-k", "--k", type=int, default=10, help="number of results (default 10)")
    p.add_argument("--task", help="named instruction (see `rag status`): web_search, question_answering, ...")
    p.add_argument("--instruction", help="custom instruction text (overrides --task)")
    p.add_argument("--mode", choices=MODES, help="dense, sparse or hybrid (default: RAG_MODE, hybrid)")
    p.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None,
                   help="re-score the top RAG_RERANK_DEPTH results with RAG_RERANK_MODEL (default: RAG_RERANK)")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="path=PREFIX, glob=PATTERN, type=EXT (repeatable), after=YYYY-MM-DD")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    _direct(p)
    _common(p)

    p = sub.add_parser("status", help="show collections, point counts, fingerprints and the store")
    p.add_argument("--json", action="store_true")
    _direct(p)
    _common(p)

    add_finetune_parser(sub, _common)
    add_migrate_parser(sub, _common)

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
    _common(p)

    p = sub.add_parser("mcp", help="MCP server over stdio for agents (through `rag serve` when one runs)")
    p.add_argument("--allow-index", action="store_true", help="offer the tool index_folder (off by default)")
    p.add_argument("--direct", action="store_true", help="open the store here even if a service runs")
    _common(p)

    p = sub.add_parser("ui", help="open the Streamlit search page")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")
    _common(p)
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    overrides = {k: getattr(args, flag) for flag, k in _SETTING_FLAGS.items()
                 if getattr(args, flag, None) is not None}
    return Settings(**overrides)


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # transformers reads this when it is first imported (only by commands that load a model):
    # no "Loading weights" bar over the CLI's own output
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def parse_filter(items: list[str]):
    """``["path=/docs", "type=pdf", "after=2024-01-01"]`` -> a SearchFilter."""
    from indexer.store import SearchFilter

    fields: dict = {"file_types": []}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--filter {item!r} is not KEY=VALUE (keys: path, glob, type, after).")
        if key == "path":
            fields["path_prefix"] = str(Path(value).expanduser().resolve())
        elif key == "glob":
            fields["path_glob"] = value
        elif key == "type":
            fields["file_types"].append(value.lstrip(".").lower())
        elif key == "after":
            fields["modified_after"] = datetime.fromisoformat(value).timestamp()
        else:
            raise ValueError(f"Unknown filter key {key!r}; use path, glob, type or after.")
    fields["file_types"] = tuple(fields["file_types"])
    return SearchFilter(**fields)


def cmd_index(args, settings: Settings) -> int:
    service = open_service(args, settings)
    try:
        url = _via(service)
        if url is None:
            reports = [service.index(args.paths, include=args.include, exclude=args.exclude, recreate=args.recreate,
                                     progress=not (args.no_progress or args.json))]
        else:
            if args.include or args.exclude or args.recreate or settings.workers > 1:
                raise ValueError(f"`rag serve` runs for {settings.data_dir}: through it, rag index takes paths "
                                 "only (no --glob/--exclude/--recreate/--workers). Drop those flags or stop the "
                                 "service.")
            reports = []
            for path in args.paths:
                if not args.json:
                    print(f"indexing {path} through the service at {url}", flush=True)
                reports.append(service.index_folder(path.expanduser().resolve(), settings.collection))
    finally:
        service.close()
    for report in reports:
        _print_report(args, settings, report, url)
    return EXIT_PARTIAL if any(r.failed for r in reports) else EXIT_OK


def _print_report(args, settings: Settings, report, url: str | None) -> None:
    if args.json:
        extra = {"service": url} if url else {"workers": settings.workers}
        print(json.dumps({**report.to_dict(), **extra}, indent=2))
        return
    where = f"through {url}" if url else f"in {settings.qdrant_url or settings.data_dir}"
    print(f"Collection {report.collection!r} {where}")
    print(f"  files seen {report.files_seen}, indexed {report.indexed}, unchanged {report.unchanged}, "
          f"removed {report.removed}, failed {len(report.failed)}")
    workers = f" by {settings.workers} workers" if settings.workers > 1 and not url else ""
    print(f"  chunks written {report.chunks} in {report.seconds:.1f}s{workers}")
    for failure in report.failed:
        print(f"  FAILED {failure.path}: {failure.reason}")


def cmd_search(args, settings: Settings) -> int:
    from .service import snippet

    rerank = settings.rerank if args.rerank is None else args.rerank
    flt = parse_filter(args.filter) if args.filter else None
    service = open_service(args, settings)
    try:
        url = _via(service)
        response = service.search(args.query, settings.collection, k=args.k, mode=args.mode or settings.mode,
                                  task=args.task or settings.task,
                                  instruction=args.instruction or settings.instruction, flt=flt, rerank=rerank)
    finally:
        service.close()
    if args.json:
        print(json.dumps(response.to_dict(), indent=2))
        return EXIT_OK
    reranked = f", reranked by {settings.rerank_model}" if response.reranked else ""
    via = f" via {url}" if url else ""
    print(f"{len(response.results)} results in {response.seconds * 1000:.0f} ms ({response.mode}{reranked}; "
          f"score = {response.score_kind}){via}")
    for r in response.results:
        meta = r.metadata
        lines = "".join(f"\n     {line}" for line in snippet(r.text))
        print(f"{r.rank:>3}. {r.score:.4f}  {r.title}\n     {r.source} "
              f"[chunk {meta.get('chunk_index', 0) + 1}/{meta.get('chunk_count', 1)}, "
              f"chars {meta.get('start')}-{meta.get('end')}]{lines}")
    return EXIT_OK


def cmd_status(args, settings: Settings) -> int:
    service = open_service(args, settings)
    try:
        info = {"store": service.location,
                "collections": [{"name": s.name, "points": s.points, "fingerprint": s.fingerprint or None,
                                 "chunk_tokens": s.chunk_tokens, "last_indexed": s.last_indexed}
                                for s in map(service.status, service.collections())]}
    finally:
        service.close()
    return _print_status(args, info)


def _print_status(args, info: dict) -> int:
    from embedder import TASKS

    info["tasks"] = TASKS
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(info["store"])
    if not info["collections"]:
        print("  no collections yet: rag index PATH")
    for c in info["collections"]:
        fp = c["fingerprint"] or {}
        print(f"  {c['name']}: {c['points']} chunks, model {fp.get('model')} ({fp.get('dim')}-d, "
              f"quantization {fp.get('quantization')}, adapter {fp.get('adapter') or 'none'})")
    print("tasks: " + ", ".join(TASKS))
    return EXIT_OK


def cmd_ui(args, settings: Settings) -> int:
    page = Path(__file__).with_name("page.py")
    env = {**os.environ, **{f"RAG_{k.upper()}": str(getattr(args, k)) for k in _SETTING_FLAGS.values()
                            if getattr(args, k, None) is not None}}
    print(f"Search UI: http://{args.host}:{args.port}")
    cmd = [sys.executable, "-m", "streamlit", "run", str(page), "--server.port", str(args.port),
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
    from .serve.runtime import ServeOptions
    from .serve.server import serve

    options = ServeOptions(batching=args.batching, window_ms=args.window_ms, adapters=settings.lora_adapters,
                           adapter_strategy=args.adapter_strategy, allow_index=args.allow_index,
                           mcp_index=args.mcp_index)
    print(f"rag serve: http://{args.host}:{args.port} (API docs at /docs, MCP at /mcp)", flush=True)
    serve(settings, options, args.host, args.port, api_key=os.environ.get("RAG_API_KEY") or None)
    return EXIT_OK


def cmd_mcp(args, settings: Settings) -> int:
    from .serve.mcp import build_mcp

    client = None if args.direct else _service_client(settings)
    if client is not None:
        build_mcp(backend=client, allow_index=args.allow_index).run("stdio")
        return EXIT_OK
    from .serve.runtime import Runtime, ServeOptions

    runtime = Runtime.from_settings(settings, ServeOptions(mcp_index=args.allow_index))
    try:
        build_mcp(runtime, allow_index=args.allow_index).run("stdio")
    finally:
        runtime.close()
    return EXIT_OK


COMMANDS = {"index": cmd_index, "serve": cmd_serve, "mcp": cmd_mcp, "search": cmd_search, "status": cmd_status, "ui": cmd_ui,
            "finetune": cmd_finetune, "eval": cmd_eval, "migrate": cmd_migrate}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from .service import ServiceError, friendly_errors

    try:
        with friendly_errors():        # the one mapping of library errors to messages, as on the page
            settings = load_settings(args)
            return COMMANDS[args.command](args, settings)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
