"""Does ``Indexer.run`` keep a fast model busy? Parsing overlapped with a GPU-like model.

On a GPU the model is fast and waits for the device without holding the GIL, but its thread must
take the GIL back for every kernel it launches (a 7B decoder: ~800 per 16k-token batch). So the
pipeline's parsing and writing must happen while the model waits, without slowing the launches.
This script measures that on any machine: the packaged model's tokenizer and the real extract /
chunk / BM25 / upsert path, with ``embed_documents`` replaced by a GPU-like model that, per call,
tokenizes the texts (as ``Embedder.encode`` does), launches ``--launch-ops`` tiny torch CPU ops
per 16k tokens (each releases and retakes the GIL, as a kernel launch does) and waits until
``--ms-per-chunk`` x chunks have passed since the call began (the GPU's time; no GIL held), then
returns unit vectors. A call thus takes the longer of its launches and the device time, as on a
GPU. Runs, per ``--parse-workers`` value (0 = threads), alternating:

- ``parse+write``: no model time, no launches (the pipeline's own work);
- ``model alone``: the model's calls on the same chunks, in calls of ``--embed-batch``;
- ``index``: both; perfect overlap is max(parse+write, model), no overlap their sum.

    .venv/bin/python bench/index_overlap.py [--files 40] [--ms-per-chunk 6.7] [--parse-workers 0,2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import common

#: Kernel launches of a 7B decoder's forward per 16k-token batch (as measured on an H100 / H200).
LAUNCHES_PER_16K = 800


def gpu_like_model(embedder, ms_per_chunk: float, launch_ops: float):
    """``embed_documents`` of a model of fixed device speed whose launches need the GIL."""
    import torch

    tiny = torch.zeros(4)

    def model(texts, show_progress=False):  # noqa: ARG001 - the Embedder signature
        deadline = time.perf_counter() + ms_per_chunk / 1000 * len(texts)
        tokens = sum(len(ids) for ids in embedder.tokenize([embedder.format_document(t) for t in texts]))
        for _ in range(round(launch_ops * tokens / 16384)):
            torch.add(tiny, 1.0)  # releases the GIL in the dispatcher, takes it back to return
        time.sleep(max(0.0, deadline - time.perf_counter()))
        return np.full((len(texts), embedder.dim), embedder.dim ** -0.5, dtype=np.float32)

    return model


def index_once(embedder, docs: Path, store_dir: Path, model, embed_batch: int, workers: int) -> tuple[float, int]:
    from indexer.pipeline import Indexer, IndexSettings
    from indexer.store import EdgeStore

    embedder.embed_documents = model
    with EdgeStore(store_dir) as store:
        extra = {"parse_workers": workers} if hasattr(IndexSettings, "parse_workers") else {}  # older code: threads
        settings = IndexSettings(embed_batch=embed_batch, **extra)
        report = Indexer(embedder, store, "bench", settings).run([docs], progress=False)
    return report.seconds, report.chunks


def model_alone(embedder, docs: Path, model, embed_batch: int) -> tuple[float, int]:
    """The model's calls on the chunks ``Indexer.run`` writes (parsed first, untimed)."""
    from indexer.pipeline import Indexer, IndexSettings
    from indexer.walk import walk

    preparer = Indexer(embedder, None, "bench", IndexSettings(embed_batch=embed_batch)).preparer
    texts = [p.text for e in walk([docs]) for p in preparer.prepare(e, None).points]
    t = time.perf_counter()
    for i in range(0, len(texts), embed_batch):
        model(texts[i:i + embed_batch])
    return time.perf_counter() - t, len(texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--ms-per-chunk", type=float, default=6.7,
                    help="the simulated device time per chunk (6.7: a 7B decoder, bf16, on an H200)")
    ap.add_argument("--launch-ops", type=float, default=LAUNCHES_PER_16K,
                    help="tiny torch ops per 16k tokens of a call (kernel launches; 0: none)")
    ap.add_argument("--embed-batch", type=int, default=256, help="chunks per embedding call (256: as on a GPU)")
    ap.add_argument("--parse-workers", default="0", help="comma-separated IndexSettings.parse_workers "
                    "values to compare (0: threads), run alternately")
    ap.add_argument("--dim", type=int, default=0, help="vector size the simulated model returns and the store "
                    "holds (0: the packaged model's 384; 4096: a 7B decoder's, whose writes and HNSW build cost more)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # the ops are tiny; the model's process is not the point
    common.quiet_transformers()
    configs = [int(w) for w in args.parse_workers.split(",")]
    start = common.header("index_overlap", files=args.files, ms_per_chunk=args.ms_per_chunk,
                          launch_ops=args.launch_ops, embed_batch=args.embed_batch, parse_workers=args.parse_workers,
                          dim=args.dim or "model")
    from embedder import Embedder

    embedder = Embedder.from_pretrained("default")  # its tokenizer chunks; embed_documents is replaced per run
    if args.dim:  # the fingerprint, the collection and the simulated vectors take this size
        embedder.__class__ = type("Sized", (Embedder,), {"dim": property(lambda self: args.dim)})
    model = gpu_like_model(embedder, args.ms_per_chunk, args.launch_ops)
    idle = gpu_like_model(embedder, 0.0, 0.0)
    work = Path(tempfile.mkdtemp(prefix="rag-bench-overlap-"))
    runs: dict[str, list[float]] = {"model": []}
    try:
        docs = common.copy_docs(args.files, work / "docs")
        chunks = 0
        for i in range(args.repeat):
            seconds, chunks = model_alone(embedder, docs, model, args.embed_batch)
            runs["model"].append(seconds)
            print(f"# model alone: {seconds:.1f}s ({chunks} chunks), loadavg {common.loadavg()}", flush=True)
            for w in configs:
                for name, fn in (("parse+write", idle), ("index", model)):
                    key = f"{name} w={w}"
                    seconds, chunks = index_once(embedder, docs, work / f"store-{key}-{i}", fn, args.embed_batch, w)
                    runs.setdefault(key, []).append(seconds)
                    print(f"# {key}: {seconds:.1f}s ({chunks} chunks), loadavg {common.loadavg()}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    model_s = min(runs["model"])
    rows = [{"run": f"model alone ({chunks} chunks)", "s": model_s, "vs model alone": 1.0, "vs perfect overlap": ""}]
    for w in configs:
        parse, index = min(runs[f"parse+write w={w}"]), min(runs[f"index w={w}"])
        best = max(parse, model_s)
        how = "threads" if w == 0 else f"{w} process{'es' if w > 1 else ''}"
        rows += [
            {"run": f"parse+write, {how}", "s": parse, "vs model alone": parse / model_s, "vs perfect overlap": parse / best},
            {"run": f"Indexer.run, {how}", "s": index, "vs model alone": index / model_s, "vs perfect overlap": index / best},
        ]
        print(f"# {how}: {(parse + model_s - index) / min(parse, model_s):.0%} of the shorter side overlapped "
              "(100% = perfect)")
    common.table(rows)
    common.footer(start)


if __name__ == "__main__":
    main()
