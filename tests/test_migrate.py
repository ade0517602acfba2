"""``rag migrate``: a real embedded collection copied into qdrant-client's local store (path=).

The target is the same QdrantClientStore code a server gets; only the transport differs.
"""

from __future__ import annotations

import argparse
import json
import os
import uuid

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from app import cli
from app.cli.common import add_settings_flags
from app.cli.migrate import add_migrate_parser, cmd_migrate
from indexer.store.migrate import migrate
from indexer.pipeline import Indexer, IndexSettings
from indexer.search import Searcher
from indexer.store import (
    CollectionNotFound,
    CollectionOptions,
    EdgeStore,
    Point,
    QdrantClientStore,
    StoreError,
)
from indexer.store.sparse import encode_document

from .docs import make_corpus

QUERIES = ["violin concerto orchestra", "alpine trail boots", "Jupiter gas giants", "knead dough yeast",
           "vector database payload filters"]


@pytest.fixture(scope="module")
def source_dir(_default_embedder, tmp_path_factory):
    """An embedded store with collection "docs" built by the real indexer (closed again)."""
    root = tmp_path_factory.mktemp("migrate")
    corpus = make_corpus(root / "corpus", bad=False)
    with EdgeStore(root / "store") as store:
        report = Indexer(_default_embedder, store, "docs", IndexSettings(chunk_tokens=64, chunk_overlap=8)) \
            .run([corpus], progress=False)
        assert report.indexed == 5 and report.chunks >= 5
    return root / "store"


@pytest.fixture
def source(source_dir):
    with EdgeStore(source_dir) as store:
        yield store


@pytest.fixture
def target(tmp_path):
    with QdrantClientStore(QdrantClient(path=str(tmp_path / "target"))) as store:
        yield store


def points_by_id(store, name: str) -> dict[str, Point]:
    out = {p.id: p for page in store.iter_points(name, batch=2) for p in page}
    assert len(out) == store.count(name)
    return out


def as_dict(sparse) -> dict[int, float]:
    return dict(zip(sparse.indices, sparse.values, strict=True))


def test_iter_points_pages_every_point_with_its_vector(source):
    pages = list(source.iter_points("docs", batch=2))
    assert all(1 <= len(page) <= 2 for page in pages) and len(pages) >= 3
    points = [p for page in pages for p in page]
    assert len({p.id for p in points}) == len(points) == source.count("docs")
    for p in points:
        assert len(p.dense) == source.dim("docs") and abs(np.linalg.norm(p.dense) - 1) < 1e-4
        # what BM25 indexed: the chunk after its document's title (a new collection's chunk_context)
        assert p.text == f'{p.payload["metadata"]["title"]} {p.payload["page_content"]}' and p.payload["page_content"]
    with pytest.raises(CollectionNotFound):
        source.iter_points("missing")
    with pytest.raises(ValueError, match="batch"):
        source.iter_points("docs", batch=0)


def test_migrate_copies_ids_payloads_vectors_and_meta(source, target):
    summary = migrate(source, target, "docs", "copy", batch=2, progress=False)
    n = source.count("docs")
    assert summary["points"] == summary["target_count"] == target.count("copy") == n
    assert summary["resumed"] is False and summary["recreated"] is False and summary["dim"] == 384
    before, after = points_by_id(source, "docs"), points_by_id(target, "copy")
    assert before.keys() == after.keys()
    for pid, p in before.items():
        assert after[pid].payload == p.payload
        np.testing.assert_allclose(after[pid].dense, p.dense, atol=1e-6)
    meta = target.collection_meta("copy")
    assert meta == source.collection_meta("docs") and meta["fingerprint"]["dim"] == 384


def test_sparse_vectors_are_recomputed_identically(source, target):
    migrate(source, target, "docs", progress=False)
    ids = [pid for pid, _ in source.iter_payloads("docs", [])]
    edge = {str(r.id): r.vector["bm25"] for r in source._shard("docs").retrieve(ids, True, ["bm25"])}
    client = {str(r.id): r for r in target.client.retrieve("docs", ids, with_payload=True, with_vectors=["bm25"])}
    assert edge.keys() == client.keys() == set(ids)
    for pid, rec in client.items():
        # the chunk after its title, as the source collection indexed it (chunk_context "title")
        text = f'{rec.payload["metadata"]["title"]} {rec.payload["page_content"]}'
        expected = as_dict(encode_document(text))
        stored = as_dict(rec.vector["bm25"])
        assert stored.keys() == expected.keys() == as_dict(edge[pid]).keys() and stored
        assert [stored[i] for i in expected] == pytest.approx(list(expected.values()), rel=1e-6)
        assert [as_dict(edge[pid])[i] for i in expected] == pytest.approx(list(expected.values()), rel=1e-6)


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_search_gives_the_same_results_after_migration(default_embedder, source, target, mode):
    migrate(source, target, "docs", progress=False)
    for query in QUERIES:
        a = Searcher(default_embedder, source, "docs").search(query, k=4, mode=mode).results
        b = Searcher(default_embedder, target, "docs").search(query, k=4, mode=mode).results
        assert [r.id for r in a] == [r.id for r in b], (query, mode)
        assert [r.score for r in a] == pytest.approx([r.score for r in b], rel=1e-3, abs=1e-4)
        assert a, query


def test_rerun_is_idempotent_and_resumes_an_interrupted_copy(source, target):
    first = migrate(source, target, "docs", progress=False)
    again = migrate(source, target, "docs", batch=3, progress=False)
    assert again["resumed"] is True and again["target_count"] == first["target_count"]
    ids = sorted(pid for pid, _ in target.iter_payloads("docs", []))
    target.delete("docs", ids[: len(ids) // 2])  # as if the first run had stopped halfway
    resumed = migrate(source, target, "docs", progress=False)
    assert resumed["resumed"] is True and target.count("docs") == source.count("docs")
    assert sorted(pid for pid, _ in target.iter_payloads("docs", [])) == ids


def test_other_target_collection_is_refused_until_recreate(source, target):
    dim = source.dim("docs")
    target.create_collection("docs", dim, {"fingerprint": {"model": "someone-else"}})
    target.upsert("docs", [Point("00000000-0000-0000-0000-000000000001", [1.0] + [0.0] * (dim - 1), "keep me")])
    with pytest.raises(StoreError, match="--recreate"):
        migrate(source, target, "docs", progress=False)
    assert target.count("docs") == 1  # untouched
    summary = migrate(source, target, "docs", progress=False, recreate=True)
    assert summary["recreated"] is True and target.count("docs") == source.count("docs")
    assert target.collection_meta("docs") == source.collection_meta("docs")


def test_missing_source_collection_names_the_existing_ones(source, target):
    with pytest.raises(CollectionNotFound, match="existing: docs"):
        migrate(source, target, "nope", progress=False)
    assert target.collections() == []


@pytest.mark.server
def test_migrate_to_a_real_server_with_collection_options(default_embedder, source):
    """Runs with RAG_QDRANT_URL (e.g. `docker compose up -d qdrant`): options reach the server."""
    opts = CollectionOptions(shard_number=2, on_disk=True, int8=True)
    name = f"migrate-test-{uuid.uuid4().hex[:8]}"
    with QdrantClientStore.connect(os.environ["RAG_QDRANT_URL"], os.environ.get("RAG_QDRANT_API_KEY"),
                                   options=opts) as target:
        try:
            summary = migrate(source, target, "docs", name, progress=False)
            assert summary["target_count"] == source.count("docs")
            config = target.client.get_collection(name).config
            assert config.params.shard_number == 2 and config.params.vectors["dense"].on_disk is True
            assert config.quantization_config.scalar.type == models.ScalarType.INT8
            assert config.metadata == source.collection_meta("docs")
            for mode in ("dense", "sparse", "hybrid"):
                a = Searcher(default_embedder, source, "docs").search(QUERIES[0], k=3, mode=mode).results
                b = Searcher(default_embedder, target, name).search(QUERIES[0], k=3, mode=mode).results
                assert [r.id for r in a] == [r.id for r in b], mode
        finally:
            target.drop_collection(name)


# -- the command --------------------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rag")
    add_migrate_parser(parser.add_subparsers(dest="command", required=True), add_settings_flags)
    return parser.parse_args(argv)


@pytest.fixture
def no_server(monkeypatch):
    for var in ("RAG_QDRANT_URL", "RAG_QDRANT_API_KEY", "RAG_DATA_DIR", "RAG_COLLECTION"):
        monkeypatch.delenv(var, raising=False)


def test_cmd_migrate_to_a_local_path(source_dir, tmp_path, capsys, no_server):
    dest = tmp_path / "dest"
    args = parse(["migrate", "--to", f"path:{dest}", "--data-dir", str(source_dir), "--collection", "docs",
                  "--target-collection", "docs2", "--json"])
    assert cmd_migrate(args, cli.load_settings(args)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["target_collection"] == "docs2" and summary["target"] == f"Qdrant local store at {dest}"
    args = parse(["migrate", "--to", f"path:{dest}", "--data-dir", str(source_dir), "--collection", "docs",
                  "--target-collection", "docs2", "--no-progress"])
    assert cmd_migrate(args, cli.load_settings(args)) == 0
    assert capsys.readouterr().out.startswith("resumed 'docs' -> 'docs2'")
    with QdrantClientStore(QdrantClient(path=str(dest))) as store, EdgeStore(source_dir) as src:
        assert store.count("docs2") == src.count("docs")


@pytest.mark.parametrize(("argv", "message"), [
    ([], "needs a target"),
    (["--to", "ftp://x"], "path:DIR"),
    (["--to", "edge:{src}"], "source store itself"),
])
def test_cmd_migrate_errors_name_the_fix(source_dir, no_server, argv, message):
    args = parse(["migrate", "--data-dir", str(source_dir)] + [a.format(src=source_dir) for a in argv])
    with pytest.raises(ValueError, match=message):
        cmd_migrate(args, cli.load_settings(args))


def test_cmd_migrate_without_an_embedded_store(tmp_path, no_server):
    args = parse(["migrate", "--to", f"path:{tmp_path / 'dest'}", "--data-dir", str(tmp_path / "none")])
    with pytest.raises(FileNotFoundError, match="RAG_DATA_DIR"):
        cmd_migrate(args, cli.load_settings(args))
    assert not (tmp_path / "none").exists()


def test_rag_migrate_through_main(source_dir, tmp_path, capsys, no_server):
    dest = f"path:{tmp_path / 'dest'}"
    assert cli.main(["migrate", "--to", dest, "--data-dir", str(source_dir), "--collection", "docs",
                     "--no-progress"]) == 0
    assert "copied 'docs' -> 'docs'" in capsys.readouterr().out
    assert cli.main(["migrate", "--to", dest, "--data-dir", str(source_dir), "--collection", "nope"]) == 2
    assert "existing: docs" in capsys.readouterr().err
