"""Server backend via qdrant-client (also works with its local modes: ":memory:" and path=).

Collection meta is stored as Qdrant's native collection ``metadata`` (server >= 1.16;
qdrant-client 1.20's local mode keeps and persists it too), so it travels with the
collection and needs no side storage. An older server that silently drops it is
detected right after creation and reported.

Transient failures (connection errors, timeouts, HTTP 429/5xx) are retried with
exponential backoff by tenacity; everything else surfaces as :class:`StoreError`.

How new collections are laid out on a server (shards, replicas, on-disk vectors, int8
quantization) comes from :class:`CollectionOptions`; :func:`collection_config` turns them
into ``create_collection`` arguments. qdrant-client's local modes ignore all but ``on_disk``.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ApiException, ResponseHandlingException, UnexpectedResponse
from tenacity import Retrying, before_sleep_log, retry_if_exception, stop_after_attempt, wait_exponential

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
from indexer.store.types import CollectionMismatch, CollectionOptions, Hit, Point, SearchFilter, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

_SCHEMA = {"keyword": models.PayloadSchemaType.KEYWORD, "float": models.PayloadSchemaType.FLOAT}
_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def collection_config(dim: int, options: CollectionOptions | None = None) -> dict[str, Any]:
    """Keyword arguments for ``QdrantClient.create_collection`` (all but the name and metadata)."""
    opts = options or CollectionOptions()
    kwargs: dict[str, Any] = {
        "vectors_config": {
            DENSE_VECTOR: models.VectorParams(
                size=dim, distance=models.Distance.COSINE, on_disk=True if opts.on_disk else None
            )
        },
        "sparse_vectors_config": {SPARSE_VECTOR: models.SparseVectorParams(modifier=models.Modifier.IDF)},
    }
    if opts.shard_number is not None:
        kwargs["shard_number"] = opts.shard_number
    if opts.replication_factor is not None:
        kwargs["replication_factor"] = opts.replication_factor
    if opts.int8:
        kwargs["quantization_config"] = models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
        )
    return kwargs


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (ResponseHandlingException, httpx.TransportError)):
        return True
    return isinstance(exc, UnexpectedResponse) and exc.status_code in _TRANSIENT_STATUS


class QdrantClientStore(VectorStore):
    """:class:`VectorStore` over a ``QdrantClient`` (server, ``:memory:`` or ``path=``).

    The store takes ownership of ``client``: :meth:`close` closes it. ``options`` apply to the
    collections this store creates.
    """

    def __init__(
        self,
        client: QdrantClient,
        *,
        location: str | None = None,
        retries: int = 4,
        options: CollectionOptions | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.options = options or CollectionOptions()
        self._location = location or _describe_client(client)
        self._retrying = Retrying(
            stop=stop_after_attempt(max(1, retries)),
            wait=wait_exponential(multiplier=0.5, max=8),
            retry=retry_if_exception(_is_transient),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        )

    @classmethod
    def connect(
        cls,
        url: str,
        api_key: str | None = None,
        timeout: float = 10.0,
        retries: int = 4,
        options: CollectionOptions | None = None,
    ) -> QdrantClientStore:
        """Connect to the Qdrant server at ``url`` and check that it answers.

        Raises :class:`StoreError` when it is unreachable or rejects the API key.
        """
        hint = (
            "Check that the server is running (docker compose up -d qdrant) or unset "
            "RAG_QDRANT_URL to use the embedded store."
        )
        try:
            client = QdrantClient(
                url=url, api_key=api_key, timeout=max(1, math.ceil(timeout)), check_compatibility=False
            )
        except Exception as exc:
            raise StoreError(f"Invalid Qdrant URL {url!r}: {exc}. {hint}") from exc
        try:
            client.get_collections()
        except UnexpectedResponse as exc:
            client.close()
            if exc.status_code in (401, 403):
                raise StoreError(
                    f"Qdrant at {url} rejected the request (HTTP {exc.status_code}): check the "
                    "API key (api_key / RAG_QDRANT_API_KEY)."
                ) from exc
            raise StoreError(f"Qdrant at {url} answered HTTP {exc.status_code}: {exc}. {hint}") from exc
        except Exception as exc:
            client.close()
            raise StoreError(f"Cannot reach Qdrant at {url}: {exc}. {hint}") from exc
        log.info("connected to Qdrant at %s", url)
        return cls(client, location=f"Qdrant server at {url}", retries=retries, options=options)

    @classmethod
    def open_local(cls, folder: str | Path, options: CollectionOptions | None = None) -> QdrantClientStore:
        """qdrant-client's local mode on files in ``folder`` (offline copies and tests, not a product
        default: it searches by brute force). Raises :class:`StoreError` when another program holds it."""
        folder = Path(folder).expanduser().resolve()
        try:
            client = QdrantClient(path=str(folder))
        except Exception as exc:  # noqa: BLE001 - portalocker/IO errors: say what to do
            raise StoreError(f"Cannot open qdrant-client local store at {folder}: {exc}; "
                             "close other programs using it or choose another folder.") from exc
        return cls(client, options=options)

    # ----- VectorStore API --------------------------------------------------------------
    def collections(self) -> list[str]:
        """Names of all collections on the server, sorted."""
        resp = self._call(None, "list collections", self.client.get_collections)
        return sorted(c.name for c in resp.collections)

    def collection_meta(self, name: str) -> dict[str, Any] | None:
        """The collection's metadata dict, or None when ``name`` does not exist."""
        check_name(name)
        if not self._exists(name):
            return None
        info = self._call(name, "read collection info", self.client.get_collection, name)
        return dict(info.config.metadata or {})

    def count(self, name: str) -> int:
        """Exact number of points."""
        return self._call(name, "count points", self.client.count, name, exact=True).count

    def delete_where(self, name: str, source: str) -> None:
        """Delete every point whose ``metadata.source`` equals ``source``."""
        flt = models.Filter(must=[models.FieldCondition(key=SOURCE_FIELD, match=models.MatchValue(value=source))])
        selector = models.FilterSelector(filter=flt)
        self._call(name, f"delete points of {source}", self.client.delete, name, selector, wait=True)

    def iter_payloads(
        self, name: str, fields: list[str], page_size: int = 1000
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(id, payload subset)`` for every point, ``page_size`` per scroll call."""
        with_payload: Any = list(fields) if fields else False
        offset: Any = None
        while True:
            records, offset = self._call(
                name, "scroll", self.client.scroll, name,
                limit=page_size, offset=offset, with_payload=with_payload, with_vectors=False,
            )
            for rec in records:
                yield str(rec.id), dict(rec.payload or {})
            if offset is None:
                return

    def build_index(self, name: str) -> None:
        """No-op: the server's optimizer builds HNSW in the background after writes."""
        self.dim(name)  # still report a missing collection
        log.debug("build_index(%s): left to the Qdrant optimizer", name)

    def close(self) -> None:
        """Close the underlying client."""
        self.client.close()

    def describe(self) -> str:
        """``"Qdrant server at URL"`` (or the local-mode location)."""
        return self._location

    # ----- backend hooks ----------------------------------------------------------------
    def _update_meta(self, name: str, changes: dict[str, Any]) -> None:
        meta = {**(self.collection_meta(name) or {}), **changes}
        self._call(name, "update collection metadata", self.client.update_collection, name, metadata=meta)

    def _create(self, name: str, dim: int, meta: dict[str, Any]) -> None:
        self._call(
            name, "create collection", self.client.create_collection, name,
            metadata=meta, **collection_config(dim, self.options),
        )
        with warnings.catch_warnings():  # local mode warns that payload indexes do nothing
            warnings.filterwarnings("ignore", message="Payload indexes have no effect")
            for field, kind in INDEXED_FIELDS.items():
                self._call(
                    name, f"index {field}", self.client.create_payload_index, name, field,
                    field_schema=_SCHEMA[kind], wait=True,
                )
        stored = self._call(name, "read collection info", self.client.get_collection, name).config.metadata
        if meta and stored != meta:
            self._call(name, "drop collection", self.client.delete_collection, name)
            raise StoreError(
                f"{self._location} did not keep the collection metadata of {name!r} "
                "(collection metadata needs Qdrant >= 1.16); upgrade the server."
            )

    def _drop(self, name: str) -> None:
        if self._exists(name):
            self._call(name, "drop collection", self.client.delete_collection, name)
            log.info("dropped collection %s from %s", name, self._location)

    def _load_dim(self, name: str) -> int:
        if not self._exists(name):
            raise self._not_found(name)
        info = self._call(name, "read collection info", self.client.get_collection, name)
        vectors = info.config.params.vectors
        params = vectors.get(DENSE_VECTOR) if isinstance(vectors, dict) else None
        if params is None:
            raise CollectionMismatch(
                f"Collection {name!r} in {self._location} has no {DENSE_VECTOR!r} vector: it was not "
                "created by this application; use another collection name."
            )
        return int(params.size)

    def _upsert_batch(self, name: str, batch: list[tuple[Point, list[float], SparseVec]]) -> None:
        points = []
        for p, dense, sp in batch:
            vector: dict[str, Any] = {DENSE_VECTOR: dense}
            if sp:  # text without tokens: no sparse vector at all (older servers reject empty ones)
                vector[SPARSE_VECTOR] = models.SparseVector(indices=sp.indices, values=sp.values)
            points.append(models.PointStruct(id=p.id, vector=vector, payload=p.payload))
        self._call(name, f"upsert {len(points)} points", self.client.upsert, name, points, wait=True)

    def _delete_ids(self, name: str, ids: list[str]) -> None:
        selector = models.PointIdsList(points=list(ids))
        self._call(name, f"delete {len(ids)} points", self.client.delete, name, selector, wait=True)

    def _retrieve(self, name: str, ids: list[str]) -> list[Hit]:
        recs = self._call(
            name, "retrieve", self.client.retrieve, name, ids, with_payload=True, with_vectors=False
        )
        return [Hit(str(r.id), 0.0, dict(r.payload or {})) for r in recs]

    def _scroll_points(
        self, name: str, page_size: int
    ) -> Iterator[list[tuple[str, list[float], dict[str, Any]]]]:
        offset: Any = None
        while True:
            records, offset = self._call(
                name, "scroll", self.client.scroll, name,
                limit=page_size, offset=offset, with_payload=True, with_vectors=[DENSE_VECTOR],
            )
            yield [(str(r.id), _dense_of(r.vector), dict(r.payload or {})) for r in records]
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
        f = _client_filter(flt)
        sparse_q = models.SparseVector(indices=sparse.indices, values=sparse.values) if sparse else None
        kwargs: dict[str, Any]
        if mode == "hybrid":
            pl = prefetch_limit(limit)
            kwargs = {
                "prefetch": [
                    models.Prefetch(query=dense, using=DENSE_VECTOR, limit=pl, filter=f),
                    models.Prefetch(query=sparse_q, using=SPARSE_VECTOR, limit=pl, filter=f),
                ],
                "query": (models.RrfQuery(rrf=models.Rrf(k=RRF_K, weights=list(RRF_WEIGHTS)))
                          if self.fusion == "rrf" else models.FusionQuery(fusion=models.Fusion.DBSF)),
            }
        elif mode == "dense":
            kwargs = {"query": dense, "using": DENSE_VECTOR}
        else:
            kwargs = {"query": sparse_q, "using": SPARSE_VECTOR}
        resp = self._call(
            name, f"{mode} search", self.client.query_points, name,
            query_filter=f, limit=limit, with_payload=True, **kwargs,
        )
        return [Hit(str(p.id), float(p.score), dict(p.payload or {})) for p in resp.points]

    # ----- helpers ----------------------------------------------------------------------
    def _exists(self, name: str) -> bool:
        return bool(self._call(name, "check collection", self.client.collection_exists, name))

    def _exists_quietly(self, name: str) -> bool:
        try:
            return bool(self.client.collection_exists(name))
        except Exception:  # noqa: BLE001 - only used to pick the better error message
            return True

    def _call(self, name: str | None, action: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a client call with retries; translate failures into StoreError."""
        try:
            return self._retrying(fn, *args, **kwargs)
        except StoreError:
            raise
        except (ResponseHandlingException, httpx.TransportError) as exc:
            raise StoreError(
                f"Lost connection to {self._location} while trying to {action}: {exc}. "
                "Check that the server is running (docker compose up -d qdrant)."
            ) from exc
        except (ApiException, ValueError, KeyError) as exc:
            if name is not None and not self._exists_quietly(name):
                raise self._not_found(name) from exc
            raise StoreError(f"{self._location} failed to {action} ({name!r}): {exc}") from exc


def _dense_of(vector: Any) -> list[float]:
    """The "dense" vector of a scrolled record (named vectors come back as a dict)."""
    dense = vector.get(DENSE_VECTOR) if isinstance(vector, dict) else None
    if dense is None:
        raise CollectionMismatch(
            f"A point has no {DENSE_VECTOR!r} vector: the collection was not created by this "
            "application; use another collection name."
        )
    return [float(x) for x in dense]


def _describe_client(client: QdrantClient) -> str:
    opts = getattr(client, "init_options", {}) or {}
    url = opts.get("url") or opts.get("host")
    location = opts.get("location")
    if url or (location and location != ":memory:"):
        return f"Qdrant server at {url or location}"
    if opts.get("path"):
        return f"Qdrant local store at {opts['path']}"
    return "in-memory Qdrant (qdrant-client local mode)"


def _client_filter(flt: SearchFilter | None) -> models.Filter | None:
    """Translate a :class:`SearchFilter` (minus ``path_glob``) into a qdrant-client Filter."""
    if flt is None:
        return None
    must: list[Any] = []
    if flt.path_prefix is not None:
        value = models.MatchValue(value=flt.path_prefix)
        must.append(
            models.Filter(
                should=[
                    models.FieldCondition(key=DIRS_FIELD, match=value),
                    models.FieldCondition(key=SOURCE_FIELD, match=value),
                ]
            )
        )
    if flt.file_types:
        must.append(models.FieldCondition(key=FILE_TYPE_FIELD, match=models.MatchAny(any=list(flt.file_types))))
    if flt.modified_after is not None:
        must.append(models.FieldCondition(key=MTIME_FIELD, range=models.Range(gt=flt.modified_after)))
    return models.Filter(must=must) if must else None
