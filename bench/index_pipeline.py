"""End-to-end indexing vs embedding alone, and re-indexing an unchanged folder.

A copy of ``--files`` python-docs pages is indexed with ``Indexer.run`` into a fresh EdgeStore.
Each phase runs in its own interpreter (so peak RSS is per phase; model loading is timed apart):

- ``embed``: extract + chunk every file (timed), then ``embed_documents`` on the same chunks in
  batches of ``IndexSettings.embed_batch``: the embedding-only baseline;
- ``index``: ``Indexer.run`` (walk, hash, parse, embed, BM25, upsert, optimize), once per
  ``--parse-workers`` value (``auto``: ``IndexSettings.parse_workers`` None, processes on a GPU;
  ``0``: threads, the old path; ``N``: N processes), each into a fresh store;
- ``reindex``: ``Indexer.run`` again over the unchanged folder (hash + scroll only).

CPU seconds (this process, all its threads, and its parse processes) are printed next to wall seconds: with one torch
thread they measure the work whatever the machine's load; wall time swings with other processes.

    .venv/bin/python bench/index_pipeline.py [--quick] [--files 40] [--threads 0] [--parse-workers auto,0]
    python bench/index_pipeline.py --model DIR --quantization 4bit --device cuda --files 200   # a GPU
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import common


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (the parse processes, once the run ends)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def phase(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    common.quiet_transformers()
    from embedder import Embedder

    t = time.perf_counter()
    embedder = Embedder.from_pretrained(args.model, quantization=args.quantization, device=args.device,
                                        packing=args.packing)
    # a first packed call compiles the model's blocks where RAG_COMPILE is on (a GPU's default):
    # once per process, like loading, so it is timed apart from both phases
    embedder.embed_documents([f"warm-up text number {i}, " * (i + 1) for i in range(8)])
    load_s = time.perf_counter() - t
    result = {"phase": args.phase, "load_s": load_s, "threads": torch.get_num_threads(),
              "compiled": embedder.compiled}
    from indexer.pipeline import IndexSettings, default_embed_batch

    # the default is by device (IndexSettings.embed_batch None): both phases use the same size
    settings = IndexSettings(embed_batch=args.embed_batch or default_embed_batch(embedder.device.type))
    if args.phase == "embed":
        from indexer.chunking import chunk_text
        from indexer.extract import extract
        from indexer.pipeline import Indexer
        from indexer.walk import walk

        sizer = Indexer(embedder, None, "bench", settings)  # the chunk size the indexer really uses (254 here)
        t = time.perf_counter()
        texts = [c.text for e in walk([args.dir])
                 for c in chunk_text(extract(e.path).text, embedder.tokenizer,
                                     sizer.chunk_tokens, sizer.chunk_overlap)]
        result["parse_s"] = time.perf_counter() - t  # one thread, no model running: wall = CPU
        t, cpu = time.perf_counter(), time.process_time()
        tokens = 0
        for i in range(0, len(texts), settings.embed_batch):
            embedder.embed_documents(texts[i:i + settings.embed_batch])
            tokens += embedder.last_stats.tokens
        result.update(seconds=time.perf_counter() - t, cpu_s=time.process_time() - cpu, chunks=len(texts),
                      tokens=tokens)
    else:
        from dataclasses import replace

        from indexer.parsing import parse_workers
        from indexer.pipeline import Indexer
        from indexer.store import EdgeStore

        requested = None if args.parse_workers == "auto" else int(args.parse_workers)
        settings = replace(settings, parse_workers=requested)
        result["parse_workers"] = parse_workers(requested, embedder.device.type)
        calls: list[tuple[float, float]] = []  # (start, end) of each embedding call
        embed = embedder.embed_documents

        def timed(texts, **kwargs):
            start = time.perf_counter()
            try:
                return embed(texts, **kwargs)
            finally:
                calls.append((start, time.perf_counter()))

        embedder.embed_documents = timed
        with EdgeStore(Path(args.store)) as store:
            cpu = time.process_time() + _children_cpu()
            t = time.perf_counter()
            report = Indexer(embedder, store, "bench", settings).run([Path(args.dir)], progress=False)
            end = time.perf_counter()
            if calls:  # where the model waited: before its first call, between calls, after its last
                busy = sum(b - a for a, b in calls)
                result.update(calls=len(calls), model_busy_s=busy, before_first_s=calls[0][0] - t,
                              after_last_s=end - max(b for _, b in calls),
                              between_s=(max(b for _, b in calls) - calls[0][0]) - busy)
            result.update(seconds=report.seconds, cpu_s=time.process_time() + _children_cpu() - cpu, chunks=report.chunks,
                          indexed=report.indexed, unchanged=report.unchanged, failed=len(report.failed),
                          points=store.count("bench"))
    if torch.cuda.is_available():
        result["gpu_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    common.emit(result)


def _how(workers: int) -> str:
    return "threads" if workers == 0 else f"{workers} process{'es' if workers > 1 else ''}"


def main() -> None:
    ap = common.folder_bench_parser(__doc__, files=40, phases=["embed", "index", "reindex"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads in each phase (0: torch's default, "
                    "as `rag index` runs)")
    ap.add_argument("--model", default="default", help="embedding model (default: the packaged MiniLM)")
    ap.add_argument("--quantization", default="none", choices=["none", "8bit", "4bit"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--embed-batch", type=int, default=0, help="chunks per embedding call, both phases "
                    "(0: IndexSettings' default)")
    ap.add_argument("--packing", default="auto", choices=["auto", "on", "off"], help="Embedder packing")
    ap.add_argument("--phases", default="embed,index,reindex", help="a subset prints the phases' lines only")
    ap.add_argument("--parse-workers", default="auto", help="comma-separated: an index phase per value "
                    "(auto: by device, processes on a GPU; 0: threads; N: N processes); the reindex phase "
                    "uses the first")
    args = ap.parse_args()
    if args.phase:
        return phase(args)
    if args.quick:
        args.files = 4
    start = common.header("index_pipeline", files=args.files, threads=args.threads or "default", model=args.model,
                          quantization=args.quantization, device=args.device, embed_batch=args.embed_batch or "default",
                          packing=args.packing, parse_workers=args.parse_workers)
    work = Path(tempfile.mkdtemp(prefix="rag-bench-index-"))
    try:
        docs = common.copy_docs(args.files, work / "docs")
        size = sum(p.stat().st_size for p in docs.rglob("*") if p.is_file()) / 1e6
        print(f"# {args.files} pages ({size:.1f} MB of HTML) copied to {docs}")
        common_args = ["--dir", str(docs), "--threads", str(args.threads),
                       "--model", args.model, "--quantization", args.quantization, "--device", args.device,
                       "--embed-batch", str(args.embed_batch), "--packing", args.packing]
        values = args.parse_workers.split(",")
        results = {}
        for name in args.phases.split(","):
            for value in values if name == "index" else values[:1]:
                key = f"index parse={value}" if name == "index" else name
                store = work / f"store-{values.index(value) if name == 'index' else 0}"
                results[key] = common.run_child(__file__, ["--phase", name, "--store", str(store),
                                                           "--parse-workers", value, *common_args])
                r = results[key]
                print(f"# {key}: {r['seconds']:.1f}s, {r['chunks']} chunks, load {r['load_s']:.1f}s, "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB, peak GPU {r.get('gpu_peak_gib', '-')} GiB, "
                      f"loadavg {r['loadavg']}" + (f", parse processes {r['parse_workers']}" if name == "index" else "")
                      + (f"; the model ran {r['model_busy_s']:.2f}s in {r['calls']} calls and waited "
                         f"{r['before_first_s']:.2f}s before the first, {r['between_s']:.2f}s between calls, "
                         f"{r['after_last_s']:.2f}s after the last" if "calls" in r else ""),
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    indexes = {k.removeprefix("index parse="): r for k, r in results.items() if k.startswith("index parse=")}
    if not ({"embed", "reindex"} <= set(results) and indexes):
        return common.footer(start)
    emb, re_ = results["embed"], results["reindex"]
    idx = next(iter(indexes.values()))
    if idx["chunks"] != emb["chunks"] or re_["unchanged"] != idx["indexed"] or re_["chunks"]:
        print(f"# WARNING: chunk counts differ: embed {emb['chunks']}, index {idx['chunks']}, "
              f"reindex wrote {re_['chunks']} ({re_['unchanged']} unchanged)", file=sys.stderr)
    nan = float("nan")
    rows = [
        {"phase": "embed only (baseline)", "wall s": emb["seconds"], "chunks/s": emb["chunks"] / emb["seconds"],
         "wall ratio": 1.0, "CPU s": emb["cpu_s"], "CPU ratio": 1.0, "peak RSS MB": emb["peak_rss_mb"],
         "loadavg": emb["loadavg"]},
        {"phase": "extract+chunk only", "wall s": emb["parse_s"], "chunks/s": emb["chunks"] / emb["parse_s"],
         "wall ratio": emb["parse_s"] / emb["seconds"], "CPU s": emb["parse_s"], "CPU ratio": emb["parse_s"] / emb["cpu_s"],
         "peak RSS MB": nan, "loadavg": ""},
        *({"phase": f"Indexer.run, fresh store, parse={value} ({_how(r['parse_workers'])})", "wall s": r["seconds"],
           "chunks/s": r["chunks"] / r["seconds"], "wall ratio": r["seconds"] / emb["seconds"], "CPU s": r["cpu_s"],
           "CPU ratio": r["cpu_s"] / emb["cpu_s"], "peak RSS MB": r["peak_rss_mb"], "loadavg": r["loadavg"]}
          for value, r in indexes.items()),
        {"phase": "Indexer.run, unchanged (vs index)", "wall s": re_["seconds"], "chunks/s": nan,
         "wall ratio": re_["seconds"] / idx["seconds"], "CPU s": re_["cpu_s"], "CPU ratio": re_["cpu_s"] / idx["cpu_s"],
         "peak RSS MB": re_["peak_rss_mb"], "loadavg": re_["loadavg"]},
    ]
    common.table(rows)
    print(f"# {idx['chunks']} chunks from {idx['indexed']} files ({idx['failed']} failed), {idx['points']} points; "
          f"index overhead over embedding = {idx['seconds'] - emb['seconds']:+.1f}s "
          f"(serial extract+embed would be {(emb['parse_s'] + emb['seconds']) / emb['seconds']:.2f}x); "
          f"threads per phase {emb['threads']}; model load + first call {emb['load_s']:.1f}s excluded "
          f"(compiled: {emb.get('compiled')})")
    common.footer(start)


if __name__ == "__main__":
    main()
