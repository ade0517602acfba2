"""``rag eval``: retrieval metrics on a BEIR-format folder, wired to :mod:`evaluation`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from indexer.collection import DEFAULT_CHUNK_CONTEXT
from indexer.modes import MODES

from ..settings import Settings


def add_eval_parser(sub, common) -> None:
    """Register ``eval`` on the subparsers ``sub``; ``common`` adds the settings flags."""
    p = sub.add_parser("eval", help="retrieval metrics on a BEIR-format folder")
    p.add_argument("dataset", type=Path)
    p.add_argument("--split", default="test")
    p.add_argument("--mode", choices=MODES, help="default: RAG_MODE (hybrid)")
    p.add_argument("--task", help="named instruction for the queries")
    p.add_argument("--instruction", help="custom instruction text")
    p.add_argument("--chunks", action="store_true",
                   help="cut documents into chunks as `rag index` does, search the chunks in the store, "
                        "rank documents by their best chunk (RAG_CHUNK_TOKENS / RAG_CHUNK_OVERLAP)")
    p.add_argument("--rerank", action=argparse.BooleanOptionalAction, default=None,
                   help="re-score the top RAG_RERANK_DEPTH candidates with RAG_RERANK_MODEL, as "
                        "`rag search --rerank` does (default: RAG_RERANK)")
    p.add_argument("--json", action="store_true")
    common(p)
    # `rag eval` widens the common --quantization setting to a list of precisions to compare
    quant = next(a for a in p._actions if a.dest == "quantization")
    quant.dest, quant.choices, quant.metavar = "precisions", None, "LIST"
    quant.help = ("one precision, or several to compare in one run (none,8bit,4bit; bitsandbytes, 8bit/4bit "
                  "also on a CPU): each one's metrics and its paired change vs the first")


def cmd_eval(args, settings: Settings) -> int:
    from evaluation.beir import load_beir
    from evaluation.evaluate import run_eval

    from ..factories import build_embedder, build_reranker

    dataset = load_beir(args.dataset, split=args.split)
    precisions = [q.strip() for q in (args.precisions or "").split(",") if q.strip()]
    bad = [q for q in precisions if q not in PRECISIONS]
    if bad:
        raise SystemExit(f"--quantization {args.precisions!r}: choose from {', '.join(PRECISIONS)}, "
                         "comma-separated (e.g. none,8bit,4bit).")
    if len(precisions) > 1:
        return _eval_precisions(args, settings, dataset, precisions)
    if precisions:
        settings = settings.model_copy(update={"quantization": precisions[0]})
    mode = args.mode or settings.mode
    rerank = settings.rerank if args.rerank is None else args.rerank
    embedder = None if mode == "sparse" and not args.chunks else build_embedder(settings)
    chunks = (settings.chunk_tokens, settings.chunk_overlap) if args.chunks else None
    result = run_eval(embedder, dataset, mode=mode, task=args.task or settings.task,
                      instruction=args.instruction or settings.instruction, chunks=chunks,
                      reranker=build_reranker(settings) if rerank else None,
                      chunk_context=settings.chunk_context or DEFAULT_CHUNK_CONTEXT)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{dataset.name or args.dataset}: {result['n_queries']} queries, {result['n_docs']} documents, "
          f"mode {mode}, ranked by {'best chunk' if args.chunks else 'whole document'}"
          f"{f', reranked by {settings.rerank_model} (top {settings.rerank_depth})' if rerank else ''}, "
          f"{result['seconds']:.1f}s")
    for name, value in result["metrics"].items():
        print(f"  {name:<11} {value:.4f}")
    return 0


PRECISIONS = ("none", "8bit", "4bit")


def _eval_precisions(args, settings: Settings, dataset, precisions: list[str]) -> int:
    """One evaluation per precision, each paired with the first (the reference) query by query."""
    from evaluation.evaluate import run_eval
    from evaluation.metrics import paired_comparison

    from ..factories import build_embedder

    mode = args.mode or settings.mode
    results: dict[str, dict] = {}
    for q in precisions:
        embedder = build_embedder(settings.model_copy(update={"quantization": q}))
        results[q] = run_eval(embedder, dataset, mode=mode, task=args.task or settings.task,
                              instruction=args.instruction or settings.instruction, per_query=True)
        del embedder
    ref = precisions[0]
    out = {"dataset": dataset.name or str(args.dataset), "mode": mode, "reference": ref, "precisions": {}}
    for q, r in results.items():
        vs = {m: paired_comparison({k: v[m] for k, v in results[ref]["per_query"].items()},
                                   {k: v[m] for k, v in r["per_query"].items()})
              for m in ("ndcg@10", "mrr@10")} if q != ref else {}
        out["precisions"][q] = {"metrics": r["metrics"], "seconds": r["seconds"], f"vs_{ref}": vs,
                                "loaded_as": (r["model"] or {}).get("quantization")}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['dataset']}: {len(dataset.queries)} queries, {len(dataset.corpus)} documents, mode {mode}, "
          f"model {settings.model}; change vs {ref} paired over the same queries")
    print(f"  {'precision':<10} {'ndcg@10':>8} {'mrr@10':>8} {'recall@10':>9}   change of nDCG@10 [95 % CI], p")
    for q, r in out["precisions"].items():
        m = r["metrics"]
        s = r[f"vs_{ref}"].get("ndcg@10")
        change = f"{s['delta']:+.4f} [{s['ci95'][0]:+.4f}, {s['ci95'][1]:+.4f}], p = {s['p_value']:.3f}" if s else "(reference)"
        print(f"  {q:<10} {m['ndcg@10']:>8.4f} {m['mrr@10']:>8.4f} {m['recall@10']:>9.4f}   {change}")
    return 0
