"""The HTTP JSON API of ``rag serve`` (FastAPI; the schema is at ``/openapi.json``, docs at ``/docs``).

- ``GET /health``: liveness (no key needed);
- ``GET /status``: store, model, collections, adapters, batching counters, jobs;
- ``GET /collections``; ``POST /search``;
- ``POST /index`` queues a background job (409 while one for that collection is queued or running;
  jobs run one after another); ``GET /index/{id}`` its progress;
- ``POST /v1/embeddings``: OpenAI/TEI-style embeddings, plus ``input_type``, ``task``/``instruction``
  and ``adapter`` (a LoRA adapter loaded with ``RAG_LORA_ADAPTERS``).

Every refusal is a 4xx whose ``detail`` (and OpenAI-style ``error.message``) names the field.
With an API key, every route but ``/health`` needs ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import base64
import hmac
import logging
from datetime import date
from typing import Literal

import numpy as np
import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from embedder import TASKS
from indexer.modes import MODES

from ..service import (
    BadRequest,
    NoIndexYet,
    PreviewRefused,
    ServiceError,
    StoreUnavailable,
)
from .jobs import JobConflict
from .runtime import Runtime

log = logging.getLogger(__name__)


class Filters(BaseModel):
    path: str | None = Field(None, description="only files under this folder (absolute path)")
    glob: str | None = Field(None, description="only sources matching this glob")
    types: list[str] = Field(default_factory=list, description="file types, e.g. ['md', 'pdf']")
    after: date | None = Field(None, description="modified after this day (YYYY-MM-DD)")
    modified_after: float | None = Field(None, description="modified after this epoch time (wins over after)")

    def to_filter(self):
        from datetime import datetime

        from indexer.store import SearchFilter

        after = self.modified_after
        if after is None and self.after is not None:
            after = datetime.combine(self.after, datetime.min.time()).timestamp()
        if not (self.path or self.glob or self.types or after):
            return None
        return SearchFilter(path_prefix=self.path or None, path_glob=self.glob or None,
                            file_types=tuple(self.types), modified_after=after)


class SearchRequest(BaseModel):
    query: str = Field(..., min_length=1, max_length=4000)
    k: int = Field(10, ge=1, le=200)
    mode: Literal[tuple(MODES)] | None = None  # type: ignore[valid-type]
    task: str | None = None
    instruction: str | None = Field(None, max_length=2000)
    filters: Filters | None = None
    collection: str | None = None
    rerank: bool = False


class QueryTextRequest(BaseModel):
    query: str = Field(..., min_length=1, max_length=4000)
    task: str | None = None
    instruction: str | None = Field(None, max_length=2000)


class ContextRequest(BaseModel):
    result: dict = Field(..., description="a result as /search returns it")
    before: int = Field(1, ge=0, le=20)
    after: int = Field(1, ge=0, le=20)


class IndexRequest(BaseModel):
    path: str = Field(..., min_length=1, description="folder or file on the machine running the service")
    collection: str | None = None


class EmbeddingsRequest(BaseModel):
    input: str | list[str]
    model: str | None = Field(None, description="ignored beyond a check: the service serves one base model")
    input_type: Literal["query", "document"] = "document"
    task: str | None = None
    instruction: str | None = Field(None, max_length=2000)
    adapter: str | None = None
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: little-endian float32 bytes, as the OpenAI client asks by default")
    dimensions: int | None = Field(None, description="only the model's own dimension is served")
    truncate: bool = Field(True, description="false: refuse texts longer than the model's max_length")


def _json(data: dict, status: int = 200) -> Response:
    """orjson straight to bytes (numpy rows included): no per-field validation of large answers."""
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]        # where the field was sent, not its name
    return ".".join(parts) or "body"


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_json(send, 413, f"request body: {int(declared)} bytes is over the "
                                               f"{self.limit}-byte limit; send fewer or shorter texts.")
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, f"request body: over the {self.limit}-byte limit")
            return message

        await self.app(scope, limited, send)


class BearerAuth:
    """Require ``Authorization: Bearer <key>`` on every route but ``/health``; the key is never logged."""

    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self._key = app, key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            return await self.app(scope, receive, send)
        auth = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, given = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self._key):
            return await _send_json(send, 401, "Authorization: a valid 'Bearer <RAG_API_KEY>' header is required.",
                                    {b"www-authenticate": b"Bearer"})
        await self.app(scope, receive, send)


def error_body(status: int, detail: str) -> dict:
    """A refusal: ``detail`` (FastAPI's shape) and the same text as OpenAI's ``error.message``, so
    OpenAI clients show it in their exceptions."""
    kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
        status, "invalid_request_error" if status < 500 else "server_error")
    return {"detail": detail, "error": {"message": detail, "type": kind, "code": status}}


async def _send_json(send: Send, status: int, detail: str, headers: dict | None = None) -> None:
    body = orjson.dumps(error_body(status, detail))
    extra = list((headers or {}).items())
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


def create_app(runtime: Runtime, api_key: str | None = None, lifespan=None) -> FastAPI:
    """The FastAPI app over ``runtime``; with ``api_key``, bearer auth on all routes but /health."""
    app = FastAPI(title="rag-search", version="0.1.0", lifespan=lifespan,
                  description="Semantic search over your documents: search, index jobs, embeddings.")
    app.state.runtime = runtime
    service = runtime.service

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        text = "; ".join(f"{_field(e.get('loc', ()))}: {e.get('msg')}" for e in errors[:5])
        return JSONResponse({**error_body(422, text), "errors": [
            {"field": _field(e.get("loc", ())), "message": e.get("msg")} for e in errors]}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _refused(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                            headers=exc.headers)

    seen: set[str] = set()   # collections found once: no store listing on each search (a dropped one is
                             # still refused, by the search itself)

    def collection_or_404(name: str | None) -> str:
        name = name or runtime.settings.collection
        if name in seen:
            return name
        have = service.collections()
        if name not in have:
            raise HTTPException(404, f"collection: no collection {name!r}; existing: "
                                     f"{', '.join(have) or 'none yet (POST /index)'}")
        seen.add(name)
        return name

    def check_task(task: str | None) -> None:
        if task and task not in TASKS:
            raise HTTPException(422, f"task: unknown task {task!r}; valid tasks: {', '.join(sorted(TASKS))} "
                                     "(or send a free-text 'instruction').")

    def service_errors(exc: ServiceError) -> HTTPException:
        if isinstance(exc, NoIndexYet):
            return HTTPException(404, f"collection: {exc}")
        if isinstance(exc, StoreUnavailable):
            return HTTPException(503, str(exc))
        if isinstance(exc, BadRequest):
            return HTTPException(400, str(exc))
        return HTTPException(409, str(exc))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": runtime.embedder.spec.name}

    @app.get("/status")
    def status() -> dict:
        return runtime.status()

    @app.get("/collections")
    def collections() -> dict:
        return {"collections": service.collections(), "default": runtime.settings.collection}

    @app.post("/search", response_class=Response)
    def search(req: SearchRequest) -> Response:
        check_task(req.task)
        name = collection_or_404(req.collection)
        flt = req.filters.to_filter() if req.filters else None
        try:
            response = service.search(req.query, name, k=req.k, mode=req.mode, task=req.task or runtime.settings.task,
                                      instruction=req.instruction or runtime.settings.instruction, flt=flt,
                                      rerank=req.rerank)
        except ServiceError as exc:
            raise service_errors(exc) from exc
        return _json({**response.to_dict(), "collection": name})

    # -- what the search page needs besides search (context, preview, filter choices) ---------------
    def call(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PreviewRefused as exc:
            raise HTTPException(403, f"path: {exc}") from exc
        except ServiceError as exc:
            raise service_errors(exc) from exc

    @app.post("/query-text")
    def query_text(req: QueryTextRequest) -> dict:
        check_task(req.task)
        return {"text": call(service.query_text, req.query, req.task, req.instruction)}

    @app.get("/collections/{name}")
    def collection_status(name: str) -> dict:
        from dataclasses import asdict

        return asdict(call(service.status, name))

    @app.get("/collections/{name}/filter-options")
    def filter_options(name: str) -> dict:
        from dataclasses import asdict

        return asdict(call(service.filter_options, collection_or_404(name)))

    @app.post("/collections/{name}/context")
    def context(name: str, req: ContextRequest) -> dict:
        from indexer.search import SearchResult

        r = req.result
        try:
            hit = SearchResult(int(r.get("rank", 0)), float(r.get("score", 0)), str(r["id"]), str(r.get("text", "")),
                               dict(r["metadata"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise HTTPException(422, f"result: needs id, text and metadata as /search returns them ({exc})") from exc
        chunks = call(service.context, hit, collection_or_404(name), req.before, req.after)
        return {"results": [c.to_dict() for c in chunks]}

    @app.get("/collections/{name}/preview")
    def preview(name: str, path: str) -> dict:
        from dataclasses import asdict

        return asdict(call(service.preview, path, collection_or_404(name)))

    @app.post("/index", status_code=202)
    def index(req: IndexRequest) -> dict:
        if not runtime.options.allow_index:
            raise HTTPException(403, "path: indexing through the service is disabled (rag serve --no-index).")
        from pathlib import Path

        if not Path(req.path).expanduser().exists():
            raise HTTPException(400, f"path: {req.path} does not exist on the machine running the service.")
        try:
            job = runtime.jobs.start(str(Path(req.path).expanduser().resolve()),
                                     req.collection or runtime.settings.collection)
        except JobConflict as exc:
            raise HTTPException(409, str(exc)) from exc
        return job.to_dict()

    @app.get("/index")
    def jobs() -> dict:
        return {"jobs": [j.to_dict() for j in runtime.jobs.all()]}

    @app.get("/index/{job_id}")
    def job(job_id: str) -> dict:
        found = runtime.jobs.get(job_id)
        if found is None:
            raise HTTPException(404, f"job_id: no job {job_id!r}")
        return found.to_dict()

    @app.post("/v1/embeddings", response_class=Response)
    async def embeddings(req: EmbeddingsRequest) -> Response:
        texts = [req.input] if isinstance(req.input, str) else list(req.input)
        if not texts or any(not t.strip() for t in texts):
            raise HTTPException(422, "input: empty; give a non-empty string or a list of non-empty strings.")
        if len(texts) > runtime.options.max_texts:
            raise HTTPException(413, f"input: {len(texts)} texts is over the limit of {runtime.options.max_texts} "
                                     "per request; split the request.")
        emb = runtime.embedder
        if req.model and req.model not in (emb.spec.name, emb.spec.name.rsplit("/", 1)[-1], runtime.settings.model):
            raise HTTPException(404, f"model: {req.model!r} is not served; this service serves "
                                     f"{emb.spec.name!r} (omit model, or choose an adapter with 'adapter').")
        try:
            runtime.adapters.check(req.adapter)
        except KeyError as exc:
            raise HTTPException(404, f"adapter: {exc.args[0]}") from exc
        check_task(req.task)
        if req.dimensions is not None and req.dimensions != emb.dim:
            raise HTTPException(422, f"dimensions: {req.dimensions} is not served; this model's vectors have "
                                     f"{emb.dim} dimensions (omit dimensions).")
        counts = [emb.count_tokens(t) for t in texts]
        if not req.truncate:
            over = [i for i, n in enumerate(counts) if n > emb.max_length]
            if over:
                raise HTTPException(413, f"input[{over[0]}]: {counts[over[0]]} tokens is over the model's "
                                         f"max_length {emb.max_length}; shorten it or send truncate=true.")
        try:
            vectors = await runtime.embed_async(texts, req.input_type, req.task, req.instruction, req.adapter)
        except ValueError as exc:
            raise HTTPException(422, f"task: {exc}") from exc
        used = sum(min(n, emb.max_length) for n in counts)
        if req.encoding_format == "base64":
            rows = [base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() for v in vectors]
        else:
            rows = list(vectors)
        return _json({"object": "list", "model": req.model or emb.spec.name,
                      "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(rows)],
                      "usage": {"prompt_tokens": used, "total_tokens": used}})

    return app


def wrap(app: FastAPI, runtime: Runtime, api_key: str | None) -> ASGIApp:
    """``app`` behind the body limit and, with a key, bearer auth."""
    outer: ASGIApp = BodyLimit(app, runtime.options.max_body_bytes)
    if api_key:
        outer = BearerAuth(outer, api_key)
    return outer
