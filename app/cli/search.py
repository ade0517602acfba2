"""``rag index``, ``rag search`` and ``rag status``: argument wiring over the search facade
(:class:`~app.service.SearchService`, or the running ``rag serve`` through
:class:`~app.serve.remote.RemoteSearchService`)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from indexer.modes import MODES

from ..settings import Settings
from .common import (
    EXIT_OK,
    EXIT_PARTIAL,
    add_direct_flag,
    add_settings_flags,
    open_service,
    via,
)


def add_search_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``index``, ``search`` and ``status`` on the subparsers ``sub``."""
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
    p.add_argument("--parse-workers", dest="parse_workers", type=int,
                   help="processes parsing files ahead of the model (0: threads; default: processes, "
                        "min(8, cores - 2), when the model is on a GPU, else threads)")
    p.add_argument("--ray-address", dest="ray_address",
                   help="a running Ray cluster (e.g. auto, HEAD:6379); default: start a local one")
    add_direct_flag(p)
    add_settings_flags(p)

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
    add_direct_flag(p)
    add_settings_flags(p)

    p = sub.add_parser("status", help="show collections, point counts, fingerprints and the store")
    p.add_argument("--json", action="store_true")
    add_direct_flag(p)
    add_settings_flags(p)



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
        url = via(service)
        if url is None:
            reports = [service.index(args.paths, include=args.include, exclude=args.exclude, recreate=args.recreate,
                                     progress=not (args.no_progress or args.json), workers=settings.workers)]
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
    from ..service import snippet

    rerank = settings.rerank if args.rerank is None else args.rerank
    flt = parse_filter(args.filter) if args.filter else None
    service = open_service(args, settings)
    try:
        url = via(service)
        response = service.search(args.query, settings.collection, k=args.k, mode=args.mode or settings.mode,
                                  task=args.task or settings.task,
                                  instruction=args.instruction or settings.instruction, flt=flt, rerank=rerank)
    finally:
        service.close()
    if args.json:
        print(json.dumps(response.to_dict(), indent=2))
        return EXIT_OK
    reranked = f", reranked by {settings.rerank_model}" if response.reranked else ""
    through = f" via {url}" if url else ""
    print(f"{len(response.results)} results in {response.seconds * 1000:.0f} ms ({response.mode}{reranked}; "
          f"score = {response.score_kind}){through}")
    for r in response.results:
        meta = r.metadata
        lines = "".join(f"\n     {line}" for line in snippet(r.text))
        section = f" › {r.section}" if r.section else ""
        print(f"{r.rank:>3}. {r.score:.4f}  {r.title}{section}\n     {r.source} "
              f"[chunk {meta.get('chunk_index', 0) + 1}/{meta.get('chunk_count', 1)}, "
              f"chars {meta.get('start')}-{meta.get('end')}]{lines}")
    return EXIT_OK


def cmd_status(args, settings: Settings) -> int:
    service = open_service(args, settings)
    try:
        info = {"store": service.location,
                "collections": [{"name": s.name, "points": s.points, "fingerprint": s.fingerprint or None,
                                 "chunk_tokens": s.chunk_tokens, "chunk_context": s.chunk_context,
                                 "last_indexed": s.last_indexed}
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
        if c.get("chunk_context") == "none":  # indexed before titles went in front of the chunks
            print("    chunks embedded without their titles: `rag index PATH --recreate` embeds each after its "
                  "document's title (better search)")
    print("tasks: " + ", ".join(TASKS))
    return EXIT_OK


