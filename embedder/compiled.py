"""``torch.compile`` for the model's repeated blocks (regional compilation).

A transformer is one block class repeated N times (Mistral-7B: 32 decoder layers). Compiling each
block in place, rather than the whole model, traces and compiles one graph that every block then
reuses (their weights are the graph's inputs), so the warm-up is one block's, not N blocks'. Inside
a block the compiler fuses what eager PyTorch runs as separate kernels (RMSNorm, rotary
embeddings, SiLU x up, residual adds); the matrix products stay cuBLAS's and the packed attention
stays FlashAttention's (``embedder.packing``).

Shapes are dynamic (a packed batch is one row of any length), so one graph serves every batch.
Only packed batches run compiled: a padded batch or a single query runs the same blocks eagerly
(:func:`eager`), so a query never waits for a second compilation. Where compiling fails (e.g. a
quantized layer the compiler cannot trace on this backend), the embedder logs why and runs eagerly.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

import torch

logger = logging.getLogger(__name__)


def repeated_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated blocks: the longest ``ModuleList`` whose members all share one class
    (a decoder's ``layers``, BERT's ``encoder.layer``), through a peft wrapper if any."""
    best: list[torch.nn.Module] = []
    for module in model.modules():
        if (isinstance(module, torch.nn.ModuleList) and len(module) > len(best)
                and len({type(m) for m in module}) == 1):
            best = list(module)
    return best


def compile_blocks(model: torch.nn.Module) -> int:
    """Compile each repeated block of ``model`` in place (dynamic shapes); returns how many (0: the
    model has none, and runs eagerly)."""
    blocks = repeated_blocks(model)
    if not blocks:
        logger.info("torch.compile: %s has no repeated blocks (a ModuleList of one class); running eagerly",
                    type(model).__name__)
        return 0
    for block in blocks:
        block.compile(dynamic=True)
    logger.info("torch.compile: %d x %s (compiled once, on the first packed batch)", len(blocks),
                type(blocks[0]).__name__)
    return len(blocks)


def uncompile_blocks(model: torch.nn.Module) -> None:
    """Undo :func:`compile_blocks`: the blocks run eagerly again."""
    for block in repeated_blocks(model):
        block._compiled_call_impl = None  # what nn.Module.compile sets; None is its eager default


_eager_lock = threading.Lock()
_eager_calls = 0
_before_eager = None  # the set_stance of the first eager call in flight: its exit restores the stance


@contextmanager
def eager(compiled: bool):
    """A context in which compiled blocks run eagerly (nothing to do when nothing is compiled).

    The compiler's stance is process-wide, so concurrent calls (several threads embedding at once)
    share one: the first to enter sets it, the last to leave restores it. Meanwhile a packed batch
    on another thread runs eagerly too (the same vectors, at eager speed).
    """
    global _eager_calls, _before_eager
    if not compiled:
        yield
        return
    with _eager_lock:
        if _eager_calls == 0:
            _before_eager = torch.compiler.set_stance("force_eager")  # set now; remembers the stance before
        _eager_calls += 1
    try:
        yield
    finally:
        with _eager_lock:
            _eager_calls -= 1
            if _eager_calls == 0:
                _before_eager.__exit__(None, None, None)
                _before_eager = None
