"""LangChain ``Embeddings`` over an :class:`~embedder.Embedder`.

Documents are embedded as they are; queries carry the configured task instruction::

    from embedder import Embedder
    from embedder.langchain import InstructEmbeddings
    emb = InstructEmbeddings(Embedder.from_pretrained("default"), task="question_answering")
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from .core import Embedder
from .instructions import resolve_instruction


class InstructEmbeddings(Embeddings):
    """``embed_documents`` without instruction, ``embed_query`` with the task's instruction."""

    def __init__(self, embedder: Embedder, task: str | None = None, instruction: str | None = None) -> None:
        self.embedder = embedder
        self.instruction = resolve_instruction(task, instruction)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_query(text, instruction=self.instruction).tolist()
