"""The LangChain retriever: langchain-tests' standard suite over a real indexed collection."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests import RetrieversIntegrationTests

from indexer.pipeline import Indexer, IndexSettings
from indexer.retriever import IndexRetriever
from indexer.search import Searcher
from indexer.store import EdgeStore, SearchFilter

from .docs import make_corpus


@pytest.fixture(scope="module")
def searcher(tmp_path_factory, _default_embedder):
    root = tmp_path_factory.mktemp("retriever")
    store = EdgeStore(root / "store")
    Indexer(_default_embedder, store, "docs", IndexSettings(chunk_tokens=64, chunk_overlap=8)).run(
        [make_corpus(root / "docs", bad=False)], progress=False)
    yield Searcher(_default_embedder, store, "docs")
    store.close()


class TestIndexRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _searcher(self, searcher):
        type(self).searcher_obj = searcher

    @property
    def retriever_constructor(self):
        return IndexRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"searcher": self.searcher_obj, "mode": "hybrid"}

    @property
    def retriever_query_example(self) -> str:
        return "which instruments did the orchestra rehearse?"


def test_documents_carry_metadata_score_and_filters(searcher):
    retriever = IndexRetriever(searcher=searcher, k=2, task="question_answering")
    docs = retriever.invoke("which instruments did the orchestra rehearse?")
    assert all(isinstance(d, Document) for d in docs) and len(docs) == 2
    top = docs[0]
    assert top.metadata["source"].endswith("music.pdf") and "violin" in top.page_content
    assert top.metadata["score"] >= docs[1].metadata["score"] and top.metadata["rank"] == 1
    assert retriever.mode == "hybrid" and top.metadata["score_kind"] == "dbsf"     # the default mode, named
    dense = IndexRetriever(searcher=searcher, k=1, mode="dense").invoke("violin")
    assert dense[0].metadata["score_kind"] == "cosine"
    only_md = IndexRetriever(searcher=searcher, k=3, filter=SearchFilter(file_types=("md",)))
    assert {d.metadata["file_type"] for d in only_md.invoke("violin")} == {"md"}


def test_server_collection_opens_in_langchain_qdrant(default_embedder, tmp_path):
    """The payload contract is langchain-qdrant's: its own vector store reads our collection."""
    from langchain_qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    from embedder.langchain import InstructEmbeddings
    from indexer.store import QdrantClientStore

    client = QdrantClient(":memory:")
    store = QdrantClientStore(client)
    Indexer(default_embedder, store, "docs", IndexSettings(chunk_tokens=64, chunk_overlap=8)).run(
        [make_corpus(tmp_path / "docs", bad=False)], progress=False)
    lc_store = QdrantVectorStore(client=client, collection_name="docs", vector_name="dense",
                                 embedding=InstructEmbeddings(default_embedder, task="question_answering"))
    [doc] = lc_store.similarity_search("which instruments did the orchestra rehearse?", k=1)
    assert doc.metadata["source"].endswith("music.pdf") and "violin" in doc.page_content
