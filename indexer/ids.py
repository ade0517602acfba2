"""Deterministic point ids: the same chunk of the same file content always gets the same id."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

_NAMESPACE = uuid.UUID("6f1d2c1e-8a51-4c1b-9a53-0b0e0c5a7e21")


def point_id(source: str, chunk_index: int, content_hash: str) -> str:
    """UUID5 of (source path, chunk index, file content hash)."""
    return str(uuid.uuid5(_NAMESPACE, f"{source}\x00{chunk_index}\x00{content_hash}"))


def file_hash(path: Path, block: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()
