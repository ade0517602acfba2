"""LangChain classes over a running ``rag serve`` (HTTP): for pipelines in other processes.

    from app.serve.langchain import ServiceEmbeddings, ServiceRetriever
    emb = ServiceEmbeddings(url="http://127.0.0.1:8800", task="question_answering", adapter="legal")
    retriever = ServiceRetriever(url="http://127.0.0.1:8800", k=4, mode="hybrid")

``api_key`` defaults to ``RAG_API_KEY``. Same behaviour as ``InstructEmbeddings`` and
``IndexRetriever``: documents are embedded as they are, queries with the task instruction.
"""

from __future__ import annotations

import os
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr

from .client import RemoteClient


def _client(url: str, api_key: str | None) -> RemoteClient:
    return RemoteClient(url, api_key if api_key is not None else os.environ.get("RAG_API_KEY"))


class ServiceEmbeddings(Embeddings):
    """``Embeddings`` through ``POST /v1/embeddings`` of a running service (optionally a LoRA adapter)."""

    def __init__(self, url: str = "http://127.0.0.1:8800", task: str | None = None, instruction: str | None = None,
                 adapter: str | None = None, api_key: str | None = None) -> None:
        self.client = _client(url, api_key)
        self.task, self.instruction, self.adapter = task, instruction, adapter

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self.client.embeddings(list(texts), "document", adapter=self.adapter)

    def embed_query(self, text: str) -> list[float]:
        return self.client.embeddings([text], "query", self.task, self.instruction, self.adapter)[0]


class ServiceRetriever(BaseRetriever):
    """A retriever through ``POST /search`` of a running service; ``filters`` as the API takes them
    (``{"path": ..., "glob": ..., "types": [...], "after": "YYYY-MM-DD"}``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    url: str = "http://127.0.0.1:8800"
    api_key: str | None = Field(default=None, repr=False)
    collection: str | None = None
    k: int = 4
    mode: str | None = None
    task: str | None = None
    instruction: str | None = None
    filters: dict | None = None
    rerank: bool = False
    _client: RemoteClient | None = PrivateAttr(default=None)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        if self._client is None:
            self._client = _client(self.url, self.api_key)
        response = self._client.search(
            query, kwargs.get("k", self.k), mode=kwargs.get("mode", self.mode), task=kwargs.get("task", self.task),
            instruction=kwargs.get("instruction", self.instruction), filters=kwargs.get("filters", self.filters),
            collection=self.collection, rerank=kwargs.get("rerank", self.rerank))
        return [Document(id=r["id"], page_content=r["text"],
                         metadata={**r["metadata"], "score": r["score"], "score_kind": response["score_kind"],
                                   "rank": r["rank"]})
                for r in response["results"]]
