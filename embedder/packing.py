"""Unpadded forward passes: a batch's sequences packed into one row, attention kept per sequence.

A padded batch of n texts of widths l_i computes n x max(l_i) tokens; a packed batch computes
sum(l_i). The texts are concatenated into one row of T tokens, each with its own position ids
(0..l_i-1), and the offsets ``cu_seqlens`` (n+1,) mark where each begins. Attention stays within
each text through :func:`packed_attention`, an attention function registered with transformers
under :data:`PACKED_ATTENTION`:

- on CUDA in bf16/fp16, PyTorch's FlashAttention varlen kernel (``torch.nn.attention.varlen``);
- elsewhere (CPU, fp32), one ``scaled_dot_product_attention`` per text, on its own slice.

Calls without offsets (a padded batch, training) go to transformers' own SDPA function, so a model
switched to :data:`PACKED_ATTENTION` still runs padded batches exactly as before.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

#: The name the attention function is registered under (``config._attn_implementation``).
PACKED_ATTENTION = "rag_packed"
#: Model types whose attention goes through transformers' attention interface, whose positions come
#: from ``position_ids`` alone, and whose kwargs reach the attention function (checked by the tests
#: for mistral and bert; the others share Llama's code).
PACKABLE_TYPES = frozenset({"mistral", "llama", "qwen2", "qwen3", "phi3", "mixtral", "bert"})


@dataclass(frozen=True)
class Packed:
    """One packed batch.

    input_ids, position_ids: (1, T) int64; cu_seqlens: (n+1,) int32 offsets; max_len: longest text.
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    max_len: int

    def to(self, device: torch.device, non_blocking: bool = False) -> "Packed":
        return Packed(self.input_ids.to(device, non_blocking=non_blocking),
                      self.position_ids.to(device, non_blocking=non_blocking),
                      self.cu_seqlens.to(device, non_blocking=non_blocking), self.max_len)

    def pin_memory(self) -> "Packed":
        return Packed(self.input_ids.pin_memory(), self.position_ids.pin_memory(),
                      self.cu_seqlens.pin_memory(), self.max_len)

    def model_kwargs(self) -> dict:
        """What the model's forward takes (the offsets travel to the attention function as kwargs)."""
        return {"input_ids": self.input_ids, "position_ids": self.position_ids,
                "cu_seq_lens_q": self.cu_seqlens, "cu_seq_lens_k": self.cu_seqlens,
                "max_length_q": self.max_len, "max_length_k": self.max_len}


def pack(ids: Sequence[Sequence[int]]) -> Packed:
    """Concatenate token id lists into one row with per-text positions and offsets."""
    lengths = [len(row) for row in ids]
    if not lengths or min(lengths) < 1:
        raise ValueError(f"pack() needs one or more non-empty token lists, got lengths {lengths[:8]}.")
    flat = [t for row in ids for t in row]
    positions = [p for n in lengths for p in range(n)]
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    return Packed(torch.tensor([flat], dtype=torch.long), torch.tensor([positions], dtype=torch.long),
                  torch.tensor(offsets, dtype=torch.int32), max(lengths))


def greedy_batches(items: Iterable[tuple[int, int]], batch_tokens: int) -> Iterator[list[int]]:
    """``(index, length)`` pairs, in their order, grouped into batches of at most ``batch_tokens``
    tokens (a text longer than the budget gets a batch of its own); each batch is yielded as soon
    as the next text does not fit."""
    current: list[int] = []
    used = 0
    for i, n in items:
        if current and used + n > batch_tokens:
            yield current
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        yield current


def plan_packed_batches(lengths: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Group text indices, longest first, so each batch holds at most ``batch_tokens`` real tokens
    (a text longer than the budget gets a batch of its own). The caller restores the order."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return list(greedy_batches(((i, lengths[i]) for i in order), batch_tokens))


def packed_pool(mode: str, hidden: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Pool each text's tokens of a packed row. hidden: (T, dim), cu_seqlens: (n+1,) -> (n, dim)."""
    starts, ends = cu_seqlens[:-1].long(), cu_seqlens[1:].long()
    if mode == "lasttoken":
        return hidden[ends - 1]
    if mode == "cls":
        return hidden[starts]
    if mode == "mean":
        lengths = ends - starts  # (n,)
        segment = torch.repeat_interleave(torch.arange(len(lengths), device=hidden.device), lengths)  # (T,)
        sums = torch.zeros(len(lengths), hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
        sums.index_add_(0, segment, hidden)
        return sums / lengths.unsqueeze(-1).to(hidden.dtype)
    from .pooling import POOLING_MODES

    raise ValueError(f"Unknown pooling mode {mode!r}. Valid modes: {', '.join(POOLING_MODES)}.")


# -- the attention function ------------------------------------------------------------------------
def _varlen_kernel():
    """PyTorch's FlashAttention varlen function (torch >= 2.9 built with CUDA), or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


#: (kernel or None, its parameter names), resolved once, outside any torch.compile trace.
_VARLEN: tuple | None = None


def _varlen() -> tuple:
    global _VARLEN
    if _VARLEN is None:
        kernel = _varlen_kernel()
        _VARLEN = (kernel, frozenset(inspect.signature(kernel).parameters) if kernel else frozenset())
    return _VARLEN


def _varlen_attention(kernel, params: frozenset[str], query, key, value, cu, max_len: int, causal: bool,
                      scale: float | None, window: int | None) -> torch.Tensor | None:
    """FlashAttention varlen. query: (1, H, T, D), key/value: (1, Hkv, T, D) -> (1, T, H, D), or None
    when this torch's kernel cannot take the arguments (the caller falls back to per-text SDPA)."""
    q, k, v = (x[0].transpose(0, 1).contiguous() for x in (query, key, value))  # (T, H, D)
    extra: dict = {"scale": scale}
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if "window_size" in params:
        extra["window_size"] = ((window - 1) if window else -1, 0 if causal else -1)
    elif window or not causal:
        return None  # an older signature that only knows causal attention
    else:
        extra["is_causal"] = True
    cu = cu.to(device=q.device, dtype=torch.int32)
    out = kernel(q, k, v, cu, cu, max_len, max_len, **extra)  # (T, H, D)
    return out.unsqueeze(0)


@torch.compiler.disable  # a Python loop over the texts: compiled, each new batch size would recompile
def _per_text_attention(query, key, value, cu, causal: bool, scale: float | None,
                        window: int | None) -> torch.Tensor:
    """One SDPA call per text on its slice. (1, H, T, D) -> (1, T, H, D)."""
    gqa = key.shape[1] != query.shape[1]
    out = torch.empty_like(query)
    for start, end in zip(cu[:-1].tolist(), cu[1:].tolist()):
        q, k, v = query[:, :, start:end], key[:, :, start:end], value[:, :, start:end]
        n = end - start
        mask = None
        if window is not None and n > window:  # sliding window: key j visible from query i if i-window < j <= i
            i = torch.arange(n, device=query.device)
            mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)
        out[:, :, start:end] = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and mask is None, scale=scale, enable_gqa=gqa)
    return out.transpose(1, 2)


def packed_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                     scaling: float | None = None, sliding_window: int | None = None, **kwargs):
    """transformers attention function: per-text attention when ``cu_seq_lens_q`` is given, else SDPA.

    query: (1, H, T, D); key, value: (1, Hkv, T, D) -> ((1, T, H, D), None)
    """
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, sliding_window=sliding_window, **kwargs)
    causal = bool(getattr(module, "is_causal", True)) and kwargs.get("is_causal", True) is not False
    max_len = int(kwargs.get("max_length_q") or 0)
    window = sliding_window if sliding_window and max_len > sliding_window else None
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        kernel, params = _varlen()
        if kernel is not None:
            out = _varlen_attention(kernel, params, query, key, value, cu, max_len, causal, scaling, window)
            if out is not None:
                return out, None
    return _per_text_attention(query, key, value, cu, causal, scaling, window), None


def _packed_mask(*args, attention_mask=None, **kwargs):
    """Mask builder for :data:`PACKED_ATTENTION`: none for packed calls (the offsets separate the
    texts; a (T, T) block mask would cost T^2 memory), SDPA's own for padded ones."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> None:
    """Make :data:`PACKED_ATTENTION` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
    AttentionMaskInterface.register(PACKED_ATTENTION, _packed_mask)
    _varlen()


def base_config(model: torch.nn.Module):
    """The transformers config of ``model``, through a peft wrapper if any."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(base, "config", None)


def enable_packing(model: torch.nn.Module) -> str | None:
    """Switch ``model`` to :data:`PACKED_ATTENTION`; returns why it cannot be, or None when it is."""
    config = base_config(model)
    if config is None:
        return "the model has no transformers config"
    model_type = getattr(config, "model_type", None)
    if model_type not in PACKABLE_TYPES:
        return f"model type {model_type!r} is not one of {', '.join(sorted(PACKABLE_TYPES))}"
    current = getattr(config, "_attn_implementation", None)
    if current == PACKED_ATTENTION:
        return None
    if current != "sdpa":
        return f"the model runs attn_implementation={current!r}, and packing replaces 'sdpa' only"
    register()
    config._attn_implementation = PACKED_ATTENTION
    return None
