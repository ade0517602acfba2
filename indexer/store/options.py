"""How a Qdrant server lays out new collections (a plain dataclass: importing it loads no client)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CollectionOptions:
    """How a server lays out the collections it creates; existing ones keep their layout.

    Settings: ``RAG_SHARDS``, ``RAG_REPLICATION``, ``RAG_ON_DISK``, ``RAG_INT8``.

    - ``shard_number``: shards per collection (None: the server's default, 1 standalone or
      one per node in a cluster). More shards than nodes lets a cluster rebalance later.
    - ``replication_factor``: copies of each shard (None: 1); needs that many cluster nodes.
    - ``on_disk``: keep the original dense vectors memory-mapped on disk instead of in RAM.
    - ``int8``: scalar int8 quantization kept in RAM (4x smaller); searches use it and
      rescore with the originals.
    """

    shard_number: int | None = None
    replication_factor: int | None = None
    on_disk: bool = False
    int8: bool = False

    def __post_init__(self) -> None:
        for name, env in (("shard_number", "RAG_SHARDS"), ("replication_factor", "RAG_REPLICATION")):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} ({env}) must be a positive int or unset, got {value!r}")

    def is_default(self) -> bool:
        """True when nothing differs from a plain collection."""
        return self == CollectionOptions()
