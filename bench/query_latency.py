"""Query latency (embed the query + search), upsert time and peak RSS: Qdrant Edge vs qdrant-client local.

Corpus points carry REAL chunk texts (python-docs chunks, 256 tokens; the 15,240 distinct chunks
are repeated to reach 100k), real payloads (make_payload) and BM25 vectors, but RANDOM unit dense
vectors (dim 384): embedding 100k chunks takes hours here, and the cost of a dense search does
not depend on the vectors' values. Recall is not measured. Queries are real questions embedded
with the real model (all-MiniLM-L6-v2), as ``Searcher.search`` does. Each backend x size runs in
its own interpreter (peak RSS per run); Edge runs ``build_index`` (HNSW) before querying.
qdrant-client local mode uses ``QdrantClient(path=...)`` up to ``--local-path-max`` points and
``QdrantClient(":memory:")`` above: path= commits SQLite once per point (~100-200 points/s here,
so 100k would take 10-20 min), while its search runs on the same in-memory arrays either way.
Local mode's queries are capped at 100k (``--local-max-queries-100k``).

    .venv/bin/python bench/query_latency.py [--quick] [--sizes 10000,100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import common

DIM = 384


def open_store(backend: str, folder: Path, in_memory: bool):
    from indexer.store import EdgeStore, QdrantClientStore

    if backend == "edge":
        return EdgeStore(folder)
    from qdrant_client import QdrantClient

    return QdrantClientStore(QdrantClient(":memory:") if in_memory else QdrantClient(path=str(folder)))


def phase(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    common.quiet_transformers()
    from embedder import Embedder
    from indexer.collection import collection_meta
    from indexer.store import Point, make_payload

    embedder = Embedder.from_pretrained("default")
    texts = common.doc_chunks(args.size, embedder.tokenizer)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.size, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    points = [Point(id=str(uuid.UUID(int=i + 1)), dense=vectors[i], text=t,
                    payload=make_payload(t, source=f"/docs/page{i // 30}.html", root="/docs",
                                         chunk_index=i % 30, chunk_count=30, start=0, end=len(t),
                                         title=f"page {i // 30}", file_type="html", mtime=1.7e9,
                                         content_hash="0" * 16))
              for i, t in enumerate(texts)]
    del vectors
    rss_before = common.peak_rss_mb()
    in_memory = args.backend == "local" and args.size > args.local_path_max
    store = open_store(args.backend, Path(args.store), in_memory)
    store.create_collection("bench", DIM, collection_meta(embedder.fingerprint, 256, 32))
    upsert_s, _ = common.timed(lambda: store.upsert("bench", points))
    build_s, _ = common.timed(lambda: store.build_index("bench"))
    assert store.count("bench") == args.size
    del points

    queries = [common.QUERIES[i % len(common.QUERIES)] for i in range(args.queries)]
    embed_ms, search_ms, total_ms = {}, {}, {}
    for mode in ("dense", "hybrid"):
        e, s = [], []
        for i, q in enumerate([*queries[:3], *queries]):  # 3 warm-up queries
            t0 = time.perf_counter()
            vec = embedder.encode([embedder.format_query(q)])[0].tolist()  # as Searcher.search
            t1 = time.perf_counter()
            hits = store.search("bench", dense=vec, text=q, mode=mode, k=10)
            t2 = time.perf_counter()
            assert len(hits) == 10
            if i >= 3:
                e.append((t1 - t0) * 1e3)
                s.append((t2 - t1) * 1e3)
        embed_ms[mode], search_ms[mode] = e, s
        total_ms[mode] = [a + b for a, b in zip(e, s)]
    store.close()
    common.emit({"backend": args.backend + (" :memory:" if in_memory else ""), "size": args.size, "upsert_s": upsert_s, "build_s": build_s,
                 "rss_before_store_mb": rss_before, "queries": args.queries,
                 **{f"{m}_{k}": v for m in total_ms for k, v in
                    (("total", total_ms[m]), ("embed", embed_ms[m]), ("search", search_ms[m]))}})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000 points, 20 queries (smoke test)")
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=200, help="queries per mode")
    ap.add_argument("--local-max-queries-100k", type=int, default=30, dest="local_cap",
                    help="cap on queries per mode for qdrant-client local mode at >= 50k points")
    ap.add_argument("--local-path-max", type=int, default=20_000, dest="local_path_max",
                    help="above this many points, local mode runs in :memory: instead of path= "
                         "(path= commits SQLite once per point: ~100-200 points/s here)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for query embedding (0: default)")
    ap.add_argument("--backend", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.backend:
        return phase(args)
    if args.quick:
        args.sizes, args.queries = "2000", 20
    sizes = [int(s) for s in args.sizes.split(",")]
    start = common.header("query_latency", sizes=sizes, queries=args.queries, threads=args.threads or "default",
                          dense="random unit vectors (dim 384)", texts="real python-docs chunks")
    results = []
    for size in sizes:
        for backend in ("edge", "local"):
            n = args.queries if backend == "edge" or size < 50_000 else min(args.queries, args.local_cap)
            folder = Path(tempfile.mkdtemp(prefix=f"rag-bench-{backend}-"))
            try:
                r = common.run_child(__file__, ["--backend", backend, "--size", str(size), "--store",
                                                str(folder / "store"), "--queries", str(n),
                                                "--threads", str(args.threads),
                                                "--local-path-max", str(args.local_path_max)])
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            results.append(r)
            print(f"# {r['backend']} {size}: upsert {r['upsert_s']:.1f}s, build_index {r['build_s']:.1f}s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB (before store {r['rss_before_store_mb']:.0f} MB), "
                  f"{n} queries/mode, loadavg {r['loadavg']}", flush=True)

    rows = []
    edge = {r["size"]: r for r in results if r["backend"] == "edge"}
    names = {"edge": "Qdrant Edge", "local": "client local path=", "local :memory:": "client local :memory:"}
    for r in results:
        e = edge[r["size"]]
        for mode in ("dense", "hybrid"):
            p50 = common.percentile(r[f"{mode}_total"], 50)
            rows.append({
                "backend": names[r["backend"]],
                "points": r["size"], "mode": mode, "n": len(r[f"{mode}_total"]),
                "p50 ms": p50, "p95 ms": common.percentile(r[f"{mode}_total"], 95),
                "search p50": common.percentile(r[f"{mode}_search"], 50),
                "search p95": common.percentile(r[f"{mode}_search"], 95),
                "embed p50": common.percentile(r[f"{mode}_embed"], 50),
                "search/embed": common.percentile(r[f"{mode}_search"], 50) / common.percentile(r[f"{mode}_embed"], 50),
                "p50 vs Edge": p50 / common.percentile(e[f"{mode}_total"], 50),
            })
    common.table(rows)
    common.table([{"backend": names[r["backend"]], "points": r["size"], "upsert s": r["upsert_s"],
                   "points/s": r["size"] / r["upsert_s"], "upsert vs Edge": r["upsert_s"] / edge[r["size"]]["upsert_s"],
                   "build_index s": r["build_s"], "peak RSS MB": r["peak_rss_mb"],
                   "RSS over model+points MB": r["peak_rss_mb"] - r["rss_before_store_mb"],
                   "loadavg": r["loadavg"]} for r in results])
    common.footer(start)


if __name__ == "__main__":
    main()
