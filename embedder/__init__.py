"""Embeddings for semantic search: E5-Mistral-style decoders and small encoders.

    >>> from embedder import Embedder
    >>> emb = Embedder.from_pretrained("default")          # packaged all-MiniLM-L6-v2 on CPU
    >>> docs = emb.embed_documents(["Qdrant is a vector database."])
    >>> q = emb.embed_query("what is qdrant", task="web_search")
"""

from importlib import import_module
from typing import TYPE_CHECKING

from .config import DEFAULT_MODEL, EmbedderConfig, EmbedderError
from .instructions import DEFAULT_TASK, TASKS, format_instructed_query, resolve_instruction

#: Names loaded on first use: they import torch and transformers (seconds), which `rag status`,
#: the settings and argument parsing never need.
_LAZY = {
    "Embedder": ".core", "EncodeStats": ".core", "ModelInfo": ".core", "describe_model": ".core",
    "plan_batches": ".core", "LazyEmbedder": ".lazy", "COMPATIBLE_FIELDS": ".fingerprint", "Fingerprint": ".fingerprint",
    "POOLING_MODES": ".pooling", "last_token_pool": ".pooling", "mean_pool": ".pooling", "ModelSpec": ".spec",
}

if TYPE_CHECKING:
    from .core import Embedder, EncodeStats, ModelInfo, describe_model, plan_batches
    from .lazy import LazyEmbedder
    from .fingerprint import COMPATIBLE_FIELDS, Fingerprint
    from .pooling import POOLING_MODES, last_token_pool, mean_pool
    from .spec import ModelSpec


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COMPATIBLE_FIELDS", "DEFAULT_MODEL", "DEFAULT_TASK", "Embedder", "EmbedderConfig", "EmbedderError",
    "EncodeStats", "Fingerprint", "LazyEmbedder", "ModelInfo", "ModelSpec", "POOLING_MODES", "TASKS", "describe_model", "format_instructed_query",
    "last_token_pool", "mean_pool", "plan_batches", "resolve_instruction",
]
