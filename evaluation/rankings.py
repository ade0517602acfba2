"""Rankings the way the product ranks: chunks pooled into documents, and fused modes.

A search returns chunks; a person judges the document (page, section) they come from. So a
document-level test set is scored on chunk rankings by keeping each document's best chunk
(:func:`pool_chunks`, max pooling: the order in which `rag search` first shows each document).
:func:`fuse_rrf` is the engine's hybrid fusion computed offline, so its constants can be tuned on
cached rankings and then checked against the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from evaluation.beir import BeirDataset
from indexer.chunking import Chunk, chunk_text

Rankings = dict[str, list[str]]
#: Separates a document id from its chunk number in a chunked dataset's ids.
CHUNK_SEP = "::"


@dataclass(frozen=True)
class ChunkedDataset:
    """``dataset`` with every document cut into the chunks `rag index` would store."""

    chunks: BeirDataset          # corpus of chunks (ids ``DOC::i``), a relevant document's chunks relevant
    doc_of: dict[str, str]       # chunk id -> document id

    def pool(self, rankings: Mapping[str, Sequence[str]], k: int = 100, how: str = "max") -> Rankings:
        """Chunk rankings -> document rankings (see :func:`pool_chunks`)."""
        return {q: pool_chunks(r, self.doc_of, k, how) for q, r in rankings.items()}


def chunk_dataset(dataset: BeirDataset, tokenizer, chunk_tokens: int = 256, overlap: int = 32,
                  header: Callable[[str, str, Chunk], str] | None = None) -> ChunkedDataset:
    """Cut each document of ``dataset`` with the indexer's own chunker (same tokenizer and sizes).

    ``header(doc_id, title, chunk)``, when given, is put before each chunk's text (a contextual
    chunk header: the document title, its section); without it a chunk is its text alone.
    """
    corpus: dict[str, tuple[str, str]] = {}
    doc_of: dict[str, str] = {}
    for doc_id, (title, text) in dataset.corpus.items():
        for i, chunk in enumerate(chunk_text(text, tokenizer, chunk_tokens, overlap)):
            cid = f"{doc_id}{CHUNK_SEP}{i}"
            corpus[cid] = (header(doc_id, title, chunk) if header else "", chunk.text)
            doc_of[cid] = doc_id
    chunks_of: dict[str, list[str]] = {}
    for cid, doc_id in doc_of.items():
        chunks_of.setdefault(doc_id, []).append(cid)
    qrels = {q: {cid: grade for d, grade in rels.items() for cid in chunks_of.get(d, [])}
             for q, rels in dataset.qrels.items()}
    chunks = BeirDataset(corpus, dict(dataset.queries), qrels, name=f"{dataset.name} (chunks)")
    return ChunkedDataset(chunks, doc_of)


def pool_chunks(ranking: Sequence[str], doc_of: Mapping[str, str], k: int = 100, how: str = "max",
                rrf_k: float = 2) -> list[str]:
    """Chunk ranking -> document ranking, at most ``k`` documents.

    ``how="max"``: in the order each document's first (best) chunk appears, as `rag search` shows
    them; ``how="rrf"``: by the sum of ``1 / (rrf_k + rank)`` over a document's chunks, so a document
    with several good chunks can pass one with a single better one.
    """
    if how == "max":
        seen: dict[str, None] = {}
        for cid in ranking:
            seen.setdefault(doc_of[cid], None)
            if len(seen) >= k:
                break
        return list(seen)
    if how == "rrf":
        scores: dict[str, float] = {}
        for rank, cid in enumerate(ranking):
            scores[doc_of[cid]] = scores.get(doc_of[cid], 0.0) + 1 / (rrf_k + rank)
        return sorted(scores, key=lambda d: -scores[d])[:k]
    raise ValueError(f"Unknown pooling {how!r}; choose max or rrf.")


def fuse_rrf(rankings: Sequence[Sequence[str]], k: float = 2, weights: Sequence[float] | None = None,
             limit: int = 100) -> list[str]:
    """Weighted Reciprocal Rank Fusion as Qdrant computes ``Rrf(k, weights)``.

    ``score(d) = sum_i 1 / ((rank_i(d) + 1) / w_i + k - 1)`` with ranks from 0, i.e. the classic
    ``1 / (k + rank)`` when ``w_i = 1``; a weight stretches (w < 1) or shrinks (w > 1) its ranking's
    ranks. Ties keep the first ranking's order.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings; give one weight per ranking.")
    scores: dict[str, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, doc in enumerate(ranking):
            scores[doc] = scores.get(doc, 0.0) + (1 / ((rank + 1) / w + k - 1) if w > 0 else 0.0)
    return sorted(scores, key=lambda d: -scores[d])[:limit]
