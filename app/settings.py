"""The one settings object: environment variables ``RAG_*``, overridden by CLI flags.

Read only at entry points (the CLI, the Streamlit page); library code takes the parts it needs
(:meth:`Settings.embedder_config`, the store arguments).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from embedder import EmbedderConfig
from indexer.modes import DEFAULT_FUSION, DEFAULT_MODE, DEFAULT_RERANK_DEPTH, DEFAULT_RERANK_MODEL, SearchMode

if TYPE_CHECKING:
    from indexer.store import CollectionOptions


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "rag-search"


class Settings(BaseSettings):
    """Every setting, with its ``RAG_`` environment variable (e.g. ``RAG_MODEL``, ``RAG_QDRANT_URL``)."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    # embedder
    model: str = Field("default", description="model folder, hub name, .gguf file, or 'default'")
    quantization: Literal["none", "8bit", "4bit"] = "none"
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_length: int = Field(512, ge=2, description="tokens per text, longer texts are truncated")
    batch_tokens: int | None = Field(
        None, ge=2, description="padded tokens per forward pass (default: 16384 on CUDA, 2048 on CPU)")
    packing: Literal["auto", "on", "off"] = Field(
        "auto", description="unpadded batches, texts packed into one row (auto: where the model type allows)")
    compile: bool | None = Field(
        None, description="run packed batches through torch.compile (the repeated blocks); default: on with a GPU")
    adapter: str | None = Field(None, description="LoRA adapter folder from `rag finetune`")
    lora_adapters: str | None = Field(
        None, description="LoRA adapters `rag serve` offers per request on /v1/embeddings: NAME=PATH,NAME2=PATH2")
    task: str = Field("web_search", description="named query instruction")
    mode: SearchMode = Field(DEFAULT_MODE, description="search mode when none is given: dense, sparse or hybrid")
    fusion: Literal["dbsf", "rrf"] = Field(DEFAULT_FUSION, description="how hybrid search fuses dense and sparse results")
    rerank: bool = Field(False, description="re-score the top results with a second, larger model")
    rerank_model: str = Field(DEFAULT_RERANK_MODEL, description="the reranking model (any model RAG_MODEL takes)")
    rerank_depth: int = Field(DEFAULT_RERANK_DEPTH, ge=2, description="candidates the reranker re-scores per query")
    instruction: str | None = Field(None, description="custom query instruction (overrides task)")
    # store
    qdrant_url: str | None = Field(None, description="Qdrant server URL; unset = embedded store")
    qdrant_api_key: SecretStr | None = None
    data_dir: Path = Field(default_factory=_default_data_dir, description="embedded store folder")
    collection: str = "documents"
    # server collection layout (only for collections a Qdrant server creates)
    shards: int | None = Field(None, ge=1, description="shards per new collection (unset: server default)")
    replication: int | None = Field(None, ge=1, description="copies of each shard (needs that many nodes)")
    on_disk: bool = Field(False, description="keep original dense vectors on disk (memory-mapped)")
    int8: bool = Field(False, description="int8 scalar quantization in RAM, originals used to rescore")
    # indexer
    chunk_tokens: int = Field(256, ge=16)
    chunk_overlap: int = Field(32, ge=0)
    chunk_context: Literal["title", "none"] | None = Field(
        None, description="before each chunk where it is embedded and BM25-indexed: the document title, or "
                          "nothing; unset = what the collection was indexed with (title for a new one)")
    max_file_mb: float = Field(50.0, gt=0)
    workers: int = Field(1, ge=1, description="embedding workers; above 1 the run goes through Ray")
    parse_workers: int | None = Field(None, ge=0, description="processes parsing files for `rag index`; "
                                      "0 = threads; unset = processes when the model is on a GPU")
    ray_address: str | None = Field(None, description="Ray cluster to use for workers; unset = a local one")

    def reranker_config(self) -> EmbedderConfig:
        """The reranking model on the same device and precision settings as the embedder."""
        return EmbedderConfig(model=self.rerank_model, quantization=self.quantization, dtype=self.dtype,
                              device=self.device, max_length=self.max_length)

    def embedder_config(self) -> EmbedderConfig:
        return EmbedderConfig(
            model=self.model, quantization=self.quantization, dtype=self.dtype, device=self.device,
            max_length=self.max_length,
            batch_tokens=max(self.batch_tokens, self.max_length) if self.batch_tokens else None,
            adapter=self.adapter, packing=self.packing, compile=self.compile,
        )

    @field_validator("shards", "replication", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``RAG_SHARDS=`` (empty, as compose writes ``${RAG_SHARDS:-}``) means unset."""
        return None if isinstance(value, str) and not value.strip() else value

    def collection_options(self) -> CollectionOptions:
        """The server collection layout (:class:`indexer.store.CollectionOptions`)."""
        from indexer.store import CollectionOptions

        return CollectionOptions(shard_number=self.shards, replication_factor=self.replication,
                                 on_disk=self.on_disk, int8=self.int8)

    def api_key(self) -> str | None:
        return self.qdrant_api_key.get_secret_value() if self.qdrant_api_key else None
