"""Does ``Indexer.run`` keep a fast model busy? Parsing overlapped with a GPU-like model.

On a GPU the model is fast and waits for the device without holding the GIL, so the pipeline's
parsing and writing must happen while it waits. This script measures that overlap on any
machine: the packaged model's tokenizer and the real extract / chunk / BM25 / upsert path, with
``embed_documents`` replaced by a model of fixed speed that sleeps ``--ms-per-chunk`` per chunk
(no GIL held, like a CUDA synchronisation) and returns unit vectors. Three runs:

- ``parse+write``: ``--ms-per-chunk 0`` (the pipeline's own work);
- ``model``: the sleep alone (chunks x ms);
- ``index``: both; perfect overlap is max(parse+write, model), no overlap their sum.

    .venv/bin/python bench/index_overlap.py [--files 40] [--ms-per-chunk 10]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import common


def index_once(embedder, docs: Path, store_dir: Path, ms_per_chunk: float, embed_batch: int) -> tuple[float, int]:
    from indexer.pipeline import Indexer, IndexSettings
    from indexer.store import EdgeStore

    def model(texts, show_progress=False):  # noqa: ARG001 - the Embedder signature
        time.sleep(ms_per_chunk / 1000 * len(texts))
        return np.full((len(texts), embedder.dim), embedder.dim ** -0.5, dtype=np.float32)

    embedder.embed_documents = model
    with EdgeStore(store_dir) as store:
        report = Indexer(embedder, store, "bench", IndexSettings(embed_batch=embed_batch)).run([docs], progress=False)
    return report.seconds, report.chunks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--ms-per-chunk", type=float, default=10.0, help="the simulated model's time per chunk")
    ap.add_argument("--embed-batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    common.quiet_transformers()
    start = common.header("index_overlap", files=args.files, ms_per_chunk=args.ms_per_chunk,
                          embed_batch=args.embed_batch)
    from embedder import Embedder

    embedder = Embedder.from_pretrained("default")  # its tokenizer chunks; embed_documents is replaced per run
    work = Path(tempfile.mkdtemp(prefix="rag-bench-overlap-"))
    try:
        docs = common.copy_docs(args.files, work / "docs")
        runs = {"parse+write": [], "index": []}
        chunks = 0
        for i in range(args.repeat):
            for name, ms in (("parse+write", 0.0), ("index", args.ms_per_chunk)):
                seconds, chunks = index_once(embedder, docs, work / f"store-{name}-{i}", ms, args.embed_batch)
                runs[name].append(seconds)
                print(f"# {name}: {seconds:.1f}s ({chunks} chunks), loadavg {common.loadavg()}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    parse, index = min(runs["parse+write"]), min(runs["index"])
    model = chunks * args.ms_per_chunk / 1000
    best, worst = max(parse, model), parse + model
    common.table([
        {"run": "parse+write (model takes 0 ms)", "s": parse, "vs perfect overlap": parse / best},
        {"run": f"model alone ({args.ms_per_chunk:g} ms x {chunks} chunks)", "s": model, "vs perfect overlap": model / best},
        {"run": "Indexer.run", "s": index, "vs perfect overlap": index / best},
        {"run": "no overlap (sum)", "s": worst, "vs perfect overlap": worst / best},
    ])
    print(f"# hidden: {(worst - index) / min(parse, model):.0%} of the shorter side overlapped (100% = perfect)")
    common.footer(start)


if __name__ == "__main__":
    main()
