"""Opening a collection: create it, or check that it was built by a compatible embedder."""

from __future__ import annotations

import time

from embedder import Fingerprint
from embedder.config import model_setting

from .store import CollectionMismatch
from .store.payload import DEFAULT_CHUNK_CONTEXT, stored_chunk_context

__all__ = ["DEFAULT_CHUNK_CONTEXT", "CollectionMismatch", "check_compatible", "collection_meta",
           "stored_chunk_context"]


def collection_meta(fingerprint: Fingerprint, chunk_tokens: int, chunk_overlap: int,
                    chunk_context: str = DEFAULT_CHUNK_CONTEXT) -> dict:
    """What a collection records about how its vectors were made."""
    return {
        "fingerprint": fingerprint.to_dict(),
        "fingerprint_key": fingerprint.key,
        "chunk_tokens": chunk_tokens,
        "chunk_overlap": chunk_overlap,
        "chunk_context": chunk_context,
        "created": time.time(),
    }


def check_compatible(name: str, meta: dict, fingerprint: Fingerprint, chunking: tuple[int, int] | None = None,
                     chunk_context: str | None = None) -> None:
    """Refuse an embedder (or chunking, or a chunk context that is set) other than the one that built
    collection ``name``."""
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
    stored_context = stored_chunk_context(meta)
    if chunk_context is not None and chunk_context != stored_context:
        raise CollectionMismatch(
            f"Collection {name!r} was embedded with chunk_context={stored_context!r}, now {chunk_context!r}. "
            f"Re-index with --recreate, or unset RAG_CHUNK_CONTEXT (or set it to {stored_context})."
        )
