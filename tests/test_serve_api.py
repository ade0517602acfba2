"""`rag serve`: the HTTP API on a real uvicorn server over a real index (packaged MiniLM)."""

from __future__ import annotations

import json
import shutil

import httpx
import numpy as np
import pytest

from app.serve.endpoint import endpoint_path, read_endpoint
from app.serve.runtime import Runtime, ServeOptions
from app.serve.server import check_exposure
from app.settings import Settings
from indexer.search import Searcher
from indexer.store import EdgeStore

from .serve_helpers import running_server, wait_job


@pytest.fixture
def data_dir(tmp_path, index_dir):
    copy = tmp_path / "data"
    shutil.copytree(index_dir, copy)
    return copy


@pytest.fixture
def server(data_dir, default_embedder):
    runtime = Runtime(Settings(data_dir=data_dir, chunk_tokens=64), default_embedder, ServeOptions(max_texts=8))
    with running_server(runtime) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client


def test_health_status_openapi_and_endpoint_file(server, data_dir):
    assert server.get("/health").json()["status"] == "ok"
    status = server.get("/status").json()
    assert status["model"].endswith("all-MiniLM-L6-v2") and status["collections"][0]["points"] > 0
    assert status["compiled"] is False  # a CPU's default: nothing to warm up
    schema = server.get("/openapi.json").json()
    assert {"/search", "/index", "/v1/embeddings", "/status"} <= set(schema["paths"])
    endpoint = read_endpoint(data_dir)
    assert endpoint is not None and str(endpoint.port) in str(server.base_url)


def test_endpoint_file_is_removed_at_shutdown(data_dir, default_embedder):
    runtime = Runtime(Settings(data_dir=data_dir), default_embedder)
    with running_server(runtime):
        assert endpoint_path(data_dir).exists()
    assert not endpoint_path(data_dir).exists()


def test_search_matches_the_in_process_searcher(server, data_dir, _default_embedder):
    got = server.post("/search", json={"query": "vector database", "k": 3, "mode": "dense"}).json()
    assert got["collection"] == "documents" and len(got["results"]) == 3
    # the same search in process, on a copy of the store (the service holds the original's lock)
    copy = data_dir.parent / "copy"
    shutil.copytree(data_dir, copy, ignore=shutil.ignore_patterns("serve.json", "*.lock"))
    store = EdgeStore(copy)
    try:
        want = Searcher(_default_embedder, store, "documents").search("vector database", k=3, mode="dense")
    finally:
        store.close()
    assert [r["id"] for r in got["results"]] == [r.id for r in want.results]
    assert got["results"][0]["score"] == pytest.approx(want.results[0].score, abs=1e-4)


def test_search_filters(server, corpus):
    got = server.post("/search", json={"query": "notes", "k": 10, "filters": {"types": ["md"]}}).json()
    assert got["results"] and {r["metadata"]["file_type"] for r in got["results"]} == {"md"}


@pytest.mark.parametrize("body, status, field", [
    ({"query": "", "k": 3}, 422, "query"),
    ({"query": "x", "k": 0}, 422, "k"),
    ({"query": "x", "mode": "fuzzy"}, 422, "mode"),
    ({"query": "x", "collection": "nope"}, 404, "collection"),
    ({"query": "x", "task": "nope"}, 422, "task"),
    ({"k": 3}, 422, "query"),
])
def test_bad_search_requests_name_the_field(server, body, status, field):
    response = server.post("/search", json=body)
    assert response.status_code == status
    assert response.json()["detail"].startswith(field)


@pytest.mark.parametrize("body, status, field", [
    ({"input": []}, 422, "input"),
    ({"input": ["ok", "  "]}, 422, "input"),
    ({"input": ["a"] * 9}, 413, "input"),
    ({"input": "word " * 600, "truncate": False}, 413, "input[0]"),
    ({"input": "x", "adapter": "legal"}, 404, "adapter"),
    ({"input": "x", "model": "gpt-4"}, 404, "model"),
    ({"input": "x", "input_type": "question"}, 422, "input_type"),
    ({"input": "x", "input_type": "query", "task": "no_such_task"}, 422, "task"),
])
def test_bad_embedding_requests_name_the_field(server, body, status, field):
    response = server.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"].startswith(field)


def test_body_limit(data_dir, default_embedder):
    runtime = Runtime(Settings(data_dir=data_dir), default_embedder, ServeOptions(max_body_bytes=1000))
    with running_server(runtime, mcp_http=False) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": "x" * 2000})
        assert response.status_code == 413 and "limit" in response.json()["detail"]
        assert httpx.post(f"{url}/v1/embeddings", json={"input": "short"}).status_code == 200


def test_embeddings_match_the_embedder(server, _default_embedder):
    got = server.post("/v1/embeddings", json={"input": ["vector databases", "cats"], "input_type": "query"}).json()
    assert got["object"] == "list" and [d["index"] for d in got["data"]] == [0, 1]
    want = _default_embedder.embed_queries(["vector databases", "cats"])
    assert np.allclose(np.array([d["embedding"] for d in got["data"]]), want, atol=1e-5)
    assert got["usage"]["prompt_tokens"] > 0
    one = server.post("/v1/embeddings", json={"input": "cats"}).json()["data"][0]["embedding"]
    assert np.allclose(one, _default_embedder.embed_documents(["cats"])[0], atol=1e-5)


def test_index_job_runs_in_the_background_with_progress(server, corpus):
    started = server.post("/index", json={"path": str(corpus), "collection": "second"})
    assert started.status_code == 202, started.text
    job = wait_job(server, started.json()["id"])
    assert job["state"] == "done" and job["files_done"] == job["files_total"] > 0
    assert job["report"]["indexed"] == job["files_total"]
    assert "second" in server.get("/collections").json()["collections"]
    hits = server.post("/search", json={"query": "vector database", "collection": "second"}).json()["results"]
    assert hits
    missing = server.post("/index", json={"path": str(corpus / "missing")})
    assert missing.status_code == 400 and missing.json()["detail"].startswith("path")


def test_one_job_per_collection_others_queue_and_shutdown_stops_both(corpus):
    import threading

    from app.serve.jobs import IndexJobs, JobConflict

    class SlowService:   # holds its first job until released, to see the queue deterministically
        def __init__(self):
            self.entered, self.release = threading.Event(), threading.Event()

        def index_folder(self, path, collection, on_progress):
            on_progress(0, 1)
            self.entered.set()
            self.release.wait(10)
            on_progress(1, 1)
            raise RuntimeError("never finishes")

    service = SlowService()
    jobs = IndexJobs(service)
    first = jobs.start(str(corpus), "documents")
    assert service.entered.wait(10) and first.state == "running"
    with pytest.raises(JobConflict, match=f"already being indexed by job {first.id} .*running"):
        jobs.start(str(corpus), "documents")
    queued = jobs.start(str(corpus), "other")
    assert queued.state == "queued" and queued.started is None
    with pytest.raises(JobConflict, match=f"job {queued.id} .*queued"):
        jobs.start(str(corpus), "other")
    assert [j.id for j in jobs.active()] == [first.id, queued.id]
    jobs.stop(timeout=0.01)
    with pytest.raises(JobConflict, match="shutting down"):
        jobs.start(str(corpus), "third")
    service.release.set()
    jobs.stop()
    assert first.state == "stopped" and "resume" in first.error
    assert queued.state == "stopped" and "before it started" in queued.error and queued.started is None


def test_jobs_for_two_collections_through_the_api(server, tmp_path, corpus):
    big = tmp_path / "big"           # a few copies of the corpus: the first job is still running below
    for i in range(4):
        shutil.copytree(corpus, big / f"copy{i}")
    first = server.post("/index", json={"path": str(big), "collection": "alpha"})
    assert first.status_code == 202 and first.json()["state"] == "running", first.text
    again = server.post("/index", json={"path": str(corpus), "collection": "alpha"})
    assert again.status_code == 409
    assert again.json()["detail"] == again.json()["error"]["message"]
    assert f"job {first.json()['id']}" in again.json()["detail"] and "alpha" in again.json()["detail"]
    other = server.post("/index", json={"path": str(corpus), "collection": "beta"})
    assert other.status_code == 202 and other.json()["state"] == "queued", other.text
    listed = server.get("/index").json()["jobs"]
    assert [(j["collection"], j["state"]) for j in listed] == [("alpha", "running"), ("beta", "queued")]
    done_first, done_other = wait_job(server, first.json()["id"]), wait_job(server, other.json()["id"])
    assert done_first["state"] == done_other["state"] == "done"
    assert done_other["started"] >= done_first["finished"]        # one after the other
    assert done_first["report"]["indexed"] == 4 * done_other["report"]["indexed"] > 0
    assert {"alpha", "beta"} <= set(server.get("/collections").json()["collections"])
    assert server.post("/index", json={"path": str(corpus), "collection": "alpha"}).status_code == 202


def test_api_key_is_required_and_never_logged(data_dir, default_embedder, caplog):
    runtime = Runtime(Settings(data_dir=data_dir), default_embedder)
    key = "s3cret-key-123"
    with caplog.at_level("DEBUG"), running_server(runtime, api_key=key, mcp_http=False) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/status").status_code == 401
        assert httpx.get(f"{url}/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        refused = httpx.post(f"{url}/search", json={"query": "x"})
        assert refused.status_code == 401 and "RAG_API_KEY" in refused.json()["detail"]
        ok = httpx.get(f"{url}/status", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    assert key not in caplog.text
    assert key not in json.dumps(ok.json())


def test_binding_beyond_loopback_needs_a_key():
    with pytest.raises(ValueError, match="RAG_API_KEY"):
        check_exposure("0.0.0.0", None)
    check_exposure("0.0.0.0", "key")
    check_exposure("127.0.0.1", None)
    check_exposure("localhost", None)


def test_langchain_http_variants_match_the_in_process_ones(server, _default_embedder):
    from app.serve.langchain import ServiceEmbeddings, ServiceRetriever
    from embedder.langchain import InstructEmbeddings

    url = str(server.base_url)
    remote, local = ServiceEmbeddings(url=url), InstructEmbeddings(_default_embedder)
    assert np.allclose(remote.embed_query("what is qdrant"), local.embed_query("what is qdrant"), atol=1e-5)
    assert np.allclose(remote.embed_documents(["a", "b"]), local.embed_documents(["a", "b"]), atol=1e-5)
    docs = ServiceRetriever(url=url, k=3, mode="dense").invoke("vector database")
    assert len(docs) == 3 and docs[0].metadata["rank"] == 1 and docs[0].page_content
    assert docs[0].metadata["score"] >= docs[-1].metadata["score"]
