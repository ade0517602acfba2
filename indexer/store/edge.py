"""Embedded store: Qdrant's own engine in-process via qdrant-edge-py (``qdrant_edge``).

Layout under ``data_dir``::

    data_dir/.lock                    advisory lock held while an EdgeStore is open
    data_dir/<collection>/shard/      one EdgeShard (segments + WAL)
    data_dir/<collection>/collection.json   sidecar: {"format": 1, "dim": int, "meta": {...}}

The sidecar is written last, so a directory without it is an interrupted create and
is replaced by the next :meth:`EdgeStore.create_collection`. Only one process may open
the store; a second one gets :class:`StoreLocked` (a Qdrant server allows sharing).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import qdrant_edge as qe

from indexer.store.base import (
    DENSE_VECTOR,
    RRF_K,
    RRF_WEIGHTS,
    SPARSE_VECTOR,
    VectorStore,
    check_name,
    prefetch_limit,
)
from indexer.store.payload import DIRS_FIELD, FILE_TYPE_FIELD, INDEXED_FIELDS, MTIME_FIELD, SOURCE_FIELD
from indexer.store.sparse import SparseVec
from indexer.store.types import Hit, Point, SearchFilter, StoreError, StoreLocked

try:  # POSIX advisory lock; elsewhere the engine's own WAL lock still protects the shards
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

SIDECAR = "collection.json"
SHARD_DIR = "shard"
_SCHEMA = {"keyword": qe.PayloadSchemaType.Keyword, "float": qe.PayloadSchemaType.Float}


def locked_message(data_dir: Path) -> str:
    """The explanation given when another process holds the embedded store."""
    return (
        f"The embedded store at {data_dir} is held by another process (e.g. a running "
        "`rag index` or `rag ui`) or by another open EdgeStore. Stop it and retry; or keep "
        "one `rag serve` running for this folder (rag search/status/index and the page then go "
        "through it); or run a Qdrant server (docker compose up -d qdrant) and set RAG_QDRANT_URL: a server "
        "allows concurrent access."
    )


class EdgeStore(VectorStore):
    """Embedded :class:`VectorStore` with one qdrant-edge shard directory per collection."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.data_dir = Path(os.path.abspath(Path(data_dir).expanduser()))
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the embedded store directory {self.data_dir}: {exc}; "
                "choose a writable data directory."
            ) from exc
        self._mutex = threading.RLock()
        self._shards: dict[str, qe.EdgeShard] = {}
        self._sidecars: dict[str, dict[str, Any]] = {}
        self._lock_file: IO[str] | None = self._acquire_lock()
        self._closed = False

    # ----- VectorStore API --------------------------------------------------------------
    def collections(self) -> list[str]:
        """Names of the collection directories that have a sidecar, sorted."""
        return sorted(
            d.name for d in self.data_dir.iterdir() if d.is_dir() and (d / SIDECAR).is_file()
        )

    def collection_meta(self, name: str) -> dict[str, Any] | None:
        """The stored meta dict, or None when ``name`` does not exist."""
        check_name(name)
        sidecar = self._sidecar(name)
        return None if sidecar is None else json.loads(json.dumps(sidecar["meta"]))

    def count(self, name: str) -> int:
        """Exact number of points."""
        shard = self._shard(name)
        return self._engine(name, "count points", lambda: shard.count(qe.CountRequest(exact=True)))

    def delete_where(self, name: str, source: str) -> None:
        """Delete every point whose ``metadata.source`` equals ``source``."""
        shard = self._shard(name)
        flt = qe.Filter(must=[qe.FieldCondition(SOURCE_FIELD, match=qe.MatchValue(source))])
        op = qe.UpdateOperation.delete_points_by_filter(flt)
        self._engine(name, f"delete points of {source}", lambda: shard.update(op))

    def iter_payloads(
        self, name: str, fields: list[str], page_size: int = 1000
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(id, payload subset)`` for every point, ``page_size`` per scroll call."""
        shard = self._shard(name)  # resolved now: a missing collection fails at the call
        with_payload: Any = qe.PayloadSelector.Include(list(fields)) if fields else False
        return self._scroll(name, shard, with_payload, page_size)

    def _scroll(
        self, name: str, shard: qe.EdgeShard, with_payload: Any, page_size: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        offset: Any = None
        while True:
            req = qe.ScrollRequest(offset=offset, limit=page_size, with_payload=with_payload)
            records, offset = self._engine(name, "scroll", lambda: shard.scroll(req))
            for rec in records:
                yield str(rec.id), dict(rec.payload or {})
            if offset is None:
                return

    def build_index(self, name: str) -> None:
        """Run the segment optimizers (builds HNSW when segments are large enough)."""
        shard = self._shard(name)
        changed = self._engine(name, "optimize", shard.optimize)
        self._engine(name, "flush", shard.flush)
        log.info("optimized collection %s (changed=%s)", name, changed)

    def close(self) -> None:
        """Flush and close all shards and release the store lock (idempotent)."""
        with self._mutex:
            for name, shard in self._shards.items():
                try:
                    shard.flush()
                    shard.close()
                except Exception:  # noqa: BLE001 - keep closing the others
                    log.exception("closing embedded collection %s failed", name)
            self._shards.clear()
            if self._lock_file is not None:
                self._lock_file.close()  # closing the descriptor releases the flock
                self._lock_file = None
            self._closed = True

    def describe(self) -> str:
        """``"embedded store at PATH"``."""
        return f"embedded store at {self.data_dir}"

    # ----- backend hooks ----------------------------------------------------------------
    def _create(self, name: str, dim: int, meta: dict[str, Any]) -> None:
        coll_dir = self.data_dir / name
        with self._mutex:
            self._check_open()
            if coll_dir.exists():
                log.warning("removing incomplete collection directory %s", coll_dir)
                shutil.rmtree(coll_dir)
            config = qe.EdgeConfig(
                vectors={DENSE_VECTOR: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
                sparse_vectors={SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            )
            shard = None
            try:
                shard = qe.EdgeShard.create(str(coll_dir / SHARD_DIR), config)
                for field, kind in INDEXED_FIELDS.items():
                    shard.update(qe.UpdateOperation.create_field_index(field, _SCHEMA[kind]))
                shard.flush()
            except Exception as exc:
                if shard is not None:
                    shard.close()
                raise self._open_error(exc, coll_dir) from exc
            sidecar = {"format": 1, "dim": dim, "meta": meta}
            tmp = coll_dir / (SIDECAR + ".tmp")
            tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, coll_dir / SIDECAR)
            self._sidecars[name] = sidecar
            self._shards[name] = shard

    def _update_meta(self, name: str, changes: dict[str, Any]) -> None:
        with self._mutex:
            sidecar = dict(self._sidecar(name))
            sidecar["meta"] = {**sidecar["meta"], **changes}
            path = self.data_dir / name / SIDECAR
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(sidecar, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, path)  # atomic: a crash leaves the old or the new meta, never half
            self._sidecars[name] = sidecar

    def _drop(self, name: str) -> None:
        with self._mutex:
            self._check_open()
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            self._sidecars.pop(name, None)
            coll_dir = self.data_dir / name
            if coll_dir.exists():
                shutil.rmtree(coll_dir)
                log.info("dropped collection %s from %s", name, self.describe())

    def _load_dim(self, name: str) -> int:
        sidecar = self._sidecar(name)
        if sidecar is None:
            raise self._not_found(name)
        return int(sidecar["dim"])

    def _upsert_batch(self, name: str, batch: list[tuple[Point, list[float], SparseVec]]) -> None:
        shard = self._shard(name)
        points = [
            qe.Point(
                p.id,
                {DENSE_VECTOR: dense, SPARSE_VECTOR: qe.SparseVector(sp.indices, sp.values)},
                p.payload,
            )
            for p, dense, sp in batch
        ]
        op = qe.UpdateOperation.upsert_points(points)
        self._engine(name, f"upsert {len(points)} points", lambda: shard.update(op))

    def _delete_ids(self, name: str, ids: list[str]) -> None:
        shard = self._shard(name)
        op = qe.UpdateOperation.delete_points(list(ids))
        self._engine(name, f"delete {len(ids)} points", lambda: shard.update(op))

    def _retrieve(self, name: str, ids: list[str]) -> list[Hit]:
        shard = self._shard(name)
        recs = self._engine(name, "retrieve", lambda: shard.retrieve(ids, True, False))
        return [Hit(str(r.id), 0.0, dict(r.payload or {})) for r in recs]

    def _scroll_points(
        self, name: str, page_size: int
    ) -> Iterator[list[tuple[str, list[float], dict[str, Any]]]]:
        shard = self._shard(name)
        offset: Any = None
        while True:
            req = qe.ScrollRequest(
                offset=offset, limit=page_size, with_payload=True, with_vector=[DENSE_VECTOR]
            )
            records, offset = self._engine(name, "scroll", lambda: shard.scroll(req))
            yield [
                (str(r.id), [float(x) for x in r.vector[DENSE_VECTOR]], dict(r.payload or {}))
                for r in records
            ]
            if offset is None:
                return

    def _query(
        self,
        name: str,
        dense: list[float] | None,
        sparse: SparseVec | None,
        mode: str,
        limit: int,
        flt: SearchFilter | None,
    ) -> list[Hit]:
        shard = self._shard(name)
        f = _edge_filter(flt)
        dense_q = qe.Query.Nearest(dense, using=DENSE_VECTOR) if dense is not None else None
        sparse_q = (
            qe.Query.Nearest(qe.SparseVector(sparse.indices, sparse.values), using=SPARSE_VECTOR)
            if sparse
            else None
        )
        if mode == "hybrid":
            pl = prefetch_limit(limit)
            req = qe.QueryRequest(
                limit=limit,
                prefetches=[
                    qe.Prefetch(limit=pl, query=dense_q, filter=f),
                    qe.Prefetch(limit=pl, query=sparse_q, filter=f),
                ],
                query=qe.Fusion.Rrf(k=RRF_K, weights=list(RRF_WEIGHTS)) if self.fusion == "rrf" else qe.Fusion.Dbsf(),
                filter=f,
                with_payload=True,
            )
        else:
            query = dense_q if mode == "dense" else sparse_q
            req = qe.QueryRequest(limit=limit, query=query, filter=f, with_payload=True)
        points = self._engine(name, f"{mode} search", lambda: shard.query(req))
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in points]

    # ----- helpers ----------------------------------------------------------------------
    def _sidecar(self, name: str) -> dict[str, Any] | None:
        if name in self._sidecars:
            return self._sidecars[name]
        path = self.data_dir / name / SIDECAR
        if not path.is_file():
            return None
        try:
            sidecar = json.loads(path.read_text(encoding="utf-8"))
            int(sidecar["dim"]), dict(sidecar["meta"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                f"Collection metadata {path} is unreadable ({exc}); delete "
                f"{path.parent} (or drop collection {name!r}) and re-index."
            ) from exc
        self._sidecars[name] = sidecar
        return sidecar

    def _shard(self, name: str) -> qe.EdgeShard:
        with self._mutex:
            self._check_open()
            shard = self._shards.get(name)
            if shard is not None:
                return shard
            check_name(name)
            if self._sidecar(name) is None:
                raise self._not_found(name)
            shard_dir = self.data_dir / name / SHARD_DIR
            try:
                shard = qe.EdgeShard.load(str(shard_dir))
            except Exception as exc:
                raise self._open_error(exc, shard_dir) from exc
            self._shards[name] = shard
            return shard

    def _engine(self, name: str, action: str, fn: Any) -> Any:
        try:
            return fn()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"Embedded store could not {action} in collection {name!r} ({self.data_dir}): {exc}"
            ) from exc

    def _open_error(self, exc: Exception, path: Path) -> StoreError:
        text = str(exc)
        if any(s in text for s in ("WouldBlock", "temporarily unavailable", "already locked")):
            return StoreLocked(locked_message(self.data_dir))
        return StoreError(
            f"Cannot open embedded collection files at {path}: {text}. If they are damaged, "
            "drop the collection and re-index."
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.describe()} is closed; open a new EdgeStore.")

    def _acquire_lock(self) -> IO[str] | None:
        if fcntl is None:  # pragma: no cover - Windows
            return None
        fh = open(self.data_dir / ".lock", "a+", encoding="utf-8")  # noqa: SIM115 - held open
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise StoreLocked(locked_message(self.data_dir)) from None
        return fh


def _edge_filter(flt: SearchFilter | None) -> qe.Filter | None:
    """Translate a :class:`SearchFilter` (minus ``path_glob``) into a qdrant-edge Filter."""
    if flt is None:
        return None
    must: list[Any] = []
    if flt.path_prefix is not None:
        must.append(
            qe.Filter(
                should=[
                    qe.FieldCondition(DIRS_FIELD, match=qe.MatchValue(flt.path_prefix)),
                    qe.FieldCondition(SOURCE_FIELD, match=qe.MatchValue(flt.path_prefix)),
                ]
            )
        )
    if flt.file_types:
        must.append(qe.FieldCondition(FILE_TYPE_FIELD, match=qe.MatchAny(list(flt.file_types))))
    if flt.modified_after is not None:
        must.append(qe.FieldCondition(MTIME_FIELD, range=qe.RangeFloat(gt=flt.modified_after)))
    return qe.Filter(must=must) if must else None
