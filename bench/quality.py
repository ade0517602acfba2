"""Search quality on real documentation with queries people wrote: model x mode x set.

The sets are built from the installed Debian documentation (:mod:`evaluation.docsets`):
``python-synopsis`` (module synopsis -> its HTML page) and ``kernel-sections`` (section title
-> the section's text). For each set and model it prints MRR@10, nDCG@10, Recall@10/100 of:

- ``doc dense``: each document embedded whole (truncated at the model's max length), exact cosine
  in numpy; ``doc dense (ST)``: the same texts through sentence-transformers' ``encode`` (the
  no-loss check of our path);
- ``chunks ...``: each document cut into the chunks `rag index` stores (same chunker, sizes and
  tokenizer), every query searched over the chunks, documents ranked by their best chunk:
  dense exact (numpy) and dense / sparse / hybrid through the embedded Qdrant engine (HNSW, BM25,
  fusion) as `rag search` runs them; hybrid also with the engine's distribution-based score
  fusion (DBSF) instead of RRF;
- ``fusion grid``: weighted RRF (k, dense and sparse weights) computed offline on the engine's
  dense and sparse chunk rankings, to choose the hybrid default (then checked in the engine).

Embeddings are cached under ``RAG_BENCH_CACHE/quality`` (the first run of a model embeds; reruns
only search). Speed per chunk is measured on a fixed sample of the set's chunks, one torch thread.

    .venv/bin/python bench/quality.py                       # both sets, the default model
    .venv/bin/python bench/quality.py --models default,multilingual-e5-small --json out.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import CACHE, footer, header, quiet_transformers, table

from evaluation.beir import load_beir, write_beir
from evaluation.dense import exact_top_k
from evaluation.docsets import SETS, build
from evaluation.engine import EvalCollection
from evaluation.metrics import compute_metrics, paired_comparison, per_query_metrics
from evaluation.rankings import chunk_dataset, fuse_rrf
from indexer.store import EdgeStore

METRICS = ("mrr@10", "ndcg@10", "recall@10", "recall@100")
CHUNK_DEPTH = 1000          # chunks fetched per query before pooling into documents
SPEED_SAMPLE = 64


#: Set sizes that fit a CPU run (about 20 minutes per small model for both sets).
SIZES = {"python-synopsis": {"max_distractors": 100}, "kernel-sections": {"max_queries": 500, "max_docs": 2000}}
QUICK_SIZES = {"python-synopsis": {"max_distractors": 10}, "kernel-sections": {"max_queries": 60, "max_docs": 200}}


def load_set(name: str, quick: bool) -> object:
    """The set from the cache, built (and cached) at :data:`SIZES` on first use."""
    kwargs = (QUICK_SIZES if quick else SIZES)[name]
    tag = "-".join(f"{k}{v}" for k, v in kwargs.items())
    folder = CACHE / "evalsets" / f"{name}-{tag}"
    if (folder / "queries.jsonl").is_file():
        return load_beir(folder)
    dataset = build(name, **kwargs)
    if quick and name == "python-synopsis":
        keep = dict(list(dataset.queries.items())[:40])
        pages = {d for q in keep for d in dataset.qrels[q]}
        extra = [d for d in dataset.corpus if d not in pages][:10]
        dataset = type(dataset)({d: dataset.corpus[d] for d in list(pages) + extra}, keep,
                                {q: dataset.qrels[q] for q in keep}, name=dataset.name)
    write_beir(folder, dataset)
    return load_beir(folder)


def cached(kind: str, embedder, texts: list[str], fn) -> np.ndarray:
    key = hashlib.sha256(json.dumps([kind, embedder.fingerprint.to_dict(), texts]).encode()).hexdigest()[:20]
    path = CACHE / "quality" / f"{kind}-{key}.npy"
    if path.is_file():
        return np.load(path)
    start = time.perf_counter()
    vecs = fn(texts)
    print(f"  embedded {len(texts)} {kind} texts in {time.perf_counter() - start:.0f}s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


def exact(qids, query_vecs, ids, vecs, k) -> dict[str, list[str]]:
    top, _ = exact_top_k(query_vecs, vecs, k)
    return {q: [ids[i] for i in top[row]] for row, q in enumerate(qids)}


def score(rankings, qrels) -> dict[str, float]:
    return {m: round(v, 4) for m, v in compute_metrics(rankings, qrels, METRICS).items()}


def st_vectors(model_path: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model_path), device="cpu")
    return st.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


def speed(embedder, texts: list[str]) -> float:
    """CPU milliseconds per chunk (process time, one thread), best of two passes."""
    best = float("inf")
    for _ in range(2):
        start = time.process_time()
        embedder.embed_documents(texts)
        best = min(best, time.process_time() - start)
    return 1000 * best / len(texts)


def evaluate_model(name: str, dataset, args, rows: list[dict], fusion_rows: list[dict]) -> None:
    from embedder import Embedder
    from embedder.loading import locate_model
    from indexer.pipeline import chunk_sizes

    embedder = Embedder.from_pretrained(name)
    qids = list(dataset.queries)
    qtexts = [dataset.queries[q] for q in qids]
    qvecs = cached("query", embedder, qtexts, lambda t: embedder.embed_queries(t, task=args.task))

    def row(arm: str, rankings, **extra) -> dict:
        r = {"set": dataset.name, "model": name, "arm": arm, **score(rankings, dataset.qrels), **extra}
        rows.append(r)
        per_query = per_query_metrics(rankings, dataset.qrels, ["mrr@10"])
        r["per_query_mrr@10"] = {q: v["mrr@10"] for q, v in per_query.items()}  # for --compare
        print("  " + "  ".join(f"{k}={v}" for k, v in r.items() if k not in ("set", "model")), flush=True)
        return r

    doc_ids = list(dataset.corpus)
    doc_texts = [dataset.document(d) for d in doc_ids]
    doc_vecs = cached("doc", embedder, doc_texts, embedder.embed_documents)
    row("doc dense", exact(qids, qvecs, doc_ids, doc_vecs, 100))
    if not args.no_st:
        path = locate_model(name).folder
        st_q = cached("st-query", embedder, [embedder.format_query(q, task=args.task) for q in qtexts],
                      lambda t: st_vectors(path, t))
        st_d = cached("st-doc", embedder, [embedder.format_document(t) for t in doc_texts],
                      lambda t: st_vectors(path, t))
        row("doc dense (ST)", exact(qids, st_q, doc_ids, st_d, 100))

    if args.docs_only:
        return
    size, overlap = chunk_sizes(embedder.info, args.chunk_tokens, args.chunk_overlap)
    chunked = chunk_dataset(dataset, embedder.tokenizer, size, overlap,
                            header=chunk_header(dataset, args.chunk_context))
    cids = list(chunked.chunks.corpus)
    ctexts = [chunked.chunks.document(c) for c in cids]
    cvecs = cached("chunk", embedder, ctexts, embedder.embed_documents)
    ms = speed(embedder, ctexts[:: max(1, len(ctexts) // SPEED_SAMPLE)][:SPEED_SAMPLE])
    print(f"  {len(cids)} chunks of {size} tokens; {ms:.1f} CPU ms per chunk", flush=True)
    row("chunks dense exact", chunked.pool(exact(qids, qvecs, cids, cvecs, CHUNK_DEPTH)), ms_per_chunk=round(ms, 1))

    with tempfile.TemporaryDirectory(prefix="rag-quality-") as tmp:
        store = EdgeStore(Path(tmp))
        try:
            with EvalCollection(store, cids, ctexts, cvecs) as coll:
                by_mode = {}
                store.fusion = "rrf"           # the offline grid below recomputes RRF: compare like with like
                for mode in ("dense", "sparse", "hybrid"):
                    by_mode[mode] = coll.rankings(qids, qtexts, qvecs, mode, CHUNK_DEPTH)
                    row(f"chunks {mode}" + (" (rrf)" if mode == "hybrid" else ""), chunked.pool(by_mode[mode]))
                    row(f"chunks {mode}, pooled by rrf", chunked.pool(by_mode[mode], how="rrf"))
                store.fusion = "dbsf"
                row("chunks hybrid (dbsf)", chunked.pool(coll.rankings(qids, qtexts, qvecs, "hybrid", CHUNK_DEPTH)))
        finally:
            store.close()
    for k in (2, 10, 60):
        for wd, ws in ((1, 1), (1, 0.5), (1, 0.25), (0.5, 1)):
            fused = {q: fuse_rrf([by_mode["dense"][q], by_mode["sparse"][q]], k, (wd, ws), CHUNK_DEPTH)
                     for q in qids}
            fusion_rows.append({"set": dataset.name, "model": name, "k": k, "w_dense": wd, "w_sparse": ws,
                                **score(chunked.pool(fused), dataset.qrels)})


def chunk_header(dataset, context: str):
    """What goes before each chunk's text (``--chunk-context``): nothing, the document title, or the
    title and the chunk's section (the headings of the set's HTML pages, as `rag index` stores them)."""
    if context == "none":
        return None
    if context == "title":
        return lambda doc_id, title, chunk: title
    if not dataset.name.startswith("python-synopsis"):
        raise SystemExit(f"--chunk-context section: {dataset.name}'s queries are section titles, so a "
                         "section header would put each query in its answer; use it on python-synopsis")
    from evaluation.docsets import PYTHON_DOCS
    from indexer.extract import extract, section_at

    headings = {}

    def title_and_section(doc_id, title, chunk):
        if doc_id not in headings:
            headings[doc_id] = extract(PYTHON_DOCS / doc_id).headings
        section = section_at(headings[doc_id], chunk.start, chunk.end, title)
        return f"{title} › {section}" if section else title

    return title_and_section


def doc_vectors(name: str, dataset, args):
    """``(embedder, query vectors, doc ids, doc vectors)`` at document level, from the cache."""
    from embedder import Embedder

    embedder = Embedder.from_pretrained(name)
    qtexts = [dataset.queries[q] for q in dataset.queries]
    qvecs = cached("query", embedder, qtexts, lambda t: embedder.embed_queries(t, task=args.task))
    doc_ids = list(dataset.corpus)
    dvecs = cached("doc", embedder, [dataset.document(d) for d in doc_ids], embedder.embed_documents)
    return embedder, qvecs, doc_ids, dvecs


def rerank_arms(dataset, base: str, reranker: str, args, rows: list[dict]) -> None:
    """Whole documents: first stage ``base`` (dense, and hybrid in the engine), its top ``depth``
    re-scored by ``reranker``'s cosine (alone, or fused by RRF with the first-stage order)."""
    _, bq, doc_ids, bd = doc_vectors(base, dataset, args)
    rr, rq, _, rd = doc_vectors(reranker, dataset, args)
    qids = list(dataset.queries)
    qtexts = [dataset.queries[q] for q in qids]
    pos = {d: i for i, d in enumerate(doc_ids)}
    first = {"dense": exact(qids, bq, doc_ids, bd, 100)}
    with tempfile.TemporaryDirectory(prefix="rag-quality-") as tmp:
        store = EdgeStore(Path(tmp))
        try:
            with EvalCollection(store, doc_ids, [dataset.document(d) for d in doc_ids], bd) as coll:
                first["hybrid"] = coll.rankings(qids, qtexts, bq, "hybrid", 100)
        finally:
            store.close()
    for mode, ranking in first.items():
        rows.append({"set": dataset.name, "model": base, "arm": f"doc {mode}", **score(ranking, dataset.qrels)})
        for depth in (10, 20, 50):
            pure, fused = {}, {}
            for row, q in enumerate(qids):
                top = ranking[q][:depth]
                sims = rd[[pos[d] for d in top]] @ rq[row]
                order = [top[i] for i in np.argsort(-sims, kind="stable")]
                pure[q] = order + ranking[q][depth:]
                fused[q] = fuse_rrf([top, order], 2, None, depth) + ranking[q][depth:]
            for how, ranked in (("alone", pure), ("rrf", fused)):
                rows.append({"set": dataset.name, "model": base,
                             "arm": f"doc {mode} -> rerank {reranker} top{depth} {how}",
                             **score(ranked, dataset.qrels)})


def compare(before_file: Path, after_file: Path) -> None:
    """Per arm of two runs' ``--json`` files: MRR@10 before and after, and the paired test over the
    same queries."""
    def arms(path: Path) -> dict:
        return {(r["set"], r["model"], r["arm"]): r for r in json.loads(path.read_text())["rows"]
                if "per_query_mrr@10" in r}

    before, after = arms(before_file), arms(after_file)
    rows = []
    for key in [k for k in before if k in after]:
        a, b = before[key]["per_query_mrr@10"], after[key]["per_query_mrr@10"]
        test = paired_comparison(a, b)
        rows.append({"set": key[0], "model": key[1], "arm": key[2], "before": before[key]["mrr@10"],
                     "after": after[key]["mrr@10"], "delta": test["delta"], "ci95": str(test["ci95"]),
                     "p": test["p_value"], "better": test["better"], "worse": test["worse"]})
    print(f"# MRR@10, {before_file.name} -> {after_file.name}, paired over the same queries")
    table(rows, ["set", "model", "arm", "before", "after", "delta", "ci95", "p", "better", "worse"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--models", default="default")
    ap.add_argument("--task", default="web_search")
    ap.add_argument("--chunk-tokens", type=int, default=256)
    ap.add_argument("--chunk-overlap", type=int, default=32)
    ap.add_argument("--no-st", action="store_true", help="skip the sentence-transformers comparison")
    ap.add_argument("--chunk-context", choices=["none", "title", "section"], default="none",
                    help="before each chunk's text (embedded and BM25): nothing (as `rag index` stores chunks), "
                         "the document title, or the title and the chunk's section (python-synopsis only)")
    ap.add_argument("--docs-only", action="store_true", help="only the whole-document arms (no chunks)")
    ap.add_argument("--quick", action="store_true", help="small subsets (smoke test)")
    ap.add_argument("--rerank", default="", help="BASE>RERANKER pairs, comma-separated: whole-document "
                    "reranking arms (e.g. default>all-mpnet-base-v2)")
    ap.add_argument("--json", type=Path, help="also write the rows (with per-query MRR@10) to this file")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                    help="compare two --json files arm by arm, query by query (paired permutation test), then exit")
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare)
    quiet_transformers()
    import torch

    torch.set_num_threads(1)
    start = header("search quality on real documentation", sets=args.sets, models=args.models,
                   chunk_context=args.chunk_context)
    rows: list[dict] = []
    fusion_rows: list[dict] = []
    for set_name in args.sets.split(","):
        dataset = load_set(set_name, args.quick)
        print(f"{dataset!r}", flush=True)
        doc_ids = list(dataset.corpus)
        with tempfile.TemporaryDirectory(prefix="rag-quality-") as tmp:
            store = EdgeStore(Path(tmp))
            try:
                with EvalCollection(store, doc_ids, [dataset.document(d) for d in doc_ids], None) as coll:
                    qids = list(dataset.queries)
                    sparse = coll.rankings(qids, [dataset.queries[q] for q in qids], None, "sparse", 100)
            finally:
                store.close()
        rows.append({"set": dataset.name, "model": "-", "arm": "doc sparse", **score(sparse, dataset.qrels)})
        for model in filter(None, args.models.split(",")):
            print(f"== {dataset.name} / {model}", flush=True)
            evaluate_model(model, dataset, args, rows, fusion_rows)
        for pair in filter(None, args.rerank.split(",")):
            base, reranker = pair.split(">")
            print(f"== {dataset.name} / {base} reranked by {reranker}", flush=True)
            rerank_arms(dataset, base, reranker, args, rows)
    table([{k: v for k, v in r.items() if not k.startswith("per_query")} for r in rows],
          ["set", "model", "arm", *METRICS, "ms_per_chunk"])
    print()
    table(sorted(fusion_rows, key=lambda r: (r["set"], r["model"], -r["mrr@10"])),
          ["set", "model", "k", "w_dense", "w_sparse", *METRICS])
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "fusion": fusion_rows}, indent=2))
    footer(start)


if __name__ == "__main__":
    main()
