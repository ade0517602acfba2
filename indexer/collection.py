"""Opening a collection: create it, or check that it was built by a compatible embedder."""

from __future__ import annotations

import time

from embedder import Fingerprint
from embedder.config import model_setting

from .store import CollectionMismatch

__all__ = ["CollectionMismatch", "check_compatible", "collection_meta"]


def collection_meta(fingerprint: Fingerprint, chunk_tokens: int, chunk_overlap: int) -> dict:
    """What a collection records about how its vectors were made."""
    return {
        "fingerprint": fingerprint.to_dict(),
        "fingerprint_key": fingerprint.key,
        "chunk_tokens": chunk_tokens,
        "chunk_overlap": chunk_overlap,
        "created": time.time(),
    }


def check_compatible(name: str, meta: dict, fingerprint: Fingerprint, chunking: tuple[int, int] | None = None) -> None:
    """Refuse an embedder (or chunking) other than the one that built collection ``name``."""
    stored = Fingerprint.from_dict(meta.get("fingerprint", {})) if meta.get("fingerprint") else None
    if stored is None:
        raise CollectionMismatch(
            f"Collection {name!r} has no embedder fingerprint (not made by rag). Use another "
            "--collection, or rebuild it with `rag index --recreate`."
        )
    diff = stored.differences(fingerprint)
    if diff:
        detail = "; ".join(f"{k}: collection has {a!r}, current embedder has {b!r}" for k, (a, b) in diff.items())
        hint = f"RAG_MODEL={model_setting(stored.model)}" + (f" RAG_ADAPTER={stored.adapter}" if stored.adapter else "")
        raise CollectionMismatch(
            f"Collection {name!r} was built with a different embedder ({detail}). Either re-index it "
            f"with the current model (`rag index PATH --recreate`), or use the model it was built "
            f"with ({hint})."
        )
    if chunking is not None:
        stored_chunking = (meta.get("chunk_tokens"), meta.get("chunk_overlap"))
        if stored_chunking != tuple(chunking):
            raise CollectionMismatch(
                f"Collection {name!r} was chunked with chunk_tokens/overlap={stored_chunking}, now "
                f"{tuple(chunking)}. Re-index with --recreate, or set RAG_CHUNK_TOKENS="
                f"{stored_chunking[0]} RAG_CHUNK_OVERLAP={stored_chunking[1]}."
            )
