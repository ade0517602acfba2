"""What ``rag serve`` serves: the search facade, the batcher, the adapters and the index jobs,
built once from the settings and shared by the HTTP API and the MCP tools."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from embedder import Embedder

from ..service import SearchService
from ..factories import build_embedder, build_store
from ..settings import Settings
from .adapters import AdapterSet, parse_adapters
from .batching import BatchedEmbedder, MicroBatcher
from .jobs import IndexJobs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """How the service batches and what it allows."""

    batching: bool = True
    window_ms: float = 5.0
    adapters: str | None = None          # RAG_LORA_ADAPTERS: name=path,name2=path2
    adapter_strategy: str = "grouped"    # or mixed (see app.serve.adapters)
    allow_index: bool = True             # POST /index (MCP index_folder has its own flag)
    mcp_index: bool = False              # the MCP tool index_folder
    max_texts: int = 2048                # texts per /v1/embeddings request
    max_body_bytes: int = 8 * 1024 * 1024


class Runtime:
    """Owns the embedder, the store and everything built on them; close it once."""

    def __init__(self, settings: Settings, embedder: Embedder, options: ServeOptions = ServeOptions()) -> None:
        self.settings = settings
        self.options = options
        self.embedder = embedder
        self.adapters = AdapterSet(embedder, parse_adapters(options.adapters), options.adapter_strategy)
        self.batcher = MicroBatcher(self.adapters.encode, embedder.count_tokens, embedder.batch_tokens,
                                    window_ms=options.window_ms, enabled=options.batching)
        store = build_store(settings)
        self.service = SearchService(settings, BatchedEmbedder(embedder, self.batcher), store)
        self.jobs = IndexJobs(self.service)
        self.warm_up_s: float | None = None  # seconds the compiled blocks took, once ready
        self.warmed = threading.Event()
        threading.Thread(target=self._warm_up, name="warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        """Compile the model's blocks (a GPU's default) while no request waits for them."""
        try:
            self.warm_up_s = round(self.embedder.warm_up(), 2)
        except Exception:  # the first packed request compiles (or falls back) instead
            log.exception("warm-up failed; the first packed batch compiles instead")
        finally:
            self.warmed.set()

    @classmethod
    def from_settings(cls, settings: Settings, options: ServeOptions = ServeOptions(),
                      embedder: Embedder | None = None) -> Runtime:
        return cls(settings, embedder or build_embedder(settings), options)

    def embed(self, texts: list[str], input_type: str = "document", task: str | None = None,
              instruction: str | None = None, adapter: str | None = None) -> np.ndarray:
        """Embed raw texts as queries (with the task instruction) or documents: (n,) -> (n, dim)."""
        return self.batcher.encode(self._formatted(texts, input_type, task, instruction, adapter), adapter)

    async def embed_async(self, texts: list[str], input_type: str = "document", task: str | None = None,
                          instruction: str | None = None, adapter: str | None = None) -> np.ndarray:
        """:meth:`embed` without holding a worker thread while the batcher runs."""
        return await self.batcher.encode_async(self._formatted(texts, input_type, task, instruction, adapter),
                                               adapter)

    def _formatted(self, texts: list[str], input_type: str, task: str | None, instruction: str | None,
                   adapter: str | None) -> list[str]:
        """The texts as the model embeds them (queries instructed, documents not), after the adapter check."""
        self.adapters.check(adapter)
        if input_type == "query":
            formatted = [self.embedder.format_query(t, instruction=instruction or None, task=task) for t in texts]
        else:
            formatted = [self.embedder.format_document(t) for t in texts]
        return formatted

    def status(self) -> dict:
        collections = []
        for name in self.service.collections():
            s = self.service.status(name)
            collections.append({"name": s.name, "points": s.points, "fingerprint": s.fingerprint,
                                "chunk_tokens": s.chunk_tokens, "chunk_context": s.chunk_context,
                                "last_indexed": s.last_indexed,
                                "roots": s.roots, "error": s.error})
        return {"store": self.service.location, "model": self.embedder.spec.name, "dim": self.embedder.dim,
                "instructed": bool(self.embedder.spec.instructed), "query_prefix": self.embedder.spec.query_prefix,
                "compiled": self.embedder.compiled, "warm": self.warmed.is_set(), "warm_up_s": self.warm_up_s,
                "collection": self.settings.collection,
                "collections": collections, "adapters": self.adapters.names,
                "batching": {"enabled": self.batcher.enabled, "window_ms": self.batcher.window * 1000,
                             "batch_tokens": self.batcher.batch_tokens, **self.batcher.stats.to_dict()},
                "jobs": [j.to_dict() for j in self.jobs.all()]}

    def close(self) -> None:
        """Stop running index jobs (between files: resumable), the batcher, then release the store."""
        self.jobs.stop()
        self.batcher.close()
        self.service.close()
