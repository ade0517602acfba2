"""The :class:`Embedder`: texts in, L2-normalised vectors out, batched by a token budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import BATCH_TOKENS, PACKINGS, EmbedderConfig, EmbedderError
from .compiled import compile_blocks, eager, uncompile_blocks
from .fingerprint import Fingerprint, parameters_id
from .instructions import format_instructed_query, resolve_instruction
from .loading import ModelLocation, attach_adapter, identify, load_model, locate_model, pick_device
from .packing import Packed, enable_packing, greedy_batches, pack, packed_pool, plan_packed_batches
from .pooling import pool
from .spec import ModelSpec, resolve_spec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    """A configured model's tokenizer, recipe and fingerprint, read without loading its weights.

    Enough to chunk documents and to create or check a collection while the model itself runs
    elsewhere (the workers of a distributed index).
    """

    tokenizer: Any
    spec: ModelSpec
    max_length: int
    fingerprint: Fingerprint


def describe_model(config: EmbedderConfig) -> ModelInfo:
    """What :meth:`Embedder.from_config` would load, from the model's config and tokenizer files only."""
    return _describe(config)[1]


def _describe(config: EmbedderConfig) -> tuple[ModelLocation, ModelInfo]:
    from transformers import AutoConfig, AutoTokenizer

    location = locate_model(config.model)
    extra = {"gguf_file": location.gguf_file} if location.gguf_file else {}
    hf_config = AutoConfig.from_pretrained(location.folder, **extra)
    spec = resolve_spec(location.name, hf_config.model_type, location.folder, config,
                        getattr(hf_config, "max_position_embeddings", None))
    tokenizer = AutoTokenizer.from_pretrained(location.folder, **extra)
    model_id, adapter_hash = identify(location, config.adapter)
    max_length = min(config.max_length, spec.max_length)
    fingerprint = Fingerprint(
        model=spec.name, model_id=model_id, adapter=config.adapter, adapter_id=adapter_hash,
        pooling=spec.pooling, max_length=max_length, normalize=True, document_prefix=spec.document_prefix,
        dim=int(hf_config.hidden_size), quantization=config.quantization,
    )
    return location, ModelInfo(tokenizer, spec, max_length, fingerprint)


@dataclass(frozen=True)
class EncodeStats:
    """Throughput of the last :meth:`Embedder.encode` call."""

    texts: int
    tokens: int          # real (unpadded) tokens
    padded_tokens: int   # tokens the model actually processed (= tokens when packed)
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def plan_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Group text indices, longest first, so each batch's padded size stays within ``batch_tokens``.

    Sorting by length keeps padding waste small; the caller restores the original order.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        width = lengths[current[0]] if current else lengths[i]  # first item is the longest
        if current and width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


#: On CPU, calls with at most this many tokens (a query, a few short texts) run on one torch
#: thread: tiny ops gain nothing from a second thread, and each op waits for a thread that the
#: OS may have descheduled when another process holds a core (10 ms -> ~500 ms per query).
CPU_SMALL_CALL_TOKENS = 1024


@contextmanager
def _torch_threads(n: int):
    old = torch.get_num_threads()
    if old == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


_END = object()


def _ahead(items: Iterator, enabled: bool) -> Iterator:
    """``items``, each produced on a second thread while the caller works on the one before
    (``enabled``), or inline."""
    if not enabled:
        yield from items
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-prefetch") as prefetch:
        future = prefetch.submit(next, items, _END)
        while (item := future.result()) is not _END:
            future = prefetch.submit(next, items, _END)
            yield item


#: Texts tokenized at a time when a GPU runs packed batches: the first batch starts after one slice
#: is tokenized, and the rest is tokenized while the GPU works.
TOKENIZE_SLICE = 64


class Embedder:
    """Embeds queries and documents with one model.

    Build one with :meth:`from_config` (loads files), or pass a built ``model`` and ``tokenizer``
    (tests, notebooks). Documents are embedded as they are (with the model's document prefix, if
    any); queries get the task instruction (decoders) or the query prefix (E5 encoders).

    ``packing`` (``auto``/``on``/``off``, see :class:`EmbedderConfig`) runs batches unpadded;
    ``compile`` runs the packed batches through ``torch.compile`` (the repeated blocks, see
    :mod:`embedder.compiled`). :meth:`encode` may be called from several threads at once.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, spec: ModelSpec, *, max_length: int = 512,
                 batch_tokens: int = 16384, model_id: str | None = None, adapter: str | None = None,
                 adapter_id: str | None = None, quantization: str = "none", packing: str = "auto",
                 compile: bool = False) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = min(max_length, spec.max_length)
        self.batch_tokens = max(batch_tokens, self.max_length)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token  # pad = EOS: lengths come from the mask
        self._model_id = model_id or parameters_id(model)
        self._adapter = adapter
        self._adapter_id = adapter_id
        self._quantization = quantization
        self.last_stats: EncodeStats | None = None
        self.packed = self._setup_packing(packing)
        self.compiled = bool(compile) and compile_blocks(self.model) > 0
        self.warm = not self.compiled  # False until a packed batch has run the compiled blocks

    def _setup_packing(self, packing: str) -> bool:
        if packing not in PACKINGS:
            raise EmbedderError(f"packing={packing!r} is not valid; choose one of: {', '.join(PACKINGS)}.")
        if packing == "off":
            return False
        why_not = enable_packing(self.model)
        if why_not is None:
            return True
        if packing == "on":
            raise EmbedderError(f"packing=on, but {why_not}. Use packing=auto (packs where it can) or off.")
        logger.info("padded batches (no packing): %s", why_not)
        return False

    @classmethod
    def from_config(cls, config: EmbedderConfig) -> "Embedder":
        """Load the model, tokenizer and adapter that ``config`` names."""
        location, info = _describe(config)
        device = pick_device(config.device)
        model = load_model(location, config, device)
        if config.adapter:
            merge = config.merge_adapter and config.quantization == "none"
            model = attach_adapter(model, Path(config.adapter), info.fingerprint.model_id, merge)
        logger.info("loaded %s on %s (%s, quantization=%s, adapter=%s)", location.name, device,
                    next(model.parameters()).dtype, config.quantization, config.adapter)
        batch_tokens = config.batch_tokens or BATCH_TOKENS.get(device, BATCH_TOKENS["cuda"])
        return cls(model, info.tokenizer, info.spec, max_length=config.max_length, batch_tokens=batch_tokens,
                   model_id=info.fingerprint.model_id, adapter=config.adapter,
                   adapter_id=info.fingerprint.adapter_id, quantization=config.quantization,
                   packing=config.packing, compile=device == "cuda" if config.compile is None else config.compile)

    @classmethod
    def from_pretrained(cls, model: str, **settings) -> "Embedder":
        """Shortcut: ``Embedder.from_pretrained("intfloat/e5-mistral-7b-instruct", quantization="4bit")``."""
        return cls.from_config(EmbedderConfig(model=model, **settings))

    # -- what the model sees -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def info(self) -> ModelInfo:
        """Tokenizer, recipe and fingerprint (what an indexer needs besides the vectors)."""
        return ModelInfo(self.tokenizer, self.spec, self.max_length, self.fingerprint)

    @property
    def fingerprint(self) -> Fingerprint:
        return Fingerprint(
            model=self.spec.name, model_id=self._model_id, adapter=self._adapter, adapter_id=self._adapter_id,
            pooling=self.spec.pooling, max_length=self.max_length, normalize=True,
            document_prefix=self.spec.document_prefix, dim=self.dim, quantization=self._quantization,
        )

    def format_query(self, query: str, instruction: str | None = None, task: str | None = None) -> str:
        """The exact text the model embeds for ``query``."""
        if self.spec.instructed:
            return format_instructed_query(resolve_instruction(task, instruction), query)
        return self.spec.query_prefix + query

    def format_document(self, text: str) -> str:
        return self.spec.document_prefix + text

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a document would be split into (no special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # -- embedding -----------------------------------------------------------------------------
    def embed_documents(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed documents: (n,) texts -> (n, dim) float32, L2-normalised."""
        return self.encode([self.format_document(t) for t in texts], show_progress=show_progress)

    def warm_up(self) -> float:
        """Compile now what the first packed batch would compile (a compiled embedder; about 10 s for
        a 7B model on a GPU), so no caller's batch waits for it: seconds taken, 0.0 when there is
        nothing to compile (``warm``: not compiled, or compiled already)."""
        if self.warm or not self.packed:
            return 0.0
        start = time.perf_counter()
        self.embed_documents([f"warm-up text {i}: " + "words of a document " * (i + 1) for i in range(4)])
        seconds = time.perf_counter() - start
        logger.info("warm-up: the model's compiled blocks are ready (%.1fs)", seconds)
        return seconds

    def embed_queries(self, queries: Sequence[str], instruction: str | None = None,
                      task: str | None = None) -> np.ndarray:
        """Embed queries with the task instruction: (n,) -> (n, dim) float32."""
        return self.encode([self.format_query(q, instruction, task) for q in queries])

    def embed_query(self, query: str, instruction: str | None = None, task: str | None = None) -> np.ndarray:
        """Embed one query: -> (dim,) float32."""
        return self.embed_queries([query], instruction, task)[0]

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text, as the model card builds them (EOS after truncation for decoders)."""
        if self.spec.append_eos:
            ids = self.tokenizer(list(texts), max_length=self.max_length - 1, truncation=True,
                                 padding=False, return_attention_mask=False)["input_ids"]
            return [row + [self.tokenizer.eos_token_id] for row in ids]
        return self.tokenizer(list(texts), max_length=self.max_length, truncation=True, padding=False,
                              return_attention_mask=False)["input_ids"]

    def _inputs(self, ids: list[list[int]], pin: bool = False) -> Packed | dict[str, torch.Tensor]:
        """A batch's model inputs on the device: packed (:class:`Packed`) or padded (``input_ids``,
        ``attention_mask``: (batch, seq)). ``pin``: copy through pinned memory, without waiting.
        A single text (a query) has no padding to save: it runs the plain path."""
        if self.packed and len(ids) > 1:
            packed = pack(ids)
            return packed.pin_memory().to(self.device, non_blocking=True) if pin else packed.to(self.device)
        enc = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        return {k: (enc[k].pin_memory().to(self.device, non_blocking=True) if pin else enc[k].to(self.device))
                for k in ("input_ids", "attention_mask")}

    def _stream_packed(self, texts: Sequence[str], lengths: list[int],
                       pin: bool = True) -> Iterator[tuple[list[int], object]]:
        """``(text indices, inputs on their way to the device)`` per batch of at most ``batch_tokens``
        tokens, tokenizing :data:`TOKENIZE_SLICE` texts at a time; appends each text's length to
        ``lengths``. ``pin``: copy through pinned memory (a GPU)."""
        rows: dict[int, list[int]] = {}  # tokenized, not yet batched

        def tokenized() -> Iterator[tuple[int, int]]:
            for first in range(0, len(texts), TOKENIZE_SLICE):
                for i, row in enumerate(self.tokenize(texts[first:first + TOKENIZE_SLICE]), start=first):
                    rows[i] = row
                    lengths.append(len(row))
                    yield i, len(row)

        for batch in greedy_batches(tokenized(), self.batch_tokens):
            yield batch, self._inputs([rows.pop(i) for i in batch], pin=pin)

    def _forward(self, ids: list[list[int]]) -> tuple[torch.Tensor, int]:
        """Pad, run the model, pool, normalise: -> ((batch, dim) float32, padded width)."""
        enc = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        inputs = {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}
        return self._forward_inputs(inputs), inputs["attention_mask"].shape[1]

    def _forward_inputs(self, inputs: Packed | dict[str, torch.Tensor], model: Callable | None = None) -> torch.Tensor:
        """Run the model (or ``model``: e.g. a peft model with per-row adapters) on prepared inputs,
        pool, normalise: -> (batch, dim) float32."""
        # No KV cache for decoders: nothing is generated, and building one costs memory and, for
        # sliding-window models (Mistral), a host-device copy per layer that stalls the GPU queue.
        extra = {"use_cache": False} if self.spec.decoder else {}
        if isinstance(inputs, Packed):  # compiled blocks, if compiled
            hidden = (self._run_packed(inputs, extra) if model is None else
                      model(**inputs.model_kwargs(), **extra).last_hidden_state[0])  # (T, dim)
            pooled = packed_pool(self.spec.pooling, hidden, inputs.cu_seqlens)
        else:  # a padded batch or one query: eager, so it never waits for a compilation of its own
            mask = inputs["attention_mask"]  # (batch, seq)
            with eager(self.compiled):
                hidden = (model or self.model)(**inputs, **extra).last_hidden_state
            pooled = pool(self.spec.pooling, hidden, mask)
        return F.normalize(pooled.float(), p=2, dim=-1)

    def _run_packed(self, inputs: Packed, extra: dict) -> torch.Tensor:
        """The model on a packed batch -> (T, dim); compiled blocks that fail to compile or run are
        switched back to eager (with a warning) and the batch runs again."""
        def run() -> torch.Tensor:
            return self.model(**inputs.model_kwargs(), **extra).last_hidden_state[0]

        try:
            hidden = run()
            self.warm = True
            return hidden
        except Exception as exc:
            if not self.compiled or isinstance(exc, torch.OutOfMemoryError):
                raise
            first_line = (str(exc).strip().splitlines() or [""])[0][:200]
            logger.warning("torch.compile failed on this model (%s: %s); running it eagerly instead",
                           type(exc).__name__, first_line)
            uncompile_blocks(self.model)
            self.compiled, self.warm = False, True
            return run()

    def embed_with_grad(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed already-formatted texts in one batch, keeping the autograd graph (for training).

        (n,) texts -> (n, dim) float32, L2-normalised, same recipe as :meth:`encode` (padded).
        """
        return self._forward(self.tokenize(texts))[0]

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Embed already-formatted texts: batched by token budget, order restored.

        On a CPU, and for padded batches, all texts are tokenized first and batched longest first
        (padded batches then waste little). On a GPU with packing, order does not matter: texts are
        tokenized a slice at a time and packed as they come, on a second thread, so the GPU starts
        after the first slice and never waits for the host; vectors come back with one wait per call.
        """
        start = time.perf_counter()
        cuda = self.device.type == "cuda"
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        lengths: list[int] = []
        if cuda and self.packed:
            batches = self._stream_packed(texts, lengths)
        else:
            ids = self.tokenize(texts)
            lengths.extend(len(row) for row in ids)
            order = (plan_packed_batches if self.packed else plan_batches)(lengths, self.batch_tokens)
            batches = ((b, self._inputs([ids[i] for i in b], pin=cuda)) for b in order)
        small = not cuda and sum(lengths) <= CPU_SMALL_CALL_TOKENS
        padded = 0
        pending: list[tuple[list[int], torch.Tensor]] = []
        # tqdm takes a process-wide lock, even disabled (Ctrl-C can leave it held): none without a bar
        progress = (tqdm(total=len(texts), desc="embedding", unit="text", leave=False) if show_progress
                    else nullcontext())
        with progress as bar, _torch_threads(1) if small else nullcontext():
            for batch, inputs in _ahead(batches, enabled=cuda and len(texts) > 1):  # a query runs inline
                vectors = self._forward_inputs(inputs)  # (batch, dim) on the device
                padded += inputs.input_ids.numel() if isinstance(inputs, Packed) else inputs["input_ids"].numel()
                if cuda:
                    host = torch.empty(vectors.shape, dtype=vectors.dtype, pin_memory=True)
                    pending.append((batch, host.copy_(vectors, non_blocking=True)))
                else:
                    out[batch] = vectors.cpu().numpy()  # (batch, dim)
                if bar is not None:
                    bar.update(len(batch))
        if pending:
            torch.cuda.current_stream(self.device).synchronize()
            for batch, host in pending:
                out[batch] = host.numpy()
        self.last_stats = EncodeStats(len(texts), sum(lengths), padded, time.perf_counter() - start)
        if texts:
            logger.debug("embedded %d texts, %d tokens, %.0f tokens/s", len(texts), sum(lengths),
                         self.last_stats.tokens_per_s)
        return out
