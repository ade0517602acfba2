"""Store interface shared by the embedded (qdrant-edge) and server (qdrant-client) backends.

Every collection has a dense vector named ``"dense"`` (cosine) and a sparse vector named
``"bm25"`` (IDF applied by the engine, see :mod:`indexer.store.sparse`). Point payloads
follow :mod:`indexer.store.payload`.

:class:`VectorStore` implements input validation, batching, query encoding and the
``path_glob`` post-filter once; backends implement the underscore methods. The value
types it takes and returns (points, hits, filters, errors) are in :mod:`indexer.store.types`.
"""

from __future__ import annotations

import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from indexer.modes import DEFAULT_FUSION, MODES
from indexer.store.payload import CONTENT_KEY, METADATA_KEY, embedded_text, stored_chunk_context
from indexer.store.sparse import SparseVec, encode_document, encode_query
from indexer.store.types import GLOB_MAX_CANDIDATES, CollectionMismatch, CollectionNotFound, Hit, Point, SearchFilter
from indexer.store.types import as_floats, batched, normalize_id

log = logging.getLogger(__name__)

DENSE_VECTOR = "dense"
SPARSE_VECTOR = "bm25"
#: Hybrid fusion: Qdrant's weighted Reciprocal Rank Fusion over the dense and the sparse
#: prefetch, score = sum_i 1 / ((rank0_i + 1) / w_i + k - 1) (``1 / (k + rank0)`` at w = 1);
#: used by both backends. Chosen on the real-query sets in bench/README.md ("Search quality").
RRF_K = 2
RRF_WEIGHTS: tuple[float, float] = (1.0, 1.0)   # (dense, sparse)
#: Each hybrid prefetch fetches ``max(HYBRID_PREFETCH_MIN, limit * HYBRID_PREFETCH_FACTOR)``.
HYBRID_PREFETCH_FACTOR = 4
HYBRID_PREFETCH_MIN = 20
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Query:
    """One search's inputs, each built once: the dense vector (dense and hybrid modes) and the BM25
    vector of the text (sparse and hybrid). The caller builds it with :meth:`of`; the store runs it.

    A hybrid query whose text has no searchable tokens (only stopwords, say) runs as dense.
    """

    mode: str
    dense: list[float] | None = None
    sparse: SparseVec | None = None

    @classmethod
    def of(cls, mode: str, dense: Sequence[float] | None = None, text: str | None = None) -> Query:
        if mode not in MODES:
            raise ValueError(f"Unknown search mode {mode!r}; valid modes: {', '.join(MODES)}")
        if mode in ("dense", "hybrid") and dense is None:
            raise ValueError(f"search mode {mode!r} needs a dense query vector (dense=...)")
        if mode in ("sparse", "hybrid") and text is None:
            raise ValueError(f"search mode {mode!r} needs a query text (text=...)")
        sparse = encode_query(text) if mode != "dense" else None
        if mode == "hybrid" and not sparse:
            mode = "dense"
        return cls(mode, as_floats(dense) if mode != "sparse" else None, sparse or None)


class VectorStore(ABC):
    """A set of named collections of chunk points with dense, sparse and hybrid search."""

    batch_size: int = 256
    #: How hybrid search fuses its dense and sparse candidates: ``"dbsf"`` (Qdrant's distribution-based
    #: score fusion: each list's scores normalised by their mean +/- 3 standard deviations, then summed;
    #: the default, best on the real-query sets in bench/README.md) or ``"rrf"`` (weighted Reciprocal
    #: Rank Fusion, :data:`RRF_K` / :data:`RRF_WEIGHTS`).
    fusion: str = DEFAULT_FUSION

    def __init__(self) -> None:
        self._dims: dict[str, int] = {}

    # ----- public API -------------------------------------------------------------------
    @abstractmethod
    def collections(self) -> list[str]:
        """Names of all collections, sorted."""

    def create_collection(self, name: str, dim: int, meta: dict[str, Any]) -> None:
        """Create ``name`` with a ``dim``-sized cosine "dense" vector and a "bm25" sparse one.

        ``meta`` (JSON-able: embedder fingerprint, settings) is stored with the collection.
        Creating an existing collection with the same dim and meta is a no-op; a different
        dim or meta raises :class:`CollectionMismatch`.
        """
        check_name(name)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        try:
            meta = json.loads(json.dumps(meta))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"collection meta for {name!r} is not JSON-serialisable: {exc}") from None
        if not isinstance(meta, dict):
            raise ValueError(f"collection meta must be a dict, got {type(meta).__name__}")
        existing = self.collection_meta(name)
        if existing is not None:
            have_dim = self.dim(name)
            if have_dim == dim and existing == meta:
                return
            what = f"dim={have_dim} (requested {dim})" if have_dim != dim else "different meta"
            raise CollectionMismatch(
                f"Collection {name!r} already exists in {self.describe()} with {what}; "
                "drop it and re-index, or index into a new collection name."
            )
        self._create(name, dim, meta)
        self._dims[name] = dim
        log.info("created collection %s (dim=%d) in %s", name, dim, self.describe())

    @abstractmethod
    def collection_meta(self, name: str) -> dict[str, Any] | None:
        """The meta dict stored by :meth:`create_collection`; None if ``name`` does not exist."""

    def update_collection_meta(self, name: str, changes: dict[str, Any]) -> None:
        """Merge ``changes`` (JSON-able, top-level keys) into the meta of existing collection ``name``."""
        check_name(name)
        if self.collection_meta(name) is None:
            raise self._not_found(name)
        self._update_meta(name, json.loads(json.dumps(changes)))

    def drop_collection(self, name: str) -> None:
        """Delete ``name`` and all its points; no-op when it does not exist."""
        check_name(name)
        self._dims.pop(name, None)
        self._drop(name)

    @abstractmethod
    def count(self, name: str) -> int:
        """Exact number of points in ``name``."""

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Insert or overwrite ``points`` (idempotent per id), in batches of ``batch_size``."""
        if not points:
            return
        dim = self.dim(name)
        for p in points:
            if len(p.dense) != dim:
                raise CollectionMismatch(
                    f"Point {p.id} has a {len(p.dense)}-dim vector but collection {name!r} "
                    f"stores {dim}-dim vectors; the embedder changed, re-index into a new collection."
                )
        for batch in batched(points, self.batch_size):
            self._upsert_batch(name, [(p, as_floats(p.dense), encode_document(p.text)) for p in batch])

    def delete(self, name: str, ids: Iterable[str]) -> None:
        """Delete the points with these ids (missing ids are ignored)."""
        norm = [normalize_id(i) for i in ids]
        for batch in batched(norm, self.batch_size * 4):
            self._delete_ids(name, list(batch))

    @abstractmethod
    def delete_where(self, name: str, source: str) -> None:
        """Delete every point whose ``metadata.source`` equals ``source``."""

    @abstractmethod
    def iter_payloads(
        self, name: str, fields: list[str], page_size: int = 1000
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(id, payload subset)`` for all points, scrolling ``page_size`` at a time.

        ``fields`` are payload paths such as ``"metadata.source"``; the subset keeps the
        nesting (``{"metadata": {"source": ...}}``). Empty ``fields`` yields ``{}``.
        """

    def iter_points(self, name: str, batch: int = 256) -> Iterator[list[Point]]:
        """Yield every point of ``name`` as lists (pages) of at most ``batch`` :class:`Point` objects.

        Each point carries its id, stored dense vector (as the engine keeps it: unit length
        for cosine), payload, and ``text``: what BM25 indexed (``payload["page_content"]``, after
        the title where the collection's ``chunk_context`` is ``title``), so
        ``other.upsert(name, page)`` copies a collection. Fails now, not on first iteration,
        when ``name`` does not exist.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        self.dim(name)
        context = stored_chunk_context(self.collection_meta(name) or {})

        def text(payload: dict) -> str:
            title = str((payload.get(METADATA_KEY) or {}).get("title") or "")
            return embedded_text(str(payload.get(CONTENT_KEY) or ""), title, context)

        return (
            [Point(pid, dense, text(payload), payload) for pid, dense, payload in page]
            for page in self._scroll_points(name, batch)
            if page
        )

    def retrieve(self, name: str, ids: Iterable[str]) -> list[Hit]:
        """Points with these ids (payload only, score 0.0), in the requested order; missing skipped."""
        norm = [normalize_id(i) for i in ids]
        if not norm:
            return []
        found = {h.id: h for h in self._retrieve(name, norm)}
        return [found[i] for i in dict.fromkeys(norm) if i in found]

    def search(
        self,
        name: str,
        *,
        dense: Sequence[float] | None = None,
        text: str | None = None,
        mode: str = "hybrid",
        k: int = 10,
        flt: SearchFilter | None = None,
    ) -> list[Hit]:
        """Top ``k`` points for a dense vector and/or a keyword query: :meth:`run_query` of
        ``Query.of(mode, dense, text)``.

        ``mode``: "dense" (needs ``dense``), "sparse" (BM25 on ``text``) or "hybrid" (both, fused
        in the engine with :attr:`fusion`). Scores are the engine's scores.
        """
        return self.run_query(name, Query.of(mode, dense, text), k=k, flt=flt)

    def run_query(self, name: str, query: Query, *, k: int = 10, flt: SearchFilter | None = None) -> list[Hit]:
        """Top ``k`` points for ``query`` (its vectors built once, by the caller)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if query.dense is not None and len(query.dense) != self.dim(name):
            raise CollectionMismatch(
                f"Query vector has {len(query.dense)} dims but collection {name!r} stores "
                f"{self.dim(name)}-dim vectors; query with the embedder the collection was built with."
            )
        if query.mode == "sparse" and not query.sparse:
            return []
        if flt is None or flt.path_glob is None:
            return self._query(name, query.dense, query.sparse, query.mode, k, flt)
        limit = max(4 * k, 32)
        while True:
            hits = self._query(name, query.dense, query.sparse, query.mode, limit, flt)
            matched = [h for h in hits if flt.matches_glob(_source(h))]
            if len(matched) >= k or len(hits) < limit or limit >= GLOB_MAX_CANDIDATES:
                return matched[:k]
            limit = min(limit * 4, GLOB_MAX_CANDIDATES)

    def dim(self, name: str) -> int:
        """Dense vector size of ``name``; :class:`CollectionNotFound` if it does not exist."""
        if name not in self._dims:
            self._dims[name] = self._load_dim(name)
        return self._dims[name]

    @abstractmethod
    def build_index(self, name: str) -> None:
        """Finish a bulk load (build HNSW / let the optimizer run)."""

    @abstractmethod
    def close(self) -> None:
        """Release files, locks and connections; the store is unusable afterwards."""

    @abstractmethod
    def describe(self) -> str:
        """Human-readable location, e.g. "embedded store at PATH" or "Qdrant server at URL"."""

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _not_found(self, name: str) -> CollectionNotFound:
        return CollectionNotFound(
            f"Collection {name!r} does not exist in {self.describe()}; "
            "run `rag index` to create it (existing: "
            f"{', '.join(self.collections()) or 'none'})."
        )

    # ----- backend hooks ----------------------------------------------------------------
    @abstractmethod
    def _create(self, name: str, dim: int, meta: dict[str, Any]) -> None: ...

    @abstractmethod
    def _drop(self, name: str) -> None: ...

    @abstractmethod
    def _update_meta(self, name: str, changes: dict[str, Any]) -> None: ...

    @abstractmethod
    def _load_dim(self, name: str) -> int: ...

    @abstractmethod
    def _upsert_batch(self, name: str, batch: list[tuple[Point, list[float], SparseVec]]) -> None: ...

    @abstractmethod
    def _delete_ids(self, name: str, ids: list[str]) -> None: ...

    @abstractmethod
    def _retrieve(self, name: str, ids: list[str]) -> list[Hit]: ...

    @abstractmethod
    def _scroll_points(
        self, name: str, page_size: int
    ) -> Iterator[list[tuple[str, list[float], dict[str, Any]]]]:
        """Pages of ``(id, dense vector, full payload)`` covering every point."""

    @abstractmethod
    def _query(
        self,
        name: str,
        dense: list[float] | None,
        sparse: SparseVec | None,
        mode: str,
        limit: int,
        flt: SearchFilter | None,
    ) -> list[Hit]: ...


def check_name(name: str) -> None:
    """ValueError unless ``name`` is a safe collection name (also a directory name)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"Invalid collection name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "not starting with '.' or '-'"
        )


def prefetch_limit(limit: int) -> int:
    """Candidates each hybrid prefetch fetches for a fused ``limit``."""
    return max(HYBRID_PREFETCH_MIN, limit * HYBRID_PREFETCH_FACTOR)


def _source(hit: Hit) -> str:
    meta = hit.payload.get("metadata") or {}
    return str(meta.get("source", ""))
