"""Contrastive loss and batching for embedding fine-tuning: pure functions."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F

T = TypeVar("T")


def info_nce(queries: torch.Tensor, documents: torch.Tensor, temperature: float = 0.02) -> torch.Tensor:
    """InfoNCE over in-batch and hard negatives.

    queries: (B, dim), L2-normalised. documents: (B + N, dim): rows 0..B-1 are each query's
    positive, the remaining N rows are hard negatives shared by the whole batch. Query i's
    positive is document i; every other document is a negative for it.
    """
    if documents.shape[0] < queries.shape[0]:
        raise ValueError(f"need at least one positive per query: {queries.shape[0]} queries, "
                         f"{documents.shape[0]} documents")
    logits = queries @ documents.T / temperature  # (B, B + N)
    labels = torch.arange(queries.shape[0], device=queries.device)
    return F.cross_entropy(logits, labels)


def task_homogeneous_batches(items: Sequence[T], task_of, batch_size: int, seed: int = 0,
                             drop_last: bool = False) -> list[list[T]]:
    """Batches that each hold one task only, in an order that mixes the tasks.

    In-batch negatives of one task are informative (a question is contrasted with passages
    for other questions); the tasks are interleaved across training so none is forgotten.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size={batch_size}: in-batch negatives need at least 2 per batch.")
    rng = random.Random(seed)
    by_task: dict[str, list[T]] = defaultdict(list)
    for item in items:
        by_task[task_of(item)].append(item)
    batches: list[list[T]] = []
    for task in sorted(by_task):
        group = by_task[task][:]
        rng.shuffle(group)
        chunks = [group[i:i + batch_size] for i in range(0, len(group), batch_size)]
        if len(chunks) > 1 and len(chunks[-1]) == 1:  # a lone example has no in-batch negative
            chunks[-2].extend(chunks.pop())
        batches.extend(b for b in chunks if len(b) >= 2 and (len(b) >= batch_size or not drop_last))
    rng.shuffle(batches)
    return batches
