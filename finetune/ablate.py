"""Ablation of the refinement recipe: each step switched off in turn, on the same data and seeds.

Linq-Embed-Mistral argues for each of its refinements (false-positive filter, false-negative
margin when mining, dedupe, task-homogeneous batches, mixed tasks, hard negatives) without an
ablation. :func:`run_ablation` runs the loop once per arm, from the same ``passages.jsonl`` and
``generated.jsonl``, and scores every arm on one held-out set (the full recipe's, held out by
page), so each arm's change against the full recipe is paired query by query::

    workdir/ablation/<arm>/           the arm's refine/mine/split files and its adapter
    workdir/ablation/ablation.json    per arm: held-out means, change vs full (95 % CI, p-value)
    workdir/ablation/ablation.md      the same as a table
    workdir/ablation/ablation.png     the change of nDCG@10 per arm with its interval
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.beir import load_beir

from .plots import ABLATION_PNG
from .workfolder import WorkFolder

if TYPE_CHECKING:  # the CLI reads ARM_NAMES without loading torch
    from embedder import Embedder

    from .train import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arm:
    """One ablation arm: which refinement step it switches off."""

    name: str
    description: str
    false_positive_filter: bool = True
    false_negative_margin: bool = True
    dedupe: bool = True
    batching: str = "task"
    mixed_tasks: bool = True
    hard_negatives: bool = True


FULL = Arm("full", "the full recipe")
ARMS: tuple[Arm, ...] = (
    FULL,
    Arm("no_false_positive_filter", "no false-positive filter", false_positive_filter=False),
    Arm("no_false_negative_margin", "no false-negative margin when mining", false_negative_margin=False),
    Arm("no_dedupe", "no near-duplicate removal", dedupe=False),
    Arm("random_batches", "random instead of task-homogeneous batches", batching="random"),
    Arm("single_task", "the most frequent task only", mixed_tasks=False),
    Arm("no_hard_negatives", "in-batch negatives only", hard_negatives=False),
)
ARM_NAMES = tuple(a.name for a in ARMS)


def _prepare(arm_dir: Path, workdir: Path) -> None:
    arm_dir.mkdir(parents=True, exist_ok=True)
    source = WorkFolder(workdir)
    for path in (source.file("passages"), source.file("generated"), source.report_file):
        if path.exists():
            shutil.copy(path, arm_dir / path.name)


def _heldout_passages(split_dir: Path) -> set[str]:
    """Every passage of the pages that the split at ``split_dir`` held out."""
    from . import run

    page_of = run.load_pages(split_dir)
    positives = {pid for rels in load_beir(WorkFolder(split_dir).need_heldout()).qrels.values() for pid in rels}
    pages = {page_of[pid] for pid in positives}
    return {pid for pid, page in page_of.items() if page in pages}


def _train_rows(arm: Arm, arm_dir: Path, held: set[str]) -> list[dict]:
    """The arm's training examples, none of whose positives or negatives is a held-out passage."""
    rows = [{**r, "hard_negative_ids": [n for n in r.get("hard_negative_ids", []) if n not in held]}
            for r in WorkFolder(arm_dir).read("train") if r["positive_id"] not in held]
    if not arm.mixed_tasks and rows:
        top = Counter(r["instruction_task"] for r in rows).most_common(1)[0][0]
        rows = [r for r in rows if r["instruction_task"] == top]
    return rows


def run_ablation(workdir: Path, base: "Embedder", fresh: Callable[[], "Embedder"], config: "TrainConfig",
                 *, arms: tuple[Arm, ...] = ARMS, top_k: int = 10, negatives: int = 3, margin: float = 0.95,
                 heldout_fraction: float = 0.2, progress: bool = True) -> dict:
    """Run every arm; return ``{"arms": {name: {...}}, "heldout": n}`` and write the files above.

    ``base`` embeds for the filter and the mining (never trained); ``fresh()`` gives an untrained
    embedder per arm (training wraps its model in place). ``top_k=0`` means the data has no
    false-positive filter in any arm (structure pairs).
    """
    from evaluation.metrics import paired_comparison

    from . import run
    from .plots import ablation_plot
    from .train import train_adapter

    if not arms or arms[0].name != "full":
        raise ValueError("the first arm must be 'full': every other arm is compared with it.")
    out = workdir / "ablation"
    out.mkdir(parents=True, exist_ok=True)
    common = out / "full"
    per_query: dict[str, dict] = {}
    results: dict[str, dict] = {}
    held: set[str] = set()
    for arm in arms:
        arm_dir = out / arm.name
        _prepare(arm_dir, workdir)
        run.step_refine(arm_dir, base, top_k=top_k if arm.false_positive_filter else 0, dedupe=arm.dedupe)
        run.step_mine(arm_dir, base, n_negatives=negatives, margin=margin if arm.false_negative_margin else None)
        run.step_split(arm_dir, heldout_fraction=heldout_fraction, seed=config.seed)
        if arm.name == "full":
            held = _heldout_passages(common)
            logger.info("ablation: held-out set of %d passages", len(held))
        rows = _train_rows(arm, arm_dir, held)
        embedder = fresh()
        arm_config = replace(config, batching=arm.batching, hard_negatives=config.hard_negatives if arm.hard_negatives else 0)
        result = train_adapter(embedder, rows, run.load_passages(arm_dir), arm_dir / "adapter", arm_config,
                               progress=progress)
        per_query[arm.name] = run.evaluate_heldout(embedder, common)
        if arm.name == "full":
            _full_card(run, base, embedder, common, arm_config, result)
        results[arm.name] = {"description": arm.description, "train_examples": len(rows), "steps": result.steps,
                             "seconds": result.seconds, "heldout": run._means(per_query[arm.name])}
        del embedder
    for name in results:
        results[name]["vs_full"] = {m: paired_comparison({q: v[m] for q, v in per_query["full"].items()},
                                                         {q: v[m] for q, v in per_query[name].items()})
                                    for m in ("ndcg@10", "mrr@10")} if name != "full" else {}
    report = {"arms": results, "heldout_queries": len(per_query["full"]), "train_config": asdict(config)}
    (out / "ablation.json").write_text(json.dumps(report, indent=2))
    (out / "ablation.md").write_text(ablation_markdown(report))
    ablation_plot(report, out / "ablation.png")
    for name in ("ablation.json", "ablation.md", "ablation.png"):   # beside the full recipe's training card
        shutil.copy(out / name, common / "adapter" / name)
    return report


def _full_card(run, base: "Embedder", tuned: "Embedder", split_dir: Path, config: "TrainConfig", result) -> None:
    """The full recipe's training card and plots, as `rag finetune train` writes them (the ablation goes beside)."""
    from .plots import LOSS_PNG, SCATTER_PNG, before_after_plot, loss_plot

    adapter = split_dir / "adapter"
    before, after = run.evaluate_heldout(base, split_dir), run.evaluate_heldout(tuned, split_dir)
    plots = [loss_plot(result.losses, adapter / LOSS_PNG).name,
             before_after_plot(before, after, adapter / SCATTER_PNG).name]
    card = {"base_model": base.spec.name, "base_model_id": base.fingerprint.model_id,
            "train_config": asdict(config), "data": {"split": WorkFolder(split_dir).report()
                                                     .get("split")},
            "eval_heldout": run.compare_heldout(before, after), "training": {"steps": result.steps,
                                                                          "seconds": result.seconds},
            "losses": result.losses, "plots": plots + [ABLATION_PNG]}
    (adapter / "training_card.json").write_text(json.dumps(card, indent=2))
    (adapter / "README.md").write_text(run._card_markdown(card))


def ablation_markdown(report: dict) -> str:
    """The ablation as a Markdown table: one row per arm, change vs the full recipe."""
    lines = [f"# Ablation of the refinement recipe ({report['heldout_queries']} held-out queries)", "",
             "| arm | train examples | nDCG@10 | change vs full [95 % CI] | p | MRR@10 | change vs full [95 % CI] | p |",
             "|---|---|---|---|---|---|---|---|"]
    for name, arm in report["arms"].items():
        cells = [name, str(arm["train_examples"])]
        for m in ("ndcg@10", "mrr@10"):
            cells.append(f"{arm['heldout'][m]:.4f}")
            s = arm["vs_full"].get(m)
            cells += ([f"{s['delta']:+.4f} [{s['ci95'][0]:+.4f}, {s['ci95'][1]:+.4f}]", f"{s['p_value']:.3f}"]
                      if s else ["(reference)", ""])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
