"""Start-up: commands load only what they use (torch, transformers, qdrant-client, the weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from app.factories import build_embedder
from app.settings import Settings
from embedder import LazyEmbedder
from indexer.pipeline import Indexer, IndexSettings
from indexer.store import EdgeStore

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "qdrant_client", "streamlit")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory, _default_embedder) -> Path:
    docs = tmp_path_factory.mktemp("docs")
    (docs / "venv.md").write_text("# Virtual environments\n\nCreate one with python -m venv tutorial-env.\n")
    (docs / "bread.txt").write_text("Mix flour, water, salt and yeast. Knead the dough.\n")
    data = tmp_path_factory.mktemp("store")
    with EdgeStore(data) as store:
        Indexer(_default_embedder, store, "documents", IndexSettings(chunk_tokens=64, chunk_overlap=8)) \
            .run([docs], progress=False)
    return data


def _loaded_after(store_dir: Path, argv: list[str]) -> tuple[dict, list[str]]:
    """Run ``rag ARGV`` in a fresh interpreter; (its JSON output, the heavy modules it imported)."""
    code = ("import json, sys\nfrom app.cli import main\nrc = main(%r)\n"
            "print(json.dumps(sorted(m for m in %r if m in sys.modules)))\nsys.exit(rc)") % (argv, HEAVY)
    env = {**os.environ, "RAG_DATA_DIR": str(store_dir), "RAG_CHUNK_TOKENS": "64", "RAG_CHUNK_OVERLAP": "8",
           "HF_HUB_OFFLINE": "1"}
    for name in ("RAG_MODEL", "RAG_QDRANT_URL", "RAG_COLLECTION", "RAG_MODE", "RAG_RERANK"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    *out, loaded = done.stdout.strip().split("\n")
    return json.loads("\n".join(out)), json.loads(loaded)


def test_status_and_sparse_search_import_no_model_stack(store_dir):
    status, loaded = _loaded_after(store_dir, ["status", "--json"])
    assert loaded == [] and "documents" in json.dumps(status)          # before: torch and qdrant-client
    found, loaded = _loaded_after(store_dir, ["search", "knead dough", "--mode", "sparse", "--json"])
    assert loaded == [] and found["results"][0]["metadata"]["source"].endswith("bread.txt")


def test_dense_search_loads_the_model_and_finds_the_same_file(store_dir):
    found, loaded = _loaded_after(store_dir, ["search", "knead dough", "--mode", "dense", "--json"])
    assert "torch" in loaded and found["results"][0]["metadata"]["source"].endswith("bread.txt")


def test_lazy_embedder_loads_weights_on_first_embed_only(default_embedder):
    torch.set_num_threads(1)
    lazy = build_embedder(Settings(), lazy=True)
    assert isinstance(lazy, LazyEmbedder) and not lazy.loaded
    assert lazy.fingerprint == default_embedder.fingerprint              # checkable before any weights
    assert lazy.format_query("venv") == default_embedder.format_query("venv") and not lazy.loaded
    vec = lazy.embed_query("create a virtual environment")
    assert lazy.loaded
    np.testing.assert_allclose(vec, default_embedder.embed_query("create a virtual environment"), atol=1e-5)
