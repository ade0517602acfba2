"""LoRA training of an embedder with InfoNCE on refined synthetic data.

The base model is wrapped with a peft LoRA adapter (4-bit base = QLoRA when the embedder was
loaded in 4-bit on a GPU); queries are embedded with their task instruction and documents
without, exactly as at search time (``Embedder.embed_with_grad``). Checkpoints are written
every ``checkpoint_every`` steps; a rerun resumes from the last one.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from embedder import Embedder, EmbedderError
from embedder.loading import ADAPTER_BASE_FILE, check_adapter

from .losses import info_nce, task_homogeneous_batches

logger = logging.getLogger(__name__)

#: How training examples are grouped into batches.
BATCHINGS = ("task", "random")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters (recorded in the adapter's training card)."""

    epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 2e-4
    temperature: float = 0.02
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    # "all-linear": every linear layer (E5-Mistral trained q,k,v,o and the MLP); or module names
    target_modules: str | tuple[str, ...] = "all-linear"
    hard_negatives: int = 1                         # mined negatives per query used in training (0: in-batch only)
    batching: str = "task"                          # "task": task-homogeneous batches; "random": mixed (ablation)
    warmup_ratio: float = 0.1
    gradient_checkpointing: bool = True
    checkpoint_every: int = 50
    max_steps: int | None = None
    seed: int = 0
    # continue training this adapter (its LoRA shape wins over lora_r/alpha/targets): a second stage,
    # e.g. refined synthetic queries after structure pairs, as E5's fine-tuning follows its weak stage
    init_adapter: str | None = None


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0


def _lora(embedder: Embedder, config: TrainConfig):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = embedder.model
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.init_adapter:
        return _continued(model, Path(config.init_adapter), embedder.fingerprint.model_id)
    targets = config.target_modules if isinstance(config.target_modules, str) else list(config.target_modules)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets)
    return get_peft_model(model, lora)


def _continued(model, adapter_dir: Path, base_id: str):
    """``model`` wrapped with the trainable adapter of ``adapter_dir``, refused if trained on another base."""
    from peft import PeftModel

    try:
        check_adapter(adapter_dir, base_id)
    except EmbedderError as exc:
        raise ValueError(f"--init-adapter: {exc}") from None
    logger.info("continuing training of adapter %s", adapter_dir)
    return PeftModel.from_pretrained(model, adapter_dir, is_trainable=True)


def _texts(embedder: Embedder, batch: list[dict], passages: dict[str, str], negatives: int):
    queries = [embedder.format_query(ex["query"], task=ex["instruction_task"]) for ex in batch]
    positives = [ex["positive_id"] for ex in batch]
    negs = [nid for ex in batch for nid in ex.get("hard_negative_ids", [])[:negatives] if nid not in positives]
    docs = [embedder.format_document(passages[pid]) for pid in positives + negs]
    return queries, docs


def _latest_checkpoint(out_dir: Path) -> Path | None:
    ckpts = sorted((out_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return ckpts[-1] if ckpts else None


def train_adapter(embedder: Embedder, examples: list[dict], passages: dict[str, str], out_dir: Path,
                  config: TrainConfig = TrainConfig(), progress: bool = True,
                  on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train a LoRA adapter on ``examples`` (query, positive_id, instruction_task, hard_negative_ids).

    Writes the adapter (``adapter_config.json``, weights, ``rag_adapter.json``) to ``out_dir``.
    ``embedder.model`` is wrapped in place: afterwards ``embedder`` embeds with the adapter.
    """
    from peft import set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(config.seed)
    random.seed(config.seed)
    base_id = embedder.fingerprint.model_id
    model = _lora(embedder, config)
    embedder.model = model
    if config.batching not in BATCHINGS:
        raise ValueError(f"batching={config.batching!r}; choose one of: {', '.join(BATCHINGS)}.")
    task_of = (lambda ex: ex["instruction_task"]) if config.batching == "task" else (lambda ex: "")
    batches = [b for epoch in range(config.epochs) for b in task_homogeneous_batches(
        examples, task_of, config.batch_size, seed=config.seed + epoch)]
    total = min(len(batches), config.max_steps or len(batches))
    if total == 0:
        raise ValueError(f"No training batch: {len(examples)} examples with batch_size={config.batch_size} "
                         "(each batch needs 2+ examples of one task). Generate more queries.")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * total), total)

    result = TrainResult(steps=0, seconds=0.0)
    ckpt = _latest_checkpoint(out_dir)
    if ckpt is not None:
        state = torch.load(ckpt / "trainer.pt", weights_only=False)
        set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        result.losses, result.resumed_from = state["losses"], state["step"]
        torch.set_rng_state(state["torch_rng"])  # dropout masks continue as if never stopped
        logger.info("resuming training from %s (step %d of %d)", ckpt, state["step"], total)

    model.train()
    start = time.perf_counter()
    bar = tqdm(total=total, initial=result.resumed_from, desc="training", unit="step", disable=not progress)
    for step in range(result.resumed_from, total):
        queries, docs = _texts(embedder, batches[step], passages, config.hard_negatives)
        loss = info_nce(embedder.embed_with_grad(queries), embedder.embed_with_grad(docs), config.temperature)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        result.losses.append(round(loss.item(), 5))
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if on_step is not None:
            on_step(step + 1, loss.item())
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < total:
            _save_checkpoint(out_dir, step + 1, get_peft_model_state_dict(model), optimizer, scheduler,
                             result.losses)
    bar.close()
    model.eval()
    result.steps = total
    result.seconds = round(time.perf_counter() - start, 2)
    model.save_pretrained(out_dir)
    (out_dir / ADAPTER_BASE_FILE).write_text(json.dumps(
        {"base_model_id": base_id, "base_model": embedder.spec.name, "train_config": asdict(config)}, indent=2))
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return result


def _save_checkpoint(out_dir: Path, step: int, adapter_state, optimizer, scheduler, losses) -> None:
    folder = out_dir / "checkpoints" / f"step-{step}"
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({"adapter": adapter_state, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "losses": list(losses), "step": step,
                "torch_rng": torch.get_rng_state()}, tmp / "trainer.pt")
    tmp.replace(folder)  # a kill mid-save leaves only a .tmp folder, which is ignored
    logger.info("checkpoint %s", folder)
