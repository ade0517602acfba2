"""Indexing with the embedding spread over a Ray cluster: ``rag index --workers N``.

:class:`RayEmbedding` is an embedding stage: ``Indexer(RayEmbedding(config, workers=4), store,
collection)`` makes the same run as the in-process indexer (the same skip-unchanged check,
deterministic point ids, stale chunks deleted after the new ones are in, the same report); only
the middle moves onto Ray Data::

    files ──map_batches(parse: hash, extract, chunk)──▶ chunk rows       (Ray tasks, any CPU)
          ──map_batches(_EmbedWorker, N actors, 1 GPU each)──▶ vectors    (one model per actor)
          ──▶ this process: a file's points are written once all of them are back

This process never loads the model's weights: it reads the tokenizer and the fingerprint
(:func:`embedder.describe_model`) and is the only writer, so the embedded store works too. Each
worker checks that the model it loaded has the fingerprint the collection expects, so a node
with other model files is refused rather than mixing vectors.

On one machine, Ray starts a local cluster for the run. To use several machines, start a
cluster (``ray start --head`` on one, ``ray start --address=HEAD:6379`` on the others) and pass
its address; every node needs this package, the model at the same path, and the documents at
the same path (a shared or synced folder), since parsing runs wherever Ray places it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from embedder import EmbedderConfig, EmbedderError, ModelInfo, describe_model

from .embedding import EmbeddingStage
from .pipeline import Indexer, IndexSettings, StoredFiles, default_embed_batch
from .prepare import DocumentPreparer, ParsedFile
from .store import Point, VectorStore
from .walk import FileEntry

logger = logging.getLogger(__name__)

_CHUNK, _UNCHANGED, _FAILED = "chunk", "unchanged", "failed"


class RayEmbedding(EmbeddingStage):
    """The embedding stage of an :class:`~indexer.pipeline.Indexer` on a Ray cluster, ``workers`` models at once.

    Args:
        config: the embedder each worker loads (this process reads only its config and tokenizer).
        workers: embedding actors; each takes one GPU when the cluster has GPUs (and the device
            is ``auto`` or ``cuda``), else ``cpus_per_worker`` CPUs.
        address: a running cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); None
            starts a local one for the run (or uses the one this process already joined).
    """

    def __init__(self, config: EmbedderConfig, *, workers: int = 2, address: str | None = None,
                 cpus_per_worker: int = 1, files_per_task: int = 4) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers}: use at least 1.")
        self.config = config
        self.workers = workers
        self.address = address
        self.cpus_per_worker = cpus_per_worker
        self.files_per_task = files_per_task
        self._info = describe_model(config)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def embedded(self, entries: list[FileEntry], stored: StoredFiles, preparer: DocumentPreparer,
                 settings: IndexSettings) -> Iterator[ParsedFile]:
        if not entries:
            return
        if not logger.isEnabledFor(logging.INFO):  # Ray Data's execution chatter only with -v
            os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
        try:
            import ray
        except ImportError as exc:
            raise EmbedderError("--workers above 1 runs on Ray, which is not installed: "
                                "pip install 'rag-search[scale]' (or use --workers 1).") from exc

        started = _connect(ray, self.address, self.workers * self.cpus_per_worker + 1)
        try:
            dataset = self._dataset(ray, entries, stored, preparer, settings)
            yield from _assemble(dataset.iter_batches(batch_size=None, batch_format="numpy"),
                                 {str(e.path): e for e in entries})
        finally:
            if started:
                ray.shutdown()

    def _dataset(self, ray, entries: list[FileEntry], stored: StoredFiles, preparer: DocumentPreparer,
                 settings: IndexSettings):
        gpus = _gpus_per_worker(ray, self.config.device, self.workers)
        config = replace(self.config, device="cuda" if gpus else "cpu")
        embed_batch = settings.embed_batch or default_embed_batch(config.device)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the indexer's own bar counts files
        context.enable_auto_log_stats = False
        files = [{"path": str(e.path), "root": str(e.root), "size": e.size, "mtime": e.mtime,
                  "stored": stored.complete_digest(str(e.path)) or ""} for e in entries]
        blocks = min(len(files), max(self.workers, -(-len(files) // self.files_per_task)))  # >= 1 per worker
        return (
            ray.data.from_items(files, override_num_blocks=blocks)
            .map_batches(_parse_files, batch_size=min(self.files_per_task, -(-len(files) // self.workers)),
                         batch_format="numpy",
                         # half a CPU: unlike the CPU workers' 1, this keeps Ray from fusing
                         # parsing into the embedding actors, so the two overlap
                         fn_kwargs={"preparer": preparer}, num_cpus=0.5)
            .map_batches(_EmbedWorker, batch_size=embed_batch, batch_format="numpy",
                         fn_constructor_kwargs={"config": config, "expected": self._info.fingerprint.key,
                                                "threads": self.cpus_per_worker},
                         compute=ray.data.ActorPoolStrategy(size=self.workers),
                         num_gpus=gpus, num_cpus=0 if gpus else self.cpus_per_worker)
        )


def RayIndexer(config: EmbedderConfig, store: VectorStore, collection: str,  # noqa: N802 - the old class name
               settings: IndexSettings = IndexSettings(), *, workers: int = 2, address: str | None = None,
               cpus_per_worker: int = 1, files_per_task: int = 4) -> Indexer:
    """``Indexer(RayEmbedding(config, workers=..., address=...), store, collection, settings)``."""
    return Indexer(RayEmbedding(config, workers=workers, address=address, cpus_per_worker=cpus_per_worker,
                                files_per_task=files_per_task), store, collection, settings)


def _connect(ray, address: str | None, local_cpus: int) -> bool:
    """Join ``address`` (or start a local cluster); True when this call started Ray."""
    if ray.is_initialized():
        return False
    options = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address:
            _check_reachable(address)
            ray.init(address=address, **options)
        else:
            # Ray starts workers at nice 15 by default; for this run they are the work itself, so
            # they run at this process's priority. Enough logical CPUs that parse tasks run beside
            # the embedding actors.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=max(os.cpu_count() or 1, local_cpus), **options)
    except ConnectionError as exc:
        raise ConnectionError(
            f"Cannot reach the Ray cluster at {address!r}: {exc}. Start one with `ray start --head` "
            "(and `ray start --address=HEAD:6379` on each other machine), or leave --ray-address "
            "unset to start a local cluster for this run."
        ) from exc
    return True


def _check_reachable(address: str) -> None:
    """Fail fast on a ``host:port`` nobody listens on (Ray itself retries for minutes)."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray resolves (and refuses) these itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {host}:{port} ({exc.strerror or exc})") from exc


def _gpus_per_worker(ray, device: str, workers: int) -> int:
    """1 when the workers embed on GPUs, else 0; refuses more GPU workers than the cluster has GPUs."""
    available = int(ray.cluster_resources().get("GPU", 0))
    if device == "cpu" or (device == "auto" and not available):
        return 0
    if not available:
        raise EmbedderError("device=cuda, but the Ray cluster has no GPU. Use --device cpu, or add GPU nodes.")
    if workers > available:
        raise EmbedderError(f"--workers {workers} needs {workers} GPUs (one per worker); the Ray cluster "
                            f"has {available}. Use --workers {available}.")
    return 1


def _parse_files(batch: dict[str, np.ndarray], preparer: DocumentPreparer) -> dict[str, np.ndarray]:
    """Ray task: files -> one row per chunk, or one row for a file that is unchanged or failed."""
    rows: dict[str, list] = {k: [] for k in ("source", "kind", "id", "text", "payload", "content_hash",
                                             "chunk_count", "error")}

    def add(source, kind, content_hash="", chunk_count=0, error="", point=None) -> None:
        rows["source"].append(source)
        rows["kind"].append(kind)
        rows["id"].append(point.id if point else "")
        rows["text"].append(point.text if point else "")
        rows["payload"].append(json.dumps(point.payload) if point else "")
        rows["content_hash"].append(content_hash)
        rows["chunk_count"].append(chunk_count)
        rows["error"].append(error)

    for path, root, size, mtime, stored in zip(batch["path"], batch["root"], batch["size"], batch["mtime"],
                                               batch["stored"]):
        entry = FileEntry(Path(str(path)), Path(str(root)), int(size), float(mtime))
        parsed = preparer.prepare(entry, str(stored) or None)
        if parsed.error or parsed.unchanged:
            add(str(path), _FAILED if parsed.error else _UNCHANGED, parsed.content_hash, error=parsed.error or "")
            continue
        for point in parsed.points:
            add(str(path), _CHUNK, parsed.content_hash, len(parsed.points), point=point)
    return {k: np.array(v, dtype=np.int64 if k == "chunk_count" else object) for k, v in rows.items()}


class _EmbedWorker:
    """Ray actor: one model, loaded once; embeds the chunk rows of each batch it is given."""

    def __init__(self, config: EmbedderConfig, expected: str, threads: int) -> None:
        import torch

        from embedder import Embedder

        if config.device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.embedder = Embedder.from_config(config)
        found = self.embedder.fingerprint
        if found.key != expected:
            raise EmbedderError(
                f"The worker on {socket.gethostname()} loaded {found.model} ({found.model_id}), which is not "
                "the model this index uses: every node needs the same model files at the same path."
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        is_chunk = batch["kind"] == _CHUNK
        vectors = np.zeros((len(is_chunk), self.embedder.dim), dtype=np.float32)
        if is_chunk.any():
            vectors[is_chunk] = self.embedder.embed_documents(batch["text"][is_chunk].tolist())
        return {**batch, "vector": vectors}


def _assemble(batches, entries: dict[str, FileEntry]) -> Iterator[ParsedFile]:
    """Rows back from the workers -> one :class:`ParsedFile` per file, once all its chunks are in."""
    waiting: dict[str, list[Point]] = {}
    for batch in batches:
        for i, source in enumerate(batch["source"]):
            source, kind = str(source), str(batch["kind"][i])
            parsed = ParsedFile(entries[source], content_hash=str(batch["content_hash"][i]))
            if kind != _CHUNK:
                parsed.error = str(batch["error"][i]) or None
                parsed.unchanged = kind == _UNCHANGED
                yield parsed
                continue
            points = waiting.setdefault(source, [])
            points.append(Point(id=str(batch["id"][i]), dense=batch["vector"][i].tolist(),
                                text=str(batch["text"][i]), payload=json.loads(batch["payload"][i])))
            if len(points) == int(batch["chunk_count"][i]):
                parsed.points = sorted(waiting.pop(source), key=lambda p: p.payload["metadata"]["chunk_index"])
                yield parsed
    if waiting:
        raise RuntimeError(f"Chunks of {len(waiting)} file(s) never came back from the workers: "
                           f"{', '.join(sorted(waiting)[:3])}")
