"""`/v1/embeddings` through the official `openai` client: the vectors are the library's own
(documents and instructed queries, float and the client's default base64), and a wrong key is the
client's AuthenticationError."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import pytest

from app.serve.runtime import Runtime
from app.settings import Settings

from .conftest import CORPUS
from .serve_helpers import running_server

openai = pytest.importorskip("openai", reason="the openai client is a test dependency (pip install '.[test]')")

KEY = "test-key-openai"


def cos(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def vectors(response) -> np.ndarray:
    assert [d.index for d in response.data] == list(range(len(response.data)))
    return np.array([d.embedding for d in response.data], dtype=np.float32)


@pytest.fixture
def client_for(tmp_path):
    """``client_for(embedder)``: ``(url, openai.OpenAI client)`` on a real server over ``embedder``
    (with the API key ``KEY``); the servers stop when the test ends."""
    with ExitStack() as servers:
        def start(embedder):
            runtime = Runtime(Settings(data_dir=tmp_path / "data"), embedder)
            url = servers.enter_context(running_server(runtime, api_key=KEY, mcp_http=False))
            return url, openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)

        yield start


@pytest.mark.parametrize("encoding_format", [None, "float"])   # None: the client asks for base64
def test_openai_client_gets_the_libraries_document_vectors(client_for, default_embedder, encoding_format):
    _, client = client_for(default_embedder)
    extra = {"encoding_format": encoding_format} if encoding_format else {}
    response = client.embeddings.create(model=default_embedder.spec.name, input=CORPUS[:3], **extra)
    got = vectors(response)
    assert got.shape == (3, default_embedder.dim) == (3, 384)
    assert cos(got, default_embedder.embed_documents(CORPUS[:3])).min() >= 0.9999
    assert response.usage.prompt_tokens > 0
    one = vectors(client.embeddings.create(model="all-MiniLM-L6-v2", input=CORPUS[0]))   # the short name too
    assert cos(one, default_embedder.embed_documents(CORPUS[:1])).min() >= 0.9999


def test_openai_client_extra_body_gives_the_instructed_query(client_for, tiny_embedder):
    _, client = client_for(tiny_embedder)   # an instructed (decoder) model: queries differ from documents
    queries = ["how do I open a file", "sort a list"]

    def create(**extra_body):
        return vectors(client.embeddings.create(model=tiny_embedder.spec.name, input=queries,
                                                extra_body=extra_body))

    for task in ("web_search", "code_search"):
        got = create(input_type="query", task=task)
        assert cos(got, tiny_embedder.embed_queries(queries, task=task)).min() >= 0.9999
    instruction = "Given a question, retrieve Python documentation that answers it"
    got = create(input_type="query", instruction=instruction)
    assert cos(got, tiny_embedder.embed_queries(queries, instruction=instruction)).min() >= 0.9999
    # the instruction really reaches the model: documents and the two tasks give other vectors
    documents = create()
    assert cos(create(input_type="query", task="web_search"), documents).max() < 0.999
    assert cos(create(input_type="query", task="web_search"), create(input_type="query", task="code_search")
               ).max() < 0.999


def test_openai_client_wrong_key_and_bad_fields(client_for, default_embedder):
    url, client = client_for(default_embedder)
    wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="RAG_API_KEY"):
        wrong.embeddings.create(model=default_embedder.spec.name, input=["x"])
    with pytest.raises(openai.NotFoundError, match="adapter"):
        client.embeddings.create(model=default_embedder.spec.name, input=["x"], extra_body={"adapter": "legal"})
    with pytest.raises(openai.UnprocessableEntityError, match="dimensions"):
        client.embeddings.create(model=default_embedder.spec.name, input=["x"], dimensions=128)
