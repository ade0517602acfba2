"""Embeddings for semantic search: E5-Mistral-style decoders and small encoders.

    >>> from embedder import Embedder
    >>> emb = Embedder.from_pretrained("default")          # packaged all-MiniLM-L6-v2 on CPU
    >>> docs = emb.embed_documents(["Qdrant is a vector database."])
    >>> q = emb.embed_query("what is qdrant", task="web_search")
"""

from .config import DEFAULT_MODEL, EmbedderConfig, EmbedderError
from .core import Embedder, EncodeStats, ModelInfo, describe_model, plan_batches
from .fingerprint import COMPATIBLE_FIELDS, Fingerprint
from .instructions import DEFAULT_TASK, TASKS, format_instructed_query, resolve_instruction
from .pooling import POOLING_MODES, last_token_pool, mean_pool
from .spec import ModelSpec

__all__ = [
    "COMPATIBLE_FIELDS", "DEFAULT_MODEL", "DEFAULT_TASK", "Embedder", "EmbedderConfig", "EmbedderError",
    "EncodeStats", "Fingerprint", "ModelInfo", "ModelSpec", "POOLING_MODES", "TASKS", "describe_model", "format_instructed_query",
    "last_token_pool", "mean_pool", "plan_batches", "resolve_instruction",
]
