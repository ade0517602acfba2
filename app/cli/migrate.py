"""``rag migrate``: argument wiring over :func:`indexer.store.migrate.migrate`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from indexer.store import open_store
from indexer.store.migrate import TARGET_HELP, migrate, open_target

from ..settings import Settings


def add_migrate_parser(sub: argparse._SubParsersAction, common) -> argparse.ArgumentParser:
    """Register ``rag migrate`` on the subparsers ``sub``; ``common`` adds the settings flags."""
    p = sub.add_parser(
        "migrate", help="copy a collection from the embedded store to a Qdrant server",
        description="Copy a collection (ids, payloads, vectors, meta) from the embedded store at "
                    "RAG_DATA_DIR to a Qdrant server. Re-running resumes; --recreate starts over.")
    p.add_argument("--to", metavar="TARGET", help=TARGET_HELP)
    p.add_argument("--api-key", dest="api_key", metavar="KEY",
                   help="target server API key (default RAG_QDRANT_API_KEY; prefer the variable)")
    p.add_argument("--target-collection", dest="target_collection",
                   help="collection name on the target (default: the source's --collection)")
    p.add_argument("--recreate", action="store_true", help="drop an existing target collection first")
    p.add_argument("--batch", type=int, default=256, help="points per request (default 256)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    common(p)
    return p


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    """Migrate ``settings.collection`` from the embedded store at ``settings.data_dir`` to ``--to``."""
    spec = args.to or settings.qdrant_url
    if not spec:
        raise ValueError("rag migrate needs a target: --to http://HOST:6333 (or set RAG_QDRANT_URL).")
    data_dir = Path(settings.data_dir).expanduser()
    if not data_dir.is_dir():
        raise FileNotFoundError(f"No embedded store at {data_dir}: set --data-dir / RAG_DATA_DIR to "
                                "the folder `rag index` wrote to.")
    source = open_store(None, None, data_dir)
    try:
        target = open_target(spec, args.api_key or settings.api_key(), settings.collection_options(), data_dir)
        try:
            summary = migrate(source, target, settings.collection, args.target_collection,
                              batch=args.batch, progress=not (args.no_progress or args.json),
                              recreate=args.recreate)
        finally:
            target.close()
    finally:
        source.close()
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        how = "resumed" if summary["resumed"] else "recreated" if summary["recreated"] else "copied"
        print(f"{how} {summary['collection']!r} -> {summary['target_collection']!r}: "
              f"{summary['target_count']} points ({summary['dim']}-d) in {summary['seconds']:.1f}s")
        print(f"  from {summary['source']}\n  to   {summary['target']}")
    return 0
