"""``rag index --workers N``: the embedding spread over a real local Ray cluster.

The distributed run must write exactly what the in-process indexer writes (same ids, payloads
and vectors), stay incremental, finish what an interrupted run left, and never duplicate a
chunk when two indexers write the same folder at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from embedder import EmbedderConfig, EmbedderError
from indexer.pipeline import Indexer, IndexSettings
from indexer.store import EdgeStore

from .docs import make_corpus

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[scale]')")

from indexer.distributed import RayEmbedding, _EmbedWorker  # noqa: E402

pytestmark = pytest.mark.slow
SETTINGS = IndexSettings(chunk_tokens=64, chunk_overlap=8, max_bytes=100_000, embed_batch=16)
CONFIG = EmbedderConfig()  # the packaged all-MiniLM-L6-v2, as default_embedder


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (the indexers join it rather than start their own)."""
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def store(tmp_path):
    s = EdgeStore(tmp_path / "store")
    yield s
    s.close()


# these two come first: they need Ray not yet started in this process (the cluster fixture is lazy)
def test_more_gpu_workers_than_gpus_is_refused(tmp_path, store):
    """A real cluster that declares 1 GPU: two GPU workers cannot both be placed."""
    corpus = make_corpus(tmp_path / "docs", bad=False)
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(EmbedderError, match="--workers 2 needs 2 GPUs.*has 1"):
            Indexer(RayEmbedding(CONFIG, workers=2), store, "docs", SETTINGS).run([corpus], progress=False)
    finally:
        ray.shutdown()


def test_unreachable_cluster_names_the_fix(store, tmp_path):
    corpus = make_corpus(tmp_path / "docs", bad=False)
    with pytest.raises(ConnectionError, match="ray start --head"):
        Indexer(RayEmbedding(CONFIG, address="127.0.0.1:1"), store, "docs", SETTINGS).run([corpus], progress=False)


def points(store, name: str) -> dict[str, tuple[np.ndarray, dict]]:
    return {p.id: (np.asarray(p.dense), p.payload) for page in store.iter_points(name) for p in page}


def test_workers_write_what_the_in_process_indexer_writes(cluster, store, default_embedder, tmp_path):
    corpus = make_corpus(tmp_path / "docs")
    ray_report = Indexer(RayEmbedding(CONFIG, workers=2), store, "ray", SETTINGS).run([corpus], progress=False)
    local_report = Indexer(default_embedder, store, "local", SETTINGS).run([corpus], progress=False)

    assert ray_report.indexed == local_report.indexed == 5
    assert ray_report.chunks == local_report.chunks == store.count("ray")
    assert sorted(f.path for f in ray_report.failed) == sorted(f.path for f in local_report.failed)
    assert any(Path(f.path).name == "broken.pdf" for f in ray_report.failed)  # reported, not fatal
    got, want = points(store, "ray"), points(store, "local")
    assert got.keys() == want.keys()
    for pid, (vector, payload) in want.items():
        assert payload == got[pid][1]
        assert float(vector @ got[pid][0]) > 0.9999
    assert store.collection_meta("ray")["fingerprint"] == store.collection_meta("local")["fingerprint"]


def test_workers_index_incrementally_and_finish_an_interrupted_run(cluster, store, default_embedder, tmp_path):
    corpus = make_corpus(tmp_path / "docs", bad=False)
    indexer = Indexer(RayEmbedding(CONFIG, workers=2), store, "docs", SETTINGS)
    first = indexer.run([corpus], progress=False)
    assert first.indexed == 5 and not first.failed

    again = indexer.run([corpus], progress=False)
    assert (again.indexed, again.unchanged, again.chunks) == (0, 5, 0)

    # an interrupted run: some chunks of one file never got written
    qdrant = {pid: payload for pid, payload in store.iter_payloads("docs", ["metadata.source"])}
    music = sorted(pid for pid, p in qdrant.items() if p["metadata"]["source"].endswith("music.pdf"))
    store.delete("docs", music[: max(1, len(music) // 2)])
    (corpus / "bread.txt").write_text("Sourdough needs a lively starter and a long, cold proof.\n" * 5)
    (corpus / "qdrant.md").unlink()
    resumed = indexer.run([corpus], progress=False)
    assert (resumed.indexed, resumed.unchanged, resumed.removed) == (2, 2, 1)  # music.pdf, bread.txt redone
    # the collection now holds exactly what a from-scratch index of the folder holds
    Indexer(default_embedder, store, "fresh", SETTINGS).run([corpus], progress=False)
    assert points(store, "docs").keys() == points(store, "fresh").keys()


def test_two_indexers_writing_at_once_never_duplicate(cluster, store, default_embedder, tmp_path):
    corpus = make_corpus(tmp_path / "docs", bad=False)
    reports, errors = [], []

    def index(make):
        try:
            reports.append(make().run([corpus], progress=False))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    def on_ray():
        return Indexer(RayEmbedding(CONFIG), store, "docs", SETTINGS)

    threads = [threading.Thread(target=index, args=(on_ray,)),
               threading.Thread(target=index, args=(lambda: Indexer(default_embedder, store, "docs", SETTINGS),))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    chunks = max(r.chunks for r in reports)
    assert chunks > 0 and store.count("docs") == chunks  # both wrote the same ids: one copy each


def test_cuda_workers_on_a_cpu_cluster_are_refused(cluster, store, tmp_path):
    corpus = make_corpus(tmp_path / "docs", bad=False)
    config = EmbedderConfig(device="cuda")
    with pytest.raises(EmbedderError, match="no GPU"):
        Indexer(RayEmbedding(config, workers=1), store, "docs", SETTINGS).run([corpus], progress=False)


@pytest.mark.gpu
def test_gpu_workers_match_the_in_process_indexer(cluster, store, tiny_embedder, tiny_mistral_dir, tmp_path):
    """One GPU per worker (as many as there are, up to 2), the tiny Mistral in bf16."""
    import torch

    corpus = make_corpus(tmp_path / "docs", bad=False)
    config = EmbedderConfig(model=str(tiny_mistral_dir), device="cuda", max_length=64, batch_tokens=512)
    workers = min(2, torch.cuda.device_count())
    report = Indexer(RayEmbedding(config, workers=workers), store, "gpu", SETTINGS).run([corpus], progress=False)
    Indexer(tiny_embedder, store, "cpu", SETTINGS).run([corpus], progress=False)
    got, want = points(store, "gpu"), points(store, "cpu")
    assert report.indexed == 5 and got.keys() == want.keys()
    assert min(float(v @ got[pid][0]) for pid, (v, _) in want.items()) > 0.99  # bf16 vs fp32


def test_a_worker_with_other_model_files_refuses_to_embed():
    with pytest.raises(EmbedderError, match="same model files"):
        _EmbedWorker(CONFIG, expected="0" * 16, threads=1)


def test_cli_workers_flag(tmp_path):
    """``rag index --workers 2`` starts its own local cluster, indexes, and reports as usual."""
    corpus = make_corpus(tmp_path / "docs", bad=False)
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "app.cli", "index", str(corpus), "--workers", "2", "--json",
                          "--no-progress"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["indexed"] == 5 and report["chunks"] > 0 and report["workers"] == 2
