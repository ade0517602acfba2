""":class:`LazyEmbedder`: an :class:`~embedder.core.Embedder` whose weights load on first use.

Searching needs the model's recipe and fingerprint at once (to check the collection and format
the query) but its weights only to embed: a keyword (sparse) search never needs them, and the
page can open before they are loaded. Everything an Embedder offers works; whatever needs the
weights loads them once (thread-safe) and is then served by the loaded Embedder.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from .config import EmbedderConfig

if TYPE_CHECKING:
    from .core import Embedder, ModelInfo

logger = logging.getLogger(__name__)


class LazyEmbedder:
    """``LazyEmbedder(config)`` reads the config and tokenizer now, the weights on first embed."""

    def __init__(self, config: EmbedderConfig, info: ModelInfo | None = None) -> None:
        """``info``: :func:`~embedder.core.describe_model` of ``config`` when already read."""
        from .core import describe_model

        self.config = config
        self.info: ModelInfo = info or describe_model(config)
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()

    @property
    def spec(self):
        return self.info.spec

    @property
    def fingerprint(self):
        return self.info.fingerprint

    @property
    def tokenizer(self):
        return self.info.tokenizer

    @property
    def max_length(self) -> int:
        return self.info.max_length

    @property
    def dim(self) -> int:
        return int(self.info.fingerprint.dim)

    @property
    def loaded(self) -> bool:
        """Whether the weights have been loaded."""
        return self._embedder is not None

    def format_query(self, query: str, instruction: str | None = None, task: str | None = None) -> str:
        from .core import Embedder

        return Embedder.format_query(self, query, instruction, task)  # reads self.spec only

    def format_document(self, text: str) -> str:
        return self.spec.document_prefix + text

    def load(self) -> Embedder:
        """The loaded :class:`~embedder.core.Embedder` (loads it the first time)."""
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    from .core import Embedder

                    start = time.perf_counter()
                    self._embedder = Embedder.from_config(self.config)
                    logger.info("weights of %s loaded on first use in %.1f s", self.spec.name,
                                time.perf_counter() - start)
        return self._embedder

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("config", "info", "_embedder", "_lock"):
            raise AttributeError(name)
        return getattr(self.load(), name)
