"""Value types and errors of the store layer: what goes in (:class:`Point`), what comes out
(:class:`Hit`), how a search is narrowed (:class:`SearchFilter`), how a server lays out
collections (:class:`CollectionOptions`), and the :class:`StoreError` family.

The interface that uses them is :class:`indexer.store.base.VectorStore`.
"""

from __future__ import annotations

import fnmatch
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexer.store.payload import normalize_file_type, normalize_path

#: Upper bound on candidates fetched when post-filtering with ``path_glob``.
GLOB_MAX_CANDIDATES = 10_000


class StoreError(RuntimeError):
    """A store operation failed; the message says what to do next."""


class StoreLocked(StoreError):
    """The embedded store is held by another process."""


class CollectionNotFound(StoreError):
    """The named collection does not exist."""


class CollectionMismatch(StoreError):
    """A collection exists with a different vector size or meta than requested."""


@dataclass(frozen=True, slots=True)
class Point:
    """One chunk to store: ``id`` (UUID string), dense vector, BM25 ``text`` and payload."""

    id: str
    dense: Sequence[float]
    text: str
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", normalize_id(self.id))
        if not isinstance(self.text, str):
            raise ValueError(f"Point {self.id}: text must be a str, got {type(self.text).__name__}")


@dataclass(frozen=True, slots=True)
class Hit:
    """A search or retrieve result; ``score`` is the engine's score (0.0 for retrieve)."""

    id: str
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Restricts a search; all given conditions must hold.

    - ``path_prefix``: the source is this file or lies under this directory
      (keyword match on ``metadata.dirs``; normalised with ``normalize_path``).
    - ``file_types``: ``metadata.file_type`` is one of these (``"pdf"``, ``".md"``...).
    - ``modified_after``: ``metadata.mtime`` > this epoch time.
    - ``path_glob``: fnmatch pattern on ``metadata.source``. Qdrant cannot match globs,
      so the store over-fetches (4*k candidates, growing 4x up to
      ``GLOB_MAX_CANDIDATES``) and filters client-side. ``*`` also matches ``/``; a pattern
      matches the absolute path, the file name, or any path tail (``docs/*.md``).
    """

    path_prefix: str | None = None
    path_glob: str | None = None
    file_types: tuple[str, ...] = ()
    modified_after: float | None = None

    def __post_init__(self) -> None:
        if self.path_prefix is not None:
            object.__setattr__(self, "path_prefix", normalize_path(self.path_prefix))
        types = (self.file_types,) if isinstance(self.file_types, str) else self.file_types
        object.__setattr__(self, "file_types", tuple(normalize_file_type(t) for t in types))
        if self.modified_after is not None:
            object.__setattr__(self, "modified_after", float(self.modified_after))
        if self.path_glob == "":
            object.__setattr__(self, "path_glob", None)

    def matches_glob(self, source: str) -> bool:
        """True when ``source`` matches ``path_glob`` (or there is no glob)."""
        pat = self.path_glob
        if pat is None:
            return True
        return (
            fnmatch.fnmatch(source, pat)
            or fnmatch.fnmatch(os.path.basename(source), pat)
            or fnmatch.fnmatch(source, "*/" + pat.lstrip("/"))
        )


def normalize_id(value: object) -> str:
    """Canonical UUID string for ``value``; ValueError naming the value otherwise."""
    try:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
    except ValueError:
        raise ValueError(
            f"Point id {value!r} is not a UUID string; derive ids with "
            "indexer.store.payload.chunk_id(source, chunk_index)"
        ) from None


def as_floats(vec: Sequence[float]) -> list[float]:
    """A plain list of floats from a list, tuple or numpy array."""
    if getattr(vec, "dtype", None) is not None and vec.dtype.kind == "f":
        return vec.tolist()  # a float array's tolist() is already Python floats
    tolist = getattr(vec, "tolist", None)
    return list(map(float, tolist() if tolist else vec))


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


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
