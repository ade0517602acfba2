"""Identity of everything that changes a document vector.

A collection stores the fingerprint of the embedder that filled it. Opening it with an embedder
whose *compatible fields* differ is refused: the vectors would not be comparable. Quantization is
recorded but not compared: 8-bit and 4-bit vectors stay within cosine ~0.99 of full precision,
so a collection indexed in bf16 can be searched with a 4-bit model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


COMPATIBLE_FIELDS = ("model_id", "adapter_id", "pooling", "max_length", "normalize", "document_prefix", "dim")
_SAMPLE_BYTES = 1 << 20
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")


@dataclass(frozen=True)
class Fingerprint:
    """What a collection records about the embedder that wrote it."""

    model: str
    model_id: str
    adapter: str | None
    adapter_id: str | None
    pooling: str
    max_length: int
    normalize: bool
    document_prefix: str
    dim: int
    quantization: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Fingerprint":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def differences(self, other: "Fingerprint") -> dict[str, tuple]:
        """Compatible fields whose values differ: ``{field: (self's, other's)}``."""
        return {
            name: (getattr(self, name), getattr(other, name))
            for name in COMPATIBLE_FIELDS
            if getattr(self, name) != getattr(other, name)
        }

    @property
    def key(self) -> str:
        """Short hash of the compatible fields: equal keys mean interchangeable vectors."""
        blob = json.dumps({n: getattr(self, n) for n in COMPATIBLE_FIELDS}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sample_file(digest: "hashlib._Hash", path: Path) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}".encode())
    with path.open("rb") as fh:
        digest.update(fh.read(_SAMPLE_BYTES))
        if size > 2 * _SAMPLE_BYTES:
            fh.seek(size // 2)
            digest.update(fh.read(_SAMPLE_BYTES))
            fh.seek(-_SAMPLE_BYTES, 2)
            digest.update(fh.read(_SAMPLE_BYTES))


def weights_id(model_dir: Path, gguf_file: str | None = None) -> str:
    """A quick identity of a model folder's weights: name, size and sampled bytes of each file.

    Reads at most 3 MiB per file, so a 14 GB checkpoint is identified in milliseconds.
    """
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    if gguf_file:
        files = [model_dir / gguf_file]
    if not files:
        raise FileNotFoundError(f"No weight files ({', '.join(_WEIGHT_SUFFIXES)}) in {model_dir}")
    for path in files:
        _sample_file(digest, path)
    return "w:" + digest.hexdigest()[:24]


def parameters_id(model: torch.nn.Module) -> str:
    """Identity of an in-memory model: a hash of (a sample of) every parameter's values."""
    import torch

    digest = hashlib.sha256()
    for name, param in sorted(model.state_dict().items()):
        flat = param.detach().reshape(-1)
        sample = flat if flat.numel() <= 65536 else flat[:: max(1, flat.numel() // 65536)]
        digest.update(name.encode())
        digest.update(sample.to("cpu", torch.float32).numpy().tobytes())
    return "p:" + digest.hexdigest()[:24]


def adapter_id(adapter_dir: Path) -> str:
    """Hash of an adapter folder's config and weights."""
    digest = hashlib.sha256()
    for path in sorted(adapter_dir.iterdir()):
        if path.name.startswith("adapter_") and path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return "a:" + digest.hexdigest()[:24]
