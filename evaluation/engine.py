"""Rankings through a real store: the corpus indexed into a temporary collection, every query
searched with the engine's own dense (HNSW), sparse (BM25) or hybrid search, the path `rag search`
takes. Vectors are passed in, so one embedding of a corpus serves every mode and fusion setting."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np

from indexer.store import Point, Query, VectorStore, bm25_fingerprint

#: Payload key holding the test set's document (or chunk) id of a point.
DOC_ID_KEY = "beir_id"
_ID_NAMESPACE = uuid.UUID("9f1c7e0a-3b2d-4c55-8e61-2a7d0b9c4f13")
_BATCH = 1024


def eval_point_id(doc_id: str) -> str:
    """Deterministic UUID for a test set's document id (store point ids must be UUIDs)."""
    return str(uuid.uuid5(_ID_NAMESPACE, doc_id))


class EvalCollection:
    """A temporary collection of ``doc_ids`` (dense ``vectors``, BM25 over ``texts``), dropped on exit.

    ``vectors`` may be None for a sparse-only collection (points get a constant 1-d vector).
    """

    def __init__(self, store: VectorStore, doc_ids: Sequence[str], texts: Sequence[str],
                 vectors: np.ndarray | None, meta: dict | None = None) -> None:
        if vectors is None:
            vectors = np.ones((len(doc_ids), 1), np.float32)
        if not (len(doc_ids) == len(texts) == len(vectors)):
            raise ValueError(f"{len(doc_ids)} ids, {len(texts)} texts and {len(vectors)} vectors: "
                             "give one of each per document.")
        self.store, self.name = store, f"eval-{uuid.uuid4().hex[:12]}"
        self.dense = vectors.shape[1] > 1
        store.create_collection(self.name, int(vectors.shape[1]), {
            "purpose": "evaluation (temporary)", "bm25": bm25_fingerprint(), **(meta or {})})
        try:
            for start in range(0, len(doc_ids), _BATCH):
                store.upsert(self.name, [
                    Point(eval_point_id(d), vectors[start + i], texts[start + i], {DOC_ID_KEY: d})
                    for i, d in enumerate(doc_ids[start:start + _BATCH])])
            store.build_index(self.name)
        except BaseException:
            store.drop_collection(self.name)
            raise

    def rankings(self, qids: Sequence[str], texts: Sequence[str], query_vecs: np.ndarray | None,
                 mode: str, k: int = 100, *, ignore_identical_ids: bool = True) -> dict[str, list[str]]:
        """``{query id: [doc id, ...]}`` (at most ``k``) from the engine's ``mode`` search."""
        if mode != "sparse" and (query_vecs is None or not self.dense):
            raise ValueError(f"mode {mode!r} needs dense vectors for the corpus and the queries; "
                             "embed both, or use mode='sparse'.")
        extra = 1 if ignore_identical_ids else 0
        out: dict[str, list[str]] = {}
        for row, qid in enumerate(qids):
            query = Query.of(mode, None if mode == "sparse" else query_vecs[row], texts[row])
            hits = self.store.run_query(self.name, query, k=k + extra)
            ranked = [str(h.payload[DOC_ID_KEY]) for h in hits]
            if ignore_identical_ids:
                ranked = [d for d in ranked if d != qid]
            out[qid] = ranked[:k]
        return out

    def close(self) -> None:
        self.store.drop_collection(self.name)

    def __enter__(self) -> EvalCollection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
