"""LangChain retriever over a collection: ``Document``s with their metadata and score."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from .search import Searcher
from .store import DEFAULT_MODE, SearchFilter


class IndexRetriever(BaseRetriever):
    """Retrieves chunks from a rag-search collection.

    Example::

        retriever = IndexRetriever(searcher=Searcher(embedder, store, "documents"), k=5, mode="hybrid")
        docs = retriever.invoke("how do I rotate a PDF page")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: Searcher
    k: int = 4
    mode: str = DEFAULT_MODE
    task: str | None = None
    instruction: str | None = None
    filter: SearchFilter | None = None
    rerank: bool = False          # needs a searcher built with a Reranker

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                **kwargs: Any) -> list[Document]:
        response = self.searcher.search(
            query, k=kwargs.get("k", self.k), mode=kwargs.get("mode", self.mode),
            task=kwargs.get("task", self.task), instruction=kwargs.get("instruction", self.instruction),
            flt=kwargs.get("filter", self.filter), rerank=kwargs.get("rerank", self.rerank),
        )
        return [
            Document(id=r.id, page_content=r.text,
                     metadata={**r.metadata, "score": r.score, "score_kind": response.score_kind, "rank": r.rank})
            for r in response.results
        ]
