"""``rag finetune ...``: argument wiring over :mod:`finetune`."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from finetune.ablate import ARM_NAMES

from ..settings import Settings


def add_finetune_parser(sub, common) -> None:
    """Register ``finetune`` and its steps on the subparsers ``sub``; ``common`` adds the settings flags."""
    p = sub.add_parser("finetune", help="fine-tune a LoRA adapter on your own collection")
    steps = p.add_subparsers(dest="step", required=True)
    for name, text in [("generate", "sample chunks and write synthetic queries with a local LLM"),
                       ("refine", "drop malformed, duplicate and false-positive queries"),
                       ("mine", "add hard negatives (with a false-negative guard)"),
                       ("train", "split, train the LoRA adapter, evaluate before/after"),
                       ("run", "all of the above"),
                       ("ablate", "rerun refine/mine/train with each refinement step switched off in turn "
                                  "(after generate); table and plot of each arm's held-out change")]:
        s = steps.add_parser(name, help=text)
        s.add_argument("--workdir", type=Path, help="work folder (default: DATA_DIR/finetune/COLLECTION)")
        if name in ("generate", "run"):
            s.add_argument("--pairs", choices=("generated", "structure"), default="generated",
                           help="generated: an LLM writes queries for sampled chunks of the collection; "
                                "structure: heading -> section pairs from the files under --docs (no LLM)")
            s.add_argument("--docs", type=Path, help="--pairs structure: folder of .rst/.md/.html files")
            s.add_argument("--max-pages", type=int, help="--pairs structure: read at most this many pages")
            s.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                           help="--pairs structure: skip pages matching GLOB (e.g. those of an evaluation set); repeatable")
            s.add_argument("--passages", type=int, default=200, help="chunks to sample (default 200)")
            s.add_argument("--generator", default="smollm2", help="chat model folder/.gguf, or smollm2")
            s.add_argument("--tasks", default="question,keywords,claim", help="query types")
            s.add_argument("--gen-batch", type=int, default=8)
        if name in ("refine", "run", "ablate"):
            s.add_argument("--top-k", type=int, help="false-positive filter: keep a query whose positive ranks in "
                                                     "the top k (default 10; 0 = off, the default for --pairs structure)")
        if name in ("mine", "run", "ablate"):
            s.add_argument("--negatives", type=int, default=3)
            s.add_argument("--margin", type=float, default=0.95, help="skip candidates above margin x positive")
        if name in ("train", "run", "ablate"):
            s.add_argument("--out", type=Path, help="adapter folder (default: WORKDIR/adapter)")
            s.add_argument("--heldout", type=float, default=0.2, help="fraction of passages held out")
            s.add_argument("--epochs", type=int, default=1)
            s.add_argument("--batch-size", type=int, default=16)
            s.add_argument("--lr", type=float, default=2e-4)
            s.add_argument("--temperature", type=float, default=0.02)
            s.add_argument("--lora-r", type=int, default=8)
            s.add_argument("--target-modules", default="all-linear",
                           help="LoRA targets: all-linear, or comma-separated module names (q_proj,v_proj)")
            s.add_argument("--max-steps", type=int)
            s.add_argument("--init-adapter", type=Path,
                           help="continue training this adapter (a second stage: e.g. refined queries after "
                                "--pairs structure); its LoRA shape is kept")
            if name == "ablate":
                s.add_argument("--arms", help="comma-separated arms (default: all): " + ", ".join(ARM_NAMES))
            s.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                           help="recompute activations in the backward pass (less memory, ~30%% slower; "
                                "off suits small models on a CPU)")
        s.add_argument("--json", action="store_true")
        common(s)


def _targets(value: str) -> str | tuple[str, ...]:
    return value if value == "all-linear" else tuple(v.strip() for v in value.split(",") if v.strip())


def _structure_pairs(workdir: Path) -> bool:
    """Whether the work folder's queries are headings (true by construction: no false-positive filter)."""
    from finetune.workfolder import WorkFolder

    return "structure" in WorkFolder(workdir).report()


def cmd_finetune(args, settings: Settings) -> int:
    from embedder import Embedder
    from finetune import run
    from finetune.generate import QueryGenerator

    workdir = args.workdir or settings.data_dir / "finetune" / settings.collection
    workdir.mkdir(parents=True, exist_ok=True)
    out: dict = {"workdir": str(workdir)}
    structure = getattr(args, "pairs", "generated") == "structure"
    if structure:
        if args.docs is None:
            raise SystemExit("--pairs structure reads headings from files: pass --docs FOLDER.")
        out["generated_now"] = run.step_structure(workdir, args.docs, max_pages=args.max_pages,
                                                  exclude=tuple(args.exclude))
    elif args.step in ("generate", "run"):
        from finetune.workfolder import WorkFolder

        if not WorkFolder(workdir).has("passages"):
            from ..factories import build_store

            store = build_store(settings)
            try:
                run.step_sample(workdir, store, settings.collection, args.passages)
            finally:
                store.close()
        generator = QueryGenerator.from_pretrained(args.generator, batch_size=args.gen_batch)
        out["generated_now"] = run.step_generate(workdir, generator, args.tasks.split(","), progress=not args.json)
        del generator
    config = replace(settings.embedder_config(), compile=False)  # trained on: eager
    if getattr(args, "init_adapter", None) is not None:
        config = replace(config, adapter=None)  # the adapter is trained on, not merged into the base
    embedder = Embedder.from_config(config) if args.step != "generate" else None
    if args.step in ("refine", "run"):
        top_k = args.top_k if args.top_k is not None else (0 if _structure_pairs(workdir) else 10)
        out["refine"] = run.step_refine(workdir, embedder, top_k=top_k).steps
    if args.step in ("mine", "run"):
        out["mined"] = run.step_mine(workdir, embedder, n_negatives=args.negatives, margin=args.margin)
    if args.step == "ablate":
        return _ablate(args, settings, workdir, embedder)
    if args.step in ("train", "run"):
        out["split"] = run.step_split(workdir, heldout_fraction=args.heldout)
        config = _train_config(args)
        adapter = args.out or workdir / "adapter"
        card = run.step_train(workdir, embedder, adapter, config, progress=not args.json)
        out.update(adapter=str(adapter), eval=card["eval_heldout"])
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"work folder {workdir}")
        for key, value in out.items():
            if key != "workdir":
                print(f"  {key}: {json.dumps(value)}")
        if "eval" in out:
            print(f"use it: RAG_ADAPTER={out['adapter']} rag index PATH --recreate")
    return 0


def _train_config(args):
    from finetune.train import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                       temperature=args.temperature, lora_r=args.lora_r, lora_alpha=2 * args.lora_r,
                       max_steps=args.max_steps, target_modules=_targets(args.target_modules),
                       gradient_checkpointing=args.gradient_checkpointing,
                       init_adapter=str(args.init_adapter) if args.init_adapter else None)


def _ablate(args, settings: Settings, workdir: Path, base) -> int:
    from embedder import Embedder
    from finetune.ablate import ARMS, run_ablation

    wanted = set(args.arms.split(",")) if args.arms else set(ARM_NAMES)
    unknown = wanted - set(ARM_NAMES)
    if unknown:
        raise SystemExit(f"Unknown ablation arm(s) {sorted(unknown)}; choose from {', '.join(ARM_NAMES)}.")
    arms = tuple(a for a in ARMS if a.name == "full" or a.name in wanted)
    top_k = args.top_k if args.top_k is not None else (0 if _structure_pairs(workdir) else 10)
    report = run_ablation(workdir, base, lambda: Embedder.from_config(replace(settings.embedder_config(), compile=False)),
                          _train_config(args), arms=arms, top_k=top_k, negatives=args.negatives,
                          margin=args.margin, heldout_fraction=args.heldout, progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from finetune.ablate import ablation_markdown

    print(ablation_markdown(report))
    print(f"table and plot: {workdir / 'ablation'} (ablation.md, ablation.png)")
    return 0
