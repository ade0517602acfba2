"""A chat LLM turned into an embedder: untrained vs fine-tuned decoder vs MiniLM on the real sets.

    python bench/decoder_embedder.py --models default,smollm2-135m,smollm2-135m+ADAPTER_DIR

Each model is ``NAME`` or ``NAME+ADAPTER`` (a folder from ``rag finetune``). Sets: python-synopsis
(module synopsis -> its page) and kernel-sections (section title -> section), built from the
installed Debian docs at a small size (``--docs``/``--queries``). Every query is embedded with the
set's natural instruction (decoders only; MiniLM takes none): ``summary_lookup`` for a synopsis,
``title_lookup`` for a title. Reports MRR@10, nDCG@10 and R@10 per set and model, and the cost of
embedding one document (ms, this machine, whole-document search truncated to ``--max-length``).
Train the adapter on pages that are not in these sets (e.g. ``--exclude 'library/*'``).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from common import CACHE, footer, header, quiet_transformers, table

from embedder import Embedder
from evaluation import docsets
from evaluation.beir import load_beir, write_beir
from evaluation.evaluate import run_eval

SET_TASKS = {"python-synopsis": "summary_lookup", "kernel-sections": "title_lookup"}


def build_sets(n_docs: int, n_queries: int) -> dict:
    sets = {}
    for name in SET_TASKS:
        folder = CACHE / f"decoder-{name}-{n_docs}-{n_queries}"
        if not (folder / "corpus.jsonl").exists():
            if name == "python-synopsis":
                data = docsets.python_synopsis_set(max_distractors=max(0, n_docs - n_queries))
                keep = sorted(data.queries)[:n_queries]
                wanted = {d for q in keep for d in data.qrels[q]}
                others = [d for d in data.corpus if d not in wanted][: max(0, n_docs - len(wanted))]
                data = type(data)({d: data.corpus[d] for d in sorted(wanted) + others},
                                  {q: data.queries[q] for q in keep}, {q: data.qrels[q] for q in keep}, name=name)
            else:
                data = docsets.kernel_sections_set(max_queries=n_queries, max_docs=n_docs)
            write_beir(folder, data)
        sets[name] = load_beir(folder)
    return sets


def load(spec: str, max_length: int) -> Embedder:
    name, _, adapter = spec.partition("+")
    return Embedder.from_pretrained(name, adapter=adapter or None, max_length=max_length)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="default,smollm2-135m")
    parser.add_argument("--docs", type=int, default=300, help="documents per set")
    parser.add_argument("--queries", type=int, default=150, help="queries per set")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_transformers()
    start = header("decoder embedder", models=args.models, docs=args.docs, queries=args.queries,
                   max_length=args.max_length)
    sets = build_sets(args.docs, args.queries)
    rows = []
    for spec in args.models.split(","):
        embedder = load(spec, args.max_length)
        for name, data in sets.items():
            t0 = time.perf_counter()
            embedder.embed_documents([data.document(d) for d in list(data.corpus)[:32]])
            ms_per_doc = (time.perf_counter() - t0) * 1000 / min(32, len(data.corpus))
            result = run_eval(embedder, data, "dense", task=SET_TASKS[name] if embedder.spec.instructed else None)
            m = result["metrics"]
            rows.append({"model": spec.replace(str(CACHE), "CACHE"), "set": name, "queries": result["n_queries"],
                         "docs": result["n_docs"], "mrr@10": round(m["mrr@10"], 4), "ndcg@10": round(m["ndcg@10"], 4),
                         "recall@10": round(m["recall@10"], 4), "ms/doc": round(ms_per_doc, 1),
                         "seconds": result["seconds"]})
            print(json.dumps(rows[-1]), flush=True)
        del embedder
    table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    footer(start)


if __name__ == "__main__":
    main()
