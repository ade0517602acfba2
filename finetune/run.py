"""The fine-tuning loop as steps over a work folder, each resumable and rerunnable on its own.

The files of the work folder, and which step writes each, are in :mod:`finetune.workfolder`; the
adapter folder (``<adapter>/``) holds the LoRA adapter, ``rag_adapter.json``, ``training_card.json``
and ``README.md``.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from embedder import Embedder
from evaluation.beir import BeirDataset, load_beir, write_beir
from evaluation.dense import dense_rankings
from evaluation.metrics import mean_metrics, paired_comparison, per_query_metrics
from indexer.collection import stored_chunk_context
from indexer.jsonl import read_jsonl, write_jsonl
from indexer.store.payload import embedded_text

from .generate import LLM_TASKS, QUERY_TASKS, QueryGenerator, generate_queries
from .plots import LOSS_PNG, SCATTER_PNG, before_after_plot, loss_plot
from .refine import (
    Dropped,
    Example,
    RefineReport,
    dedupe_queries,
    drop_malformed,
    drop_repetitive_passages,
    filter_false_positives,
    mine_hard_negatives,
    normalize_text,
)
from .structure import collect_sections, title_pairs
from .train import TrainConfig, train_adapter
from .workfolder import WorkFolder

logger = logging.getLogger(__name__)


def load_passages(workdir: Path) -> dict[str, str]:
    return WorkFolder(workdir).passages()


def load_pages(workdir: Path) -> dict[str, str]:
    """Passage id -> the page it comes from (itself when passages carry no page)."""
    return WorkFolder(workdir).pages()


def _examples(rows: list[dict]) -> list[Example]:
    return [Example(r["query"], r["positive_id"], r["task"], r.get("hard_negative_ids", [])) for r in rows]


def _rows(examples: list[Example]) -> list[dict]:
    return [{**asdict(ex), "instruction_task": QUERY_TASKS[ex.task].instruction_task} for ex in examples]


def _embed(embedder: Embedder, examples: list[Example], passages: dict[str, str]):
    """Query vectors (each with its task's instruction) and passage vectors."""
    ids = list(passages)
    p_vecs = embedder.embed_documents([passages[i] for i in ids], show_progress=True)
    q_vecs = np.zeros((len(examples), p_vecs.shape[1]), dtype=np.float32)
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_task[QUERY_TASKS[ex.task].instruction_task].append(i)
    for task, rows in by_task.items():
        q_vecs[rows] = embedder.embed_queries([examples[i].query for i in rows], task=task)
    return q_vecs, p_vecs, ids


# -- steps ------------------------------------------------------------------------------------------
def step_sample(workdir: Path, store, collection: str, n: int, *, seed: int = 0, min_words: int = 20) -> int:
    """Write ``n`` random chunks of ``collection`` in ``store`` (a :class:`~indexer.store.VectorStore`)
    as the passages to write queries for, skipping chunks of fewer than ``min_words`` words. A
    passage is the text the collection embedded (after the title where its ``chunk_context`` says)."""
    context = stored_chunk_context(store.collection_meta(collection) or {})
    rows = [(pid, p.get("page_content", ""), (p.get("metadata") or {}).get("title") or "")
            for pid, p in store.iter_payloads(collection, ["page_content", "metadata.title"])]
    rows = [(pid, embedded_text(text, title, context)) for pid, text, title in rows if len(text.split()) >= min_words]
    if not rows:
        raise ValueError(f"Collection {collection!r} has no chunks of {min_words}+ words: index documents first.")
    random.Random(seed).shuffle(rows)
    WorkFolder(workdir).write("passages", [{"_id": pid, "text": text} for pid, text in sorted(rows[:n])])
    return min(n, len(rows))


def step_generate(workdir: Path, generator: QueryGenerator, tasks=LLM_TASKS, progress=True) -> int:
    """Write queries for every passage (resumes where a previous run stopped)."""
    folder = WorkFolder(workdir)
    written = generate_queries(generator, folder.passages(), folder.file("generated"), tasks, progress)
    folder.update_report("generated", len(folder.read("generated")))
    return written


def step_structure(workdir: Path, docs: Path, *, max_pages: int | None = None, min_words: int = 30,
                   exclude: tuple[str, ...] = ()) -> int:
    """Write passages (the sections under ``docs``) and queries (their headings): no LLM.

    ``exclude``: glob patterns of pages (paths under ``docs``) to leave out.
    """
    sections = collect_sections(docs, min_words=min_words, max_pages=max_pages, exclude=exclude)
    pairs = title_pairs(sections)
    if not pairs:
        raise ValueError(f"{docs} gave no (heading, section) pair: it needs .rst/.md/.html files whose "
                         f"sections have {min_words}+ words under a unique heading of 2+ words.")
    WorkFolder(workdir).write("passages", [{"_id": s.id, "text": s.text, "page": s.page} for s in sections])
    WorkFolder(workdir).write("generated", pairs)
    WorkFolder(workdir).update_report("generated", len(pairs))
    WorkFolder(workdir).update_report("structure", {"docs": str(docs), "pages": len({s.page for s in sections}),
                                          "sections": len(sections), "pairs": len(pairs)})
    return len(pairs)


def drop_prompt_copies(examples: list[Example], report: RefineReport) -> list[Example]:
    """Drop queries that repeat one of the prompt's worked examples (a small LLM's habit)."""
    shown = {normalize_text(text) for task in QUERY_TASKS.values() for pair in task.examples for text in pair}
    kept = [ex for ex in examples if normalize_text(ex.query) not in shown]
    dropped = [Dropped(ex, "copied_prompt_example") for ex in examples if normalize_text(ex.query) in shown]
    report.record("drop_prompt_copies", len(examples), len(kept), dropped)
    return kept


def step_refine(workdir: Path, embedder: Embedder | None, top_k: int = 10, dedupe: bool = True) -> RefineReport:
    """Drop repetitive passages, malformed, prompt-copied and duplicate queries, and false positives.

    ``top_k=0`` skips the false-positive filter (pairs true by construction, or an ablation) and
    needs no ``embedder`` (None); ``dedupe=False`` keeps near-duplicate queries (ablation).
    """
    report = RefineReport()
    passages, _ = drop_repetitive_passages(load_passages(workdir), report=report)
    examples = [ex for ex in _examples(WorkFolder(workdir).read("generated")) if ex.positive_id in passages]
    examples, _ = drop_malformed(examples, passages, report=report)
    examples = drop_prompt_copies(examples, report)
    if dedupe:
        examples, _ = dedupe_queries(examples, report=report)
    WorkFolder(workdir).write("screened", _rows(examples))
    if examples and top_k > 0:
        q_vecs, p_vecs, ids = _embed(embedder, examples, passages)
        examples, _ = filter_false_positives(examples, q_vecs, p_vecs, ids, top_k=top_k, report=report)
    WorkFolder(workdir).write("refined", _rows(examples))
    WorkFolder(workdir).update_report("refine", report.steps)
    logger.info("refined: %d examples kept", len(examples))
    return report


def step_mine(workdir: Path, embedder: Embedder, n_negatives: int = 3, margin: float | None = 0.95) -> int:
    """Add hard negatives to each refined example, skipping likely false negatives (``margin=None``: no guard)."""
    passages = load_passages(workdir)
    examples = _examples(WorkFolder(workdir).read("refined"))
    report = RefineReport()
    q_vecs, p_vecs, ids = _embed(embedder, examples, passages)
    mined, _ = mine_hard_negatives(examples, q_vecs, p_vecs, ids, n_negatives=n_negatives, margin=margin,
                                   passages=passages, report=report)
    WorkFolder(workdir).write("mined", _rows(mined))
    WorkFolder(workdir).update_report("mine", report.steps)
    return len(mined)


def step_split(workdir: Path, heldout_fraction: float = 0.2, seed: int = 0) -> tuple[int, int]:
    """Hold out a random fraction of pages (of passages, when passages carry no page): their screened
    queries are the test set, the mined examples of the other pages the training set (no page is in
    both, and no training negative comes from a held-out page)."""
    folder = WorkFolder(workdir)
    rows, screened = folder.read("mined"), folder.read("screened")
    page_of = load_pages(workdir)
    pages = sorted({page_of.get(r["positive_id"], r["positive_id"]) for r in screened})
    random.Random(seed).shuffle(pages)
    held_pages = set(pages[: max(1, round(len(pages) * heldout_fraction))])
    held = {pid for pid, page in page_of.items() if page in held_pages}
    rows = [{**r, "hard_negative_ids": [n for n in r.get("hard_negative_ids", []) if n not in held]} for r in rows]
    train = [r for r in rows if r["positive_id"] not in held]
    test = [r for r in screened if r["positive_id"] in held]
    folder.write("train", train)
    passages = load_passages(workdir)
    queries = {f"q{i}": r["query"] for i, r in enumerate(test)}
    dataset = BeirDataset(corpus={pid: ("", text) for pid, text in passages.items()}, queries=queries,
                          qrels={f"q{i}": {r["positive_id"]: 1} for i, r in enumerate(test)}, name="heldout")
    write_beir(folder.heldout, dataset)
    write_jsonl(folder.heldout / "tasks.jsonl", [{"_id": f"q{i}", "task": r["instruction_task"]}
                                                       for i, r in enumerate(test)])
    WorkFolder(workdir).update_report("split", {"train": len(train), "heldout": len(test), "heldout_pages": len(held_pages)})
    return len(train), len(test)


def evaluate_heldout(embedder: Embedder, workdir: Path) -> dict[str, dict[str, float]]:
    """Per-query nDCG@10 etc. on the held-out queries, each embedded with its own task instruction."""
    heldout = WorkFolder(workdir).need_heldout()
    dataset = load_beir(heldout)
    task_of = {r["_id"]: r["task"] for r in read_jsonl(heldout / "tasks.jsonl")}
    rankings: dict[str, list[str]] = {}
    for task in sorted(set(task_of.values())):
        subset = BeirDataset(dataset.corpus, {q: t for q, t in dataset.queries.items() if task_of.get(q) == task},
                             {q: r for q, r in dataset.qrels.items() if task_of.get(q) == task})
        if subset.queries:
            rankings.update(dense_rankings(embedder, subset, k=100, task=task))
    return per_query_metrics(rankings, dataset.qrels)


def _means(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    return {m: round(v, 4) for m, v in mean_metrics(per_query).items()}


def compare_heldout(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict:
    """Means before and after, and for nDCG@10 and MRR@10 whether the change is real (paired tests)."""
    return {"before": _means(before), "after": _means(after),
            "significance": {m: paired_comparison({q: v[m] for q, v in before.items()},
                                                  {q: v[m] for q, v in after.items()})
                             for m in ("ndcg@10", "mrr@10")}}


def step_train(workdir: Path, embedder: Embedder, adapter_dir: Path, config: TrainConfig = TrainConfig(),
               progress: bool = True) -> dict:
    """Train the adapter; evaluate before and after on the held-out split; write the training card."""
    passages = load_passages(workdir)
    examples = WorkFolder(workdir).read("train")
    before = evaluate_heldout(embedder, workdir)
    result = train_adapter(embedder, examples, passages, adapter_dir, config, progress=progress)
    after = evaluate_heldout(embedder, workdir)
    evaluation = compare_heldout(before, after)
    plots = [loss_plot(result.losses, adapter_dir / LOSS_PNG).name,
             before_after_plot(before, after, adapter_dir / SCATTER_PNG).name]
    report = WorkFolder(workdir).update_report("train", {"steps": result.steps, "seconds": result.seconds,
                                               "first_loss": result.losses[:5], "last_loss": result.losses[-5:]})
    report = WorkFolder(workdir).update_report("eval", evaluation)
    card = {"base_model": embedder.spec.name, "base_model_id": embedder.fingerprint.model_id,
            "train_config": asdict(config), "data": {k: report.get(k) for k in
                                                   ("generated", "refine", "mine", "split")},
            "eval_heldout": evaluation, "training": report["train"], "losses": result.losses, "plots": plots}
    (adapter_dir / "training_card.json").write_text(json.dumps(card, indent=2))
    (adapter_dir / "README.md").write_text(_card_markdown(card))
    return card


def _card_markdown(card: dict) -> str:
    before, after = card["eval_heldout"]["before"], card["eval_heldout"]["after"]
    lines = [f"# LoRA adapter for {card['base_model']}", "",
             f"Base weights id: `{card['base_model_id']}`. Load with `RAG_ADAPTER=<this folder>`.", "",
             "## Held-out evaluation (generated queries on held-out passages)", "",
             "| metric | before | after |", "|---|---|---|"]
    lines += [f"| {m} | {before[m]:.4f} | {after[m]:.4f} |" for m in before]
    lines += ["", "Paired over the same queries (permutation test p-value, 95 % bootstrap interval of the change):", ""]
    lines += [f"- {m}: {s['delta']:+.4f} [{s['ci95'][0]:+.4f}, {s['ci95'][1]:+.4f}], p = {s['p_value']:.4f}; "
              f"{s['better']} queries better, {s['worse']} worse of {s['queries']}"
              for m, s in card["eval_heldout"]["significance"].items()]
    lines += ["", *[f"![{name}]({name})" for name in card.get("plots", [])]]
    lines += ["", "## Data", "", "```json", json.dumps(card["data"], indent=2), "```", "",
              "## Hyper-parameters", "", "```json", json.dumps(card["train_config"], indent=2), "```", ""]
    return "\n".join(lines)
