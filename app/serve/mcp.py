"""MCP tools for agents (official ``mcp`` SDK): search, list_collections, status and, only when
enabled, index_folder. Served over stdio by ``rag mcp`` and over streamable HTTP at ``/mcp`` by
``rag serve``. The tools run over a *backend*: the service's own runtime (:class:`LocalBackend`)
or, for ``rag mcp`` while a ``rag serve`` runs for the data dir, its HTTP API
(:class:`~app.serve.client.RemoteClient`)."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import anyio

log = logging.getLogger(__name__)

INSTRUCTIONS = ("Semantic search over the user's indexed documents. Call `search` with a natural-language "
                "query; each result has the chunk text, its source file path, its location in the file "
                "(chunk and character range) and a score. `list_collections` and `status` describe the index.")


class LocalBackend:
    """The tools' operations over a :class:`~app.serve.runtime.Runtime` in this process."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime

    def search(self, query: str, k: int = 10, *, mode: str | None = None, task: str | None = None,
               instruction: str | None = None, filters: dict | None = None, collection: str | None = None) -> dict:
        from ..service import SearchService

        service = self.runtime.service
        f = filters or {}
        after = f.get("after")
        after = date.fromisoformat(after) if isinstance(after, str) and after else after or None
        flt = SearchService.make_filter(f.get("path"), f.get("glob"), f.get("types") or (), after)
        response = service.search(query, collection, k=k, mode=mode, task=task or self.runtime.settings.task,
                                  instruction=instruction or self.runtime.settings.instruction, flt=flt)
        return response.to_dict()

    def collections(self) -> list[str]:
        return self.runtime.service.collections()

    def status(self) -> dict:
        return self.runtime.status()

    def index(self, path: str, collection: str | None = None) -> dict:
        from pathlib import Path

        folder = Path(path).expanduser()
        if not folder.exists():
            raise ValueError(f"path: {path} does not exist on the machine running the service.")
        return self.runtime.jobs.start(str(folder.resolve()), collection or self.runtime.settings.collection).to_dict()

    def job(self, job_id: str) -> dict:
        job = self.runtime.jobs.get(job_id)
        if job is None:
            raise ValueError(f"job_id: no job {job_id!r}")
        return job.to_dict()


def _hit(r: dict) -> dict:
    md = r.get("metadata") or {}
    return {"rank": r["rank"], "score": round(float(r["score"]), 4), "source": md.get("source"),
            "title": md.get("title"), "section": md.get("section") or "",
            "location": {"chunk": md.get("chunk_index", 0) + 1, "chunks": md.get("chunk_count", 1),
                         "start": md.get("start"), "end": md.get("end")},
            "text": r["text"]}


def build_mcp(runtime=None, *, backend=None, allow_index: bool = False):
    """An ``MCPServer`` with the tools over ``backend`` (default: :class:`LocalBackend` of ``runtime``)."""
    from mcp.server.mcpserver import MCPServer

    backend = backend or LocalBackend(runtime)
    server = MCPServer("rag-search", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool()
    async def search(query: str, k: int = 5, instruction: str | None = None, task: str | None = None,
                     mode: str | None = None, path: str | None = None, glob: str | None = None,
                     file_types: list[str] | None = None, modified_after: str | None = None,
                     collection: str | None = None) -> dict[str, Any]:
        """Search the indexed documents. Returns the best chunks: text, source path, location
        (chunk number, character range) and score. `instruction` describes the retrieval task for
        instructed models; `path` (folder), `glob`, `file_types` and `modified_after` (YYYY-MM-DD)
        restrict the results."""
        filters = {"path": path, "glob": glob, "types": file_types or [], "after": modified_after}
        response = await anyio.to_thread.run_sync(
            lambda: backend.search(query, k, mode=mode, task=task, instruction=instruction,
                                   filters=filters, collection=collection))
        return {"query": query, "mode": response["mode"], "score_kind": response.get("score_kind"),
                "results": [_hit(r) for r in response["results"]]}

    @server.tool()
    async def list_collections() -> dict[str, Any]:
        """The collections in the index."""
        return {"collections": await anyio.to_thread.run_sync(backend.collections)}

    @server.tool()
    async def status() -> dict[str, Any]:
        """The store, the model, each collection's size and last indexing time, and index jobs."""
        return await anyio.to_thread.run_sync(backend.status)

    if allow_index:
        @server.tool()
        async def index_folder(path: str, collection: str | None = None) -> dict[str, Any]:
            """Index a folder (or file) on the machine running the service, in the background.
            Returns the job; call `status` to follow its progress."""
            return await anyio.to_thread.run_sync(lambda: backend.index(path, collection))

    return server
