"""Pooling of token states into one vector per text: pure functions of tensors."""

from __future__ import annotations

import torch

POOLING_MODES = ("lasttoken", "mean", "cls")


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The hidden state of each row's last real token, for left or right padding alike.

    hidden: (batch, seq, dim); attention_mask: (batch, seq) of 0/1 -> (batch, dim)
    """
    seq_len = attention_mask.shape[1]
    positions = torch.arange(seq_len, device=attention_mask.device).expand_as(attention_mask)
    last = (positions * attention_mask.long()).argmax(dim=1)  # (batch,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens' states. hidden: (batch, seq, dim) -> (batch, dim)"""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def cls_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The first token's state (right padding only). hidden: (batch, seq, dim) -> (batch, dim)"""
    return hidden[:, 0]


def pool(mode: str, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Pool with the named ``mode`` (one of :data:`POOLING_MODES`)."""
    if mode == "lasttoken":
        return last_token_pool(hidden, attention_mask)
    if mode == "mean":
        return mean_pool(hidden, attention_mask)
    if mode == "cls":
        return cls_pool(hidden, attention_mask)
    raise ValueError(f"Unknown pooling mode {mode!r}. Valid modes: {', '.join(POOLING_MODES)}.")
