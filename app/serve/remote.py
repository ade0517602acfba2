"""The search page's service over a running ``rag serve``: the same methods as
:class:`~app.service.SearchService`, answered by the service's HTTP API, so the page works while
the service holds the embedded store (and shares its model instead of loading another copy)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

from indexer.pipeline import FileFailure, IndexReport
from indexer.search import SearchResponse, SearchResult
from indexer.store import SearchFilter

from ..service import (BadRequest, CollectionStatus, FilterOptions, NoIndexYet, Preview, PreviewRefused,
                       SearchService, ServiceError, StoreUnavailable)
from .client import RemoteClient, ServiceRequestError


def _error(exc: ServiceRequestError) -> ServiceError:
    detail = str(exc)
    if exc.status == 404 and detail.startswith("collection"):
        return NoIndexYet(detail)
    if exc.status == 403 and detail.startswith("path"):
        return PreviewRefused(detail.removeprefix("path: "))
    if exc.status == 503:
        return StoreUnavailable(detail)
    if 400 <= exc.status < 500:
        return BadRequest(detail)
    return ServiceError(detail)


def _build(cls, data: dict):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


class RemoteSearchService:
    """What the page calls, through :class:`RemoteClient` (errors become :class:`ServiceError`)."""

    make_filter = staticmethod(SearchService.make_filter)

    def __init__(self, client: RemoteClient) -> None:
        self.client = client
        status = self._call("GET", "/status")
        self.model_name = status["model"]
        self.instructed = bool(status["instructed"])
        self.location = f"{status['store']} (through the service at {client.url})"
        self.embedder = SimpleNamespace(spec=SimpleNamespace(query_prefix=status.get("query_prefix") or ""))

    def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            return self.client._call(method, path, **kwargs)
        except ServiceRequestError as exc:
            raise _error(exc) from exc
        except OSError as exc:
            raise StoreUnavailable(f"The service at {self.client.url} does not answer ({exc}); "
                                   "restart `rag serve` or stop it to open the store directly.") from exc

    def collections(self) -> list[str]:
        return self._call("GET", "/collections")["collections"]

    def status(self, collection: str | None = None) -> CollectionStatus:
        name = collection or self._call("GET", "/collections")["default"]
        status = _build(CollectionStatus, self._call("GET", f"/collections/{name}"))
        return CollectionStatus(**{**status.__dict__, "store": self.location})

    def filter_options(self, collection: str | None = None) -> FilterOptions:
        return _build(FilterOptions, self._call("GET", f"/collections/{collection}/filter-options"))

    def query_text(self, query: str, task: str | None = None, instruction: str | None = None) -> str:
        return self._call("POST", "/query-text", json={"query": query, "task": task, "instruction": instruction})["text"]

    def search(self, query: str, collection: str | None = None, *, k: int = 10, mode: str | None = None,
               task: str | None = None, instruction: str | None = None, flt: SearchFilter | None = None,
               rerank: bool = False) -> SearchResponse:
        filters = None
        if flt is not None:
            filters = {"path": flt.path_prefix, "glob": flt.path_glob, "types": list(flt.file_types),
                       "modified_after": flt.modified_after}
        body = {"query": query, "collection": collection, "k": k, "mode": mode, "task": task,
                "instruction": instruction, "filters": filters, "rerank": rerank}
        body = {k: v for k, v in body.items() if v is not None}
        return SearchResponse.from_dict(self._call("POST", "/search", json=body))

    def context(self, result: SearchResult, collection: str | None = None, before: int = 1,
                after: int = 1) -> list[SearchResult]:
        body = {"result": result.to_dict(), "before": before, "after": after}
        rows = self._call("POST", f"/collections/{collection}/context", json=body)["results"]
        return [SearchResult.from_dict(r) for r in rows]

    def preview(self, path: str | Path, collection: str | None = None) -> Preview:
        return _build(Preview, self._call("GET", f"/collections/{collection}/preview", params={"path": str(path)}))

    def index_folder(self, path: str | Path, collection: str | None = None,
                     on_progress: Callable[[int, int], None] | None = None) -> IndexReport:
        raw = str(path).strip()
        if not raw:
            raise BadRequest("Enter the folder to index.")
        job = self._call("POST", "/index", json={"path": raw, "collection": collection})
        try:
            job = self.client.wait(job["id"], poll=0.3, on_progress=on_progress)
        except ServiceRequestError as exc:
            raise _error(exc) from exc
        if job["state"] != "done":
            raise ServiceError(f"Indexing {raw} {job['state']}: {job['error']}")
        report = dict(job["report"])
        report["failed"] = [FileFailure(**f) for f in report.get("failed", [])]
        return _build(IndexReport, report)

    def close(self) -> None:
        self.client.close()
