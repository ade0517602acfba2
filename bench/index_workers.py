"""``rag index --workers N`` (Ray) vs the in-process indexer, on the same folder.

A copy of ``--files`` python-docs pages is indexed into a fresh EdgeStore by:

- ``local``: ``Indexer.run`` in this process (the baseline; model loading excluded);
- ``ray1`` / ``ray2`` ...: ``RayIndexer.run`` with 1, 2 ... embedding workers on a local Ray
  cluster, Ray's start and the workers' model loading included (a user pays them on every run).

Each phase runs in its own interpreter; peak RSS is the ``rag`` process's own (the workers are
other processes: the driver never loads the model). All phases must write the same point ids.

On a GPU machine ``--workers-list 1,2,4`` measures the scaling over GPUs; on a CPU-only machine
the workers share the cores, so the figure to read is the fixed cost of the Ray path.

    .venv/bin/python bench/index_workers.py [--quick] [--files 20] [--workers-list 1,2] [--model DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from pathlib import Path

import common


def phase(args: argparse.Namespace) -> None:
    common.quiet_transformers()
    from embedder import Embedder, EmbedderConfig
    from indexer.pipeline import Indexer
    from indexer.store import EdgeStore

    with EdgeStore(Path(args.store)) as store:
        t = time.perf_counter()
        if args.phase == "local":
            indexer = Indexer(Embedder.from_config(EmbedderConfig(model=args.model)), store, "bench")
            start = time.perf_counter()  # model loading excluded: the baseline is the pipeline alone
        else:
            from indexer.distributed import RayIndexer

            indexer = RayIndexer(EmbedderConfig(model=args.model), store, "bench",
                                 workers=int(args.phase.removeprefix("ray")))
            start = t
        report = indexer.run([Path(args.dir)], progress=False)
        seconds = time.perf_counter() - start
        ids = sorted(pid for pid, _ in store.iter_payloads("bench", ["metadata.source"]))
    common.emit({"phase": args.phase, "seconds": seconds, "chunks": report.chunks, "indexed": report.indexed,
                 "failed": len(report.failed), "ids_hash": hashlib.sha256("\n".join(ids).encode()).hexdigest()})


def main() -> None:
    ap = common.folder_bench_parser(__doc__, files=20)
    ap.add_argument("--workers-list", default="1,2", help="worker counts to run through Ray")
    ap.add_argument("--model", default="default", help="model folder (e.g. a 7B model on a GPU machine)")
    args = ap.parse_args()
    if args.phase:
        return phase(args)
    if args.quick:
        args.files = 4
    start = common.header("index_workers", files=args.files, workers=args.workers_list, model=args.model)
    work = Path(tempfile.mkdtemp(prefix="rag-bench-workers-"))
    try:
        docs = common.copy_docs(args.files, work / "docs")
        results = []
        for name in ["local", *(f"ray{n}" for n in args.workers_list.split(","))]:
            r = common.run_child(__file__, ["--phase", name, "--dir", str(docs), "--store", str(work / name),
                                            "--model", args.model])
            print(f"# {name}: {r['seconds']:.1f}s, {r['chunks']} chunks, peak RSS {r['peak_rss_mb']:.0f} MB, "
                  f"loadavg {r['loadavg']}", flush=True)
            results.append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = results[0]
    rows = [{"run": r["phase"], "wall s": r["seconds"], "chunks/s": r["chunks"] / r["seconds"],
             "speed vs local": base["seconds"] / r["seconds"], "driver peak RSS MB": r["peak_rss_mb"],
             "same ids": r["ids_hash"] == base["ids_hash"], "loadavg": r["loadavg"]} for r in results]
    common.table(rows)
    print(f"# {base['chunks']} chunks from {base['indexed']} files; Ray runs include the cluster start and "
          "model loading in each worker; local excludes model loading")
    common.footer(start)


if __name__ == "__main__":
    main()
