"""The HTTP client of a running ``rag serve``: what ``rag search``, ``rag status``, ``rag index``,
``rag mcp`` and the page use when the data dir's endpoint file points to a live service."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import httpx

from .endpoint import read_endpoint
from .jobs import ACTIVE

log = logging.getLogger(__name__)


class ServiceRequestError(Exception):
    """The service refused a request; the message is its ``detail`` (it names the field)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class RemoteClient:
    """Calls one service's API (``url``), with ``api_key`` as a bearer token when given."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    @classmethod
    def for_data_dir(cls, data_dir: Path, api_key: str | None = None) -> RemoteClient | None:
        """The client of the service running for ``data_dir``, or None when none answers."""
        endpoint = read_endpoint(data_dir)
        if endpoint is None:
            return None
        client = cls(endpoint.url, api_key if api_key is not None else os.environ.get("RAG_API_KEY"))
        try:
            client._http.get("/health", timeout=2.0).raise_for_status()
        except httpx.HTTPError as exc:
            log.info("service at %s does not answer (%s): opening the store directly", endpoint.url, exc)
            client.close()
            return None
        return client

    def _call(self, method: str, path: str, **kwargs) -> dict:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ServiceRequestError(response.status_code, f"{detail} (service at {self.url})")
        return response.json()

    # -- the operations (also the MCP tools' backend) ---------------------------------------------
    def search(self, query: str, k: int = 10, *, mode: str | None = None, task: str | None = None,
               instruction: str | None = None, filters: dict | None = None, collection: str | None = None,
               rerank: bool = False) -> dict:
        body = {"query": query, "k": k, "mode": mode, "task": task, "instruction": instruction,
                "filters": filters, "collection": collection, "rerank": rerank}
        return self._call("POST", "/search", json={k: v for k, v in body.items() if v is not None})

    def collections(self) -> list[str]:
        return self._call("GET", "/collections")["collections"]

    def status(self) -> dict:
        return self._call("GET", "/status")

    def index(self, path: str, collection: str | None = None) -> dict:
        return self._call("POST", "/index", json={"path": str(path), "collection": collection})

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/index/{job_id}")

    def wait(self, job_id: str, poll: float = 0.5, on_progress=None) -> dict:
        """Poll the job until it ends; ``on_progress(done, total)`` on each poll."""
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job["files_done"], job["files_total"])
            if job["state"] not in ACTIVE:
                return job
            time.sleep(poll)

    def embeddings(self, texts: list[str], input_type: str = "document", task: str | None = None,
                   instruction: str | None = None, adapter: str | None = None) -> list[list[float]]:
        body = {"input": texts, "input_type": input_type, "task": task, "instruction": instruction,
                "adapter": adapter}
        data = self._call("POST", "/v1/embeddings", json={k: v for k, v in body.items() if v is not None})["data"]
        return [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]

    def close(self) -> None:
        self._http.close()
