"""Fine-tuning on a documentation corpus, measured on queries people wrote: before and after, per set.

    python bench/finetune_real.py --model default --workdir W --json out.json
    python bench/finetune_real.py --model smollm2-135m --max-length 512 --lora-r 32 --workdir W

What runs, with the product's own steps (`rag finetune`'s ``finetune.run``):

1. Evaluation sets (``--sets DIR``: one BEIR folder per set, as ``python -m evaluation.docsets``
   writes them; default: python-synopsis and kernel-sections built from the installed Debian docs
   at bench/quality.py's sizes).
2. Training pairs from the documentation's own structure (``--pairs structure``: each heading ->
   its section, no LLM), from ``--docs DIR`` (default: the Python docs' reST sources and the kernel
   HTML docs). The pages that a set's *queries* point to can be left out with
   ``--exclude-query-pages SET=PREFIX`` (the kernel set's queries are section headings: its pages
   must stay out, default ``kernel-sections=kernel``). The Python synopses never appear as headings,
   so the Python pages stay in: a user fine-tunes on the corpus they then search, with queries the
   training never saw.
3. refine (the model-free filters), mine (hard negatives with the false-negative margin), split,
   train (LoRA, InfoNCE), then every set again with the adapter: MRR@10, nDCG@10 and R@10 per set
   and mode before and after, the change with its 95 % bootstrap interval and the paired
   permutation test's p-value (``evaluation.metrics.paired_comparison``).

``--adapter DIR`` (repeatable) skips all of that and scores adapters trained before, e.g. on a GPU
machine, against the base model on the same sets. Each corpus is embedded once per model for every
mode (dense: exact search in numpy; hybrid: a temporary collection of the embedded store).

Steps already done in the work folder are not redone (``W/data``: structure and refine, model-free;
``W/<model tag>``: mine, split, adapter), so a run prepared on one machine can train on another.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from common import CACHE, footer, header, quiet_transformers, table

from embedder import Embedder
from evaluation import docsets
from evaluation.beir import BeirDataset, load_beir, write_beir
from evaluation.dense import exact_top_k
from evaluation.engine import EvalCollection
from evaluation.metrics import mean_metrics, paired_comparison, per_query_metrics
from finetune import run as steps
from finetune.plots import LOSS_PNG, loss_plot
from finetune.train import TrainConfig, train_adapter
from finetune.workfolder import WorkFolder
from indexer.store import EdgeStore

logger = logging.getLogger("bench.finetune_real")
#: The instruction each set's queries are embedded with (instructed models only).
SET_TASKS = {"python-synopsis": "summary_lookup", "kernel-sections": "title_lookup"}
#: bench/quality.py's sizes, so the "before" rows match its table.
SET_SIZES = {"python-synopsis": {"max_distractors": 100}, "kernel-sections": {"max_queries": 500, "max_docs": 2000}}
SHOWN = ("mrr@10", "ndcg@10", "recall@10")
#: The model-free files a model's work folder starts from.
DATA_FILES = ("passages", "generated", "screened", "refined")


def debian_sets(folder: Path) -> Path:
    for name, sizes in SET_SIZES.items():
        if not (folder / name / "corpus.jsonl").exists():
            write_beir(folder / name, docsets.build(name, **sizes))
    return folder


def debian_docs(folder: Path) -> Path:
    """A folder of links: ``python/`` (the reST sources) and ``kernel/`` (the HTML docs)."""
    sources = {"python": (docsets.PYTHON_DOCS / "_sources", "python3.11-doc"),
               "kernel": (docsets.KERNEL_DOCS, "linux-doc-6.1")}
    for name, (source, package) in sources.items():
        if not source.is_dir():
            raise SystemExit(f"{source} is missing: install the Debian package {package}, or pass --docs FOLDER.")
        target = folder / name
        if not target.exists():
            target.mkdir(parents=True)
            for path in source.rglob("*"):
                rel = path.relative_to(source)
                if rel.parts[0].startswith("_"):
                    continue  # Sphinx's _sources (the same pages again), _static, _images
                link = target / rel
                if path.is_dir():
                    link.mkdir(parents=True, exist_ok=True)
                else:
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(path)
    return folder


def query_page_globs(sets: dict[str, BeirDataset], spec: list[str]) -> list[str]:
    """``SET=PREFIX`` -> ``PREFIX/<page>`` for the page of each of that set's relevant documents."""
    globs = []
    for item in spec:
        name, _, prefix = item.partition("=")
        if name not in sets:
            raise SystemExit(f"--exclude-query-pages {item}: no set called {name!r} (sets: {', '.join(sets)}).")
        pages = {doc.split("#")[0] for rel in sets[name].qrels.values() for doc in rel}
        globs += [f"{prefix}/{page}" if prefix else page for page in sorted(pages)]
    return globs


def prepare_data(data: Path, docs: Path, exclude: list[str], max_pages: int | None) -> dict:
    """Structure pairs and the model-free refine step, once for every model."""
    folder = WorkFolder(data)
    if not folder.has("generated"):
        steps.step_structure(data, docs, max_pages=max_pages, exclude=tuple(exclude))
    if not folder.has("refined"):
        steps.step_refine(data, None, top_k=0)  # pairs true by construction: no false-positive filter
    return folder.report()


def evaluate(embedder: Embedder, sets: dict[str, BeirDataset], modes: list[str], tasks: dict[str, str]) -> dict:
    """Per set and mode: metrics and per-query metrics. Each corpus is embedded once for every mode:
    dense is exact search in numpy, sparse and hybrid run in a temporary collection of the embedded store."""
    out = {}
    for name, data in sets.items():
        task = tasks.get(name) if embedder.spec.instructed else None
        doc_ids, qids = list(data.corpus), list(data.queries)
        texts = [data.document(d) for d in doc_ids]
        vectors = embedder.embed_documents(texts)
        query_vecs = embedder.embed_queries([data.queries[q] for q in qids], task=task)
        for mode in modes:
            if mode == "dense":
                top, _ = exact_top_k(query_vecs, vectors, 100)
                rankings = {q: [doc_ids[i] for i in top[row]] for row, q in enumerate(qids)}
            else:
                with tempfile.TemporaryDirectory() as tmp, EdgeStore(Path(tmp)) as store, \
                        EvalCollection(store, doc_ids, texts, vectors) as collection:
                    rankings = collection.rankings(qids, [data.queries[q] for q in qids], query_vecs, mode)
            per_query = per_query_metrics(rankings, data.qrels)
            out[(name, mode)] = {"metrics": mean_metrics(per_query), "per_query": per_query,
                                 "n_queries": len(qids), "n_docs": len(doc_ids)}
            logger.info("%s %s: %s", name, mode, {m: round(v, 4) for m, v in out[(name, mode)]["metrics"].items()})
    return out


def compare(before: dict, after: dict) -> list[dict]:
    rows = []
    for (name, mode), b in before.items():
        a = after[(name, mode)]
        row = {"set": name, "mode": mode, "queries": b["n_queries"], "docs": b["n_docs"]}
        for m in SHOWN:
            row[f"{m} before"], row[f"{m} after"] = round(b["metrics"][m], 4), round(a["metrics"][m], 4)
        for m in ("mrr@10", "ndcg@10"):
            s = paired_comparison({q: v[m] for q, v in b["per_query"].items()},
                                  {q: v[m] for q, v in a["per_query"].items()})
            row[f"{m} change"] = f"{s['delta']:+.4f} [{s['ci95'][0]:+.4f}, {s['ci95'][1]:+.4f}]"
            row[f"{m} p"] = s["p_value"]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="packaged name or model folder")
    parser.add_argument("--tag", help="name of the model's work folder (default: from the model and settings)")
    parser.add_argument("--workdir", type=Path, default=CACHE / "finetune-real")
    parser.add_argument("--sets", type=Path, help="folder of BEIR sets (default: built from the Debian docs)")
    parser.add_argument("--docs", type=Path, help="training docs folder (default: Python + kernel Debian docs)")
    parser.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="pages to leave out")
    parser.add_argument("--exclude-query-pages", action="append", metavar="SET=PREFIX",
                        help="leave out the pages of SET's queries, as PREFIX/<page> (default: kernel-sections=kernel)")
    parser.add_argument("--max-pages", type=int)
    parser.add_argument("--modes", default="dense,hybrid")
    parser.add_argument("--tasks", default=",".join(f"{k}={v}" for k, v in SET_TASKS.items()),
                        help="SET=TASK: the instruction of each set's queries (instructed models)")
    parser.add_argument("--max-length", type=int)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--temperature", type=float, default=0.02)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--negatives", type=int, default=1, help="hard negatives per query in training")
    parser.add_argument("--heldout", type=float, default=0.05, help="fraction of pages held out (synthetic check)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--synthetic-eval", action="store_true",
                        help="also score the held-out synthetic queries before/after (the training card's figures)")
    parser.add_argument("--init-adapter", type=Path, help="continue training this adapter (a second stage)")
    parser.add_argument("--adapter", type=Path, action="append",
                        help="score this adapter (trained before, e.g. on another machine) against the base; "
                             "repeatable; no training")
    parser.add_argument("--prepare-only", action="store_true",
                        help="build the sets and the model-free data, then stop (to train elsewhere)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_transformers()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    config = TrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size,
                         learning_rate=args.lr, temperature=args.temperature, lora_r=args.lora_r,
                         lora_alpha=2 * args.lora_r, hard_negatives=args.negatives, checkpoint_every=10**9,
                         init_adapter=str(args.init_adapter) if args.init_adapter else None)
    tag = args.tag or re.sub(r"[^A-Za-z0-9.-]+", "-", f"{Path(args.model).name}-r{args.lora_r}-lr{args.lr}"
                                                       f"-t{args.temperature}-e{args.epochs}")
    start = header("fine-tuning on real queries", model=args.model, tag=tag, max_length=args.max_length,
                   **{k: v for k, v in vars(config).items() if k in ("epochs", "batch_size", "learning_rate",
                                                                   "temperature", "lora_r", "hard_negatives")})
    sets_dir = args.sets or debian_sets(CACHE / "finetune-real-sets")
    sets = {p.name: load_beir(p) for p in sorted(sets_dir.iterdir()) if (p / "corpus.jsonl").exists()}
    tasks = dict(item.split("=", 1) for item in args.tasks.split(",") if item)
    query_pages = args.exclude_query_pages
    if query_pages is None:
        query_pages = ["kernel-sections=kernel"] if "kernel-sections" in sets else []
    exclude = args.exclude + query_page_globs(sets, query_pages)
    modes = args.modes.split(",")

    settings = {"max_length": args.max_length} if args.max_length else {}
    if args.adapter:  # trained elsewhere: evaluate the base model, then the base with each adapter
        embedder = Embedder.from_pretrained(args.model, **settings)
        before = evaluate(embedder, sets, modes, tasks)
        scored = []
        for adapter in args.adapter:
            tuned = Embedder.from_pretrained(args.model, adapter=str(adapter), **settings)
            rows = compare(before, evaluate(tuned, sets, modes, tasks))
            print(f"## {adapter}")
            table(rows)
            scored.append({"adapter": str(adapter), "sets": rows})
        if args.json:
            args.json.write_text(json.dumps({"model": args.model, "max_length": embedder.max_length,
                                             "adapters": scored}, indent=2))
        footer(start)
        return
    data_report = prepare_data(args.workdir / "data", args.docs or debian_docs(CACHE / "finetune-real-docs"),
                               exclude, args.max_pages)
    print(json.dumps({"sets": {k: repr(v) for k, v in sets.items()}, "excluded globs": len(exclude),
                      **{k: data_report.get(k) for k in ("structure", "refine")}}, indent=1))
    if args.prepare_only:
        return
    embedder = Embedder.from_pretrained(args.model, **settings)
    t0 = time.perf_counter()
    work = args.workdir / tag
    work.mkdir(parents=True, exist_ok=True)
    source, target = WorkFolder(args.workdir / "data"), WorkFolder(work)
    for path in [source.file(name) for name in DATA_FILES] + [source.report_file]:
        if not (work / path.name).exists():
            shutil.copy(path, work / path.name)
    before = evaluate(embedder, sets, modes, tasks)
    if not target.has("mined"):
        steps.step_mine(work, embedder)
    steps.step_split(work, heldout_fraction=args.heldout)
    adapter = work / "adapter"
    if args.synthetic_eval:  # the product's own step: the card also scores the held-out synthetic queries
        card = steps.step_train(work, embedder, adapter, config)
        train, synthetic = card["training"], card["eval_heldout"]
    else:  # the sets below are the measure; skip scoring every passage twice more
        examples = target.read("train")
        done = train_adapter(embedder, examples, steps.load_passages(work), adapter, config)
        loss_plot(done.losses, adapter / LOSS_PNG)
        train = {"steps": done.steps, "seconds": done.seconds, "first_loss": done.losses[:5],
                 "last_loss": done.losses[-5:]}
        synthetic = None
    after = evaluate(embedder, sets, modes, tasks)
    rows = compare(before, after)
    table(rows)
    result = {"model": args.model, "tag": tag, "max_length": embedder.max_length, "adapter": str(adapter),
              "data": {k: data_report.get(k) for k in ("structure", "refine")},
              "split": target.report().get("split"),
              "train": train, "train_config": asdict(config), "synthetic_heldout": synthetic, "sets": rows,
              "seconds": round(time.perf_counter() - t0, 1), "device": str(embedder.device)}
    print(json.dumps({k: result[k] for k in ("train", "synthetic_heldout", "split")}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    footer(start)


if __name__ == "__main__":
    main()
