"""langchain-tests' standard suites for the Embeddings class."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from embedder.langchain import InstructEmbeddings


class _Params:
    embedder = None

    @pytest.fixture(autouse=True, scope="class")
    def _embedder(self, request, _tiny_embedder):
        request.cls.embedder = _tiny_embedder

    @property
    def embeddings_class(self):
        return InstructEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"embedder": self.embedder, "task": "question_answering"}


class TestInstructEmbeddingsUnit(_Params, EmbeddingsUnitTests):
    pass


class TestInstructEmbeddingsIntegration(_Params, EmbeddingsIntegrationTests):
    pass


def test_query_carries_instruction_documents_do_not(tiny_embedder):
    lc = InstructEmbeddings(tiny_embedder, task="question_answering")
    doc = lc.embed_documents(["what is qdrant"])[0]
    query = lc.embed_query("what is qdrant")
    expected = tiny_embedder.embed_query("what is qdrant", task="question_answering").tolist()
    assert query == pytest.approx(expected, abs=1e-6)
    assert query != pytest.approx(doc, abs=1e-3)
