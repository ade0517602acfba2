"""Behavioural tests for indexer.store, run against every backend and compared across them.

Backends: "edge" (EdgeStore in tmp_path), "client" (qdrant-client local ":memory:"),
and "server" when RAG_QDRANT_URL points at a running Qdrant (marked ``server``).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from indexer.store import (
    CollectionMismatch,
    CollectionNotFound,
    EdgeStore,
    Point,
    QdrantClientStore,
    Query,
    SearchFilter,
    StoreError,
    StoreLocked,
    VectorStore,
    bm25_fingerprint,
    chunk_id,
    make_payload,
    open_store,
)
from indexer.store.payload import ancestor_dirs

DIM = 16
META = {"embedder": {"name": "unit-test", "dim": DIM, "normalize": True}, "bm25": bm25_fingerprint(), "note": "é"}
SERVER_URL = os.environ.get("RAG_QDRANT_URL")
REPO_ROOT = Path(__file__).resolve().parents[1]

# (source, file_type, mtime, chunk texts); "zygomorphic" and "quetzalcoatl" are rare words.
FILES = [
    ("/data/docs/a/alpha.md", "md", 1000.0, ["apples grow in the orchard", "the orchard has old trees", "zygomorphic flowers attract bees"]),
    ("/data/docs/a/b/beta.pdf", "pdf", 2000.0, ["quarterly revenue report", "revenue grew in the north", "the board approved the budget"]),
    ("/data/docs/c/gamma.txt", "txt", 3000.0, ["install the package with pip", "configure the server port", "quetzalcoatl is a feathered serpent"]),
    ("/data/other/delta.md", "md", 4000.0, ["notes about gardening", "apples and pears in autumn", "watering schedule for trees"]),
]


def unit(rng: np.random.Generator, dim: int = DIM) -> np.ndarray:
    v = rng.normal(size=dim)
    return v / np.linalg.norm(v)


def corpus(seed: int = 7) -> list[Point]:
    """Twelve chunk points over four files, with seeded random unit vectors."""
    rng = np.random.default_rng(seed)
    points = []
    for source, ftype, mtime, chunks in FILES:
        for i, text in enumerate(chunks):
            payload = make_payload(
                text, source=source, root="/data", chunk_index=i, chunk_count=len(chunks),
                start=i * 100, end=i * 100 + len(text), title=Path(source).stem,
                file_type=ftype, mtime=mtime, content_hash="0" * 64,
            )
            points.append(Point(chunk_id(source, i), unit(rng), text, payload))
    return points


def make_store(kind: str, tmp_path: Path) -> VectorStore:
    if kind == "edge":
        return EdgeStore(tmp_path / "edge")
    if kind == "client":
        return QdrantClientStore(QdrantClient(":memory:"))
    return QdrantClientStore.connect(SERVER_URL, api_key=os.environ.get("RAG_QDRANT_API_KEY"))


BACKENDS = [
    "edge",
    "client",
    pytest.param(
        "server",
        marks=[pytest.mark.server, pytest.mark.skipif(not SERVER_URL, reason="RAG_QDRANT_URL not set")],
    ),
]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    s = make_store(request.param, tmp_path)
    yield s
    s.close()


@pytest.fixture
def coll(store: VectorStore):
    """A unique, empty collection name, dropped afterwards (matters for the server)."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    try:
        store.drop_collection(name)
    except StoreError:
        pass


@pytest.fixture
def loaded(store: VectorStore, coll: str):
    points = corpus()
    store.create_collection(coll, DIM, META)
    store.upsert(coll, points)
    return store, coll, points


def sources(hits) -> list[str]:
    return [h.payload["metadata"]["source"] for h in hits]


# ----- collection lifecycle -------------------------------------------------------------
def test_create_meta_roundtrip_and_drop(store: VectorStore, coll: str) -> None:
    assert store.collection_meta(coll) is None
    store.create_collection(coll, DIM, META)
    assert store.collection_meta(coll) == META
    assert coll in store.collections()
    assert store.dim(coll) == DIM and store.count(coll) == 0
    store.create_collection(coll, DIM, META)  # same settings: no-op
    with pytest.raises(CollectionMismatch, match="dim=16"):
        store.create_collection(coll, DIM + 1, META)
    with pytest.raises(CollectionMismatch, match="meta"):
        store.create_collection(coll, DIM, {**META, "note": "other"})
    store.drop_collection(coll)
    assert store.collection_meta(coll) is None and coll not in store.collections()
    with pytest.raises(CollectionNotFound, match=coll):
        store.count(coll)


def test_invalid_inputs_are_rejected(store: VectorStore, coll: str) -> None:
    with pytest.raises(ValueError, match="Invalid collection name"):
        store.create_collection("../evil", DIM, {})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        store.create_collection(coll, DIM, {"x": object()})
    with pytest.raises(ValueError, match="not a UUID"):
        Point("chunk-1", [1.0] * DIM, "t", {})
    store.create_collection(coll, DIM, META)
    with pytest.raises(CollectionMismatch, match="3-dim"):
        store.upsert(coll, [Point(str(uuid.uuid4()), [1.0, 0.0, 0.0], "t", {})])
    with pytest.raises(ValueError, match="valid modes: dense, sparse, hybrid"):
        store.search(coll, dense=[1.0] * DIM, mode="semantic")
    with pytest.raises(ValueError, match="needs a dense query vector"):
        store.search(coll, text="apples", mode="hybrid")


def test_upsert_is_idempotent_and_overwrites(loaded) -> None:
    store, coll, points = loaded
    assert store.count(coll) == len(points)
    changed = Point(points[0].id, points[0].dense, points[0].text, {**points[0].payload, "page_content": "v2"})
    store.upsert(coll, [changed, *points[1:]])
    assert store.count(coll) == len(points)
    [hit] = store.retrieve(coll, [points[0].id])
    assert hit.payload["page_content"] == "v2"
    assert [h.id for h in store.retrieve(coll, [points[2].id, str(uuid.uuid4()), points[1].id])] == [
        points[2].id, points[1].id,
    ]


def test_delete_and_delete_where(loaded) -> None:
    store, coll, points = loaded
    beta = "/data/docs/a/b/beta.pdf"
    store.delete_where(coll, beta)
    left = dict(store.iter_payloads(coll, ["metadata.source"]))
    assert len(left) == len(points) - 3
    assert beta not in {p["metadata"]["source"] for p in left.values()}
    store.delete(coll, [points[0].id, points[1].id])
    assert store.count(coll) == len(points) - 5
    assert store.retrieve(coll, [points[0].id]) == []


# ----- search ---------------------------------------------------------------------------
def test_dense_search_returns_nearest_first(loaded) -> None:
    store, coll, points = loaded
    target = points[7]
    query = np.asarray(target.dense) + 0.05 * unit(np.random.default_rng(1))
    hits = store.search(coll, dense=query, mode="dense", k=5)
    assert hits[0].id == target.id
    assert len(hits) == 5 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert hits[0].payload["page_content"] == target.text


def test_sparse_search_finds_rare_keyword(loaded) -> None:
    store, coll, _ = loaded
    hits = store.search(coll, text="Zygomorphic?", mode="sparse", k=5)
    assert [h.payload["page_content"] for h in hits] == ["zygomorphic flowers attract bees"]
    hits = store.search(coll, text="apples", mode="sparse", k=5)
    assert {h.payload["page_content"] for h in hits} == {"apples grow in the orchard", "apples and pears in autumn"}
    assert store.search(coll, text="the and of", mode="sparse", k=5) == []  # stopwords only


def test_a_query_value_carries_both_vectors_and_the_store_runs_it(loaded) -> None:
    """`Query.of` builds the dense and BM25 vectors once; `run_query` gives what `search` gives."""
    store, coll, points = loaded
    dense = list(points[3].dense)
    hybrid = Query.of("hybrid", dense, "apples in the orchard")
    assert hybrid.mode == "hybrid" and hybrid.dense == dense and hybrid.sparse.indices
    ran, searched = store.run_query(coll, hybrid, k=4), store.search(coll, dense=dense, text="apples in the orchard", k=4)
    assert [h.id for h in ran] == [h.id for h in searched] and len(ran) == 4
    assert [h.score for h in ran] == pytest.approx([h.score for h in searched], rel=1e-6)
    assert Query.of("hybrid", dense, "the and of") == Query("dense", dense, None)  # no searchable word
    assert Query.of("sparse", None, "the and of").sparse is None and \
        store.run_query(coll, Query.of("sparse", None, "the and of")) == []
    assert Query.of("dense", dense, "apples").sparse is None and Query.of("sparse", dense, "apples").dense is None
    with pytest.raises(ValueError, match="needs a dense query vector"):
        Query.of("hybrid", None, "apples")
    with pytest.raises(ValueError, match="Unknown search mode"):
        Query.of("keyword", dense, "apples")


@pytest.mark.parametrize("fusion", ["rrf", "dbsf"])
def test_hybrid_fuses_dense_and_sparse(loaded, fusion) -> None:
    store, coll, points = loaded
    store.fusion = fusion
    dense_target = points[4]  # "revenue grew in the north"
    hits = store.search(coll, dense=dense_target.dense, text="quetzalcoatl", mode="hybrid", k=3)
    top2 = {h.id for h in hits[:2]}
    assert dense_target.id in top2
    assert "quetzalcoatl is a feathered serpent" in {h.payload["page_content"] for h in hits[:2]}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # RRF scores by ranks alone (k = 2): 1 / (2 + rank) summed over the dense and the sparse list;
    # DBSF sums normalised scores, so its score is another number.
    lists = [[h.id for h in store.search(coll, dense=dense_target.dense, mode="dense", k=len(points))],
             [h.id for h in store.search(coll, text="quetzalcoatl", mode="sparse", k=len(points))]]
    by_ranks = sum(1 / (2 + ids.index(hits[0].id)) for ids in lists if hits[0].id in ids)
    assert (abs(hits[0].score - by_ranks) < 1e-6) == (fusion == "rrf")
    # text without searchable tokens degrades to dense
    only_dense = store.search(coll, dense=dense_target.dense, text="the", mode="hybrid", k=3)
    assert [h.id for h in only_dense] == [h.id for h in store.search(coll, dense=dense_target.dense, mode="dense", k=3)]


@pytest.mark.parametrize(
    ("flt", "expected_sources"),
    [
        (SearchFilter(path_prefix="/data/docs/a/"), {"/data/docs/a/alpha.md", "/data/docs/a/b/beta.pdf"}),
        (SearchFilter(path_prefix="/data/docs/c/gamma.txt"), {"/data/docs/c/gamma.txt"}),
        (SearchFilter(file_types=(".PDF", "txt")), {"/data/docs/a/b/beta.pdf", "/data/docs/c/gamma.txt"}),
        (SearchFilter(modified_after=2500.0), {"/data/docs/c/gamma.txt", "/data/other/delta.md"}),
        (SearchFilter(path_glob="*.md"), {"/data/docs/a/alpha.md", "/data/other/delta.md"}),
        (SearchFilter(path_glob="docs/*/b*"), {"/data/docs/a/b/beta.pdf"}),
        (SearchFilter(path_prefix="/data/docs", file_types=("md",), modified_after=500.0), {"/data/docs/a/alpha.md"}),
    ],
)
@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_filters(loaded, flt: SearchFilter, expected_sources: set[str], mode: str) -> None:
    store, coll, _ = loaded
    hits = store.search(coll, dense=unit(np.random.default_rng(3)), text="apples revenue server", mode=mode, k=12, flt=flt)
    assert set(sources(hits)) == expected_sources


def test_sparse_search_respects_filter(loaded) -> None:
    store, coll, _ = loaded
    hits = store.search(coll, text="apples", mode="sparse", k=5, flt=SearchFilter(path_prefix="/data/other"))
    assert [h.payload["page_content"] for h in hits] == ["apples and pears in autumn"]


def test_glob_filter_fetches_more_until_k_matches(store: VectorStore, coll: str) -> None:
    rng = np.random.default_rng(11)
    query = unit(rng)
    points = [Point(str(uuid.uuid4()), query + 0.3 * unit(rng), f"note {i}", {"metadata": {"source": f"/n/{i}.md"}}) for i in range(200)]
    rare = [Point(str(uuid.uuid4()), -query, "rare", {"metadata": {"source": f"/r/{i}.rst"}}) for i in range(2)]
    store.create_collection(coll, DIM, {})
    store.upsert(coll, points + rare)
    hits = store.search(coll, dense=query, mode="dense", k=2, flt=SearchFilter(path_glob="*.rst"))
    assert {h.id for h in hits} == {p.id for p in rare}


def test_iter_payloads_pages_through_everything(store: VectorStore, coll: str) -> None:
    rng = np.random.default_rng(5)
    store.create_collection(coll, DIM, {})
    pts = [
        Point(str(uuid.uuid4()), unit(rng), f"chunk {i}", {"page_content": f"chunk {i}", "metadata": {"source": f"/f/{i % 37}.md", "mtime": float(i)}})
        for i in range(1000)
    ]
    store.upsert(coll, pts)
    store.build_index(coll)
    seen = list(store.iter_payloads(coll, ["metadata.source"], page_size=128))
    assert len(seen) == 1000 and {i for i, _ in seen} == {p.id for p in pts}
    assert all(set(p) == {"metadata"} and set(p["metadata"]) == {"source"} for _, p in seen)
    assert store.count(coll) == 1000
    assert store.search(coll, dense=pts[500].dense, mode="dense", k=1)[0].id == pts[500].id


def test_missing_collection_is_reported(store: VectorStore) -> None:
    with pytest.raises(CollectionNotFound, match="does not exist"):
        store.search("nope_missing", dense=[1.0] * DIM, mode="dense")
    with pytest.raises(CollectionNotFound):
        store.upsert("nope_missing", corpus()[:1])


# ----- edge specifics ---------------------------------------------------------------------
def test_edge_reopen_keeps_data_and_meta(tmp_path: Path) -> None:
    points = corpus()
    with EdgeStore(tmp_path) as s:
        s.create_collection("docs", DIM, META)
        s.upsert("docs", points)
        before = [h.id for h in s.search("docs", dense=points[3].dense, text="revenue", k=5)]
    assert (tmp_path / "docs" / "collection.json").is_file()
    with EdgeStore(tmp_path) as s:
        assert s.collections() == ["docs"]
        assert s.collection_meta("docs") == META
        assert s.count("docs") == len(points)
        assert [h.id for h in s.search("docs", dense=points[3].dense, text="revenue", k=5)] == before


def test_edge_second_process_gets_clear_error(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path)
    s.create_collection("docs", DIM, META)
    s.upsert("docs", corpus())
    with pytest.raises(StoreLocked):  # same process, second handle
        EdgeStore(tmp_path)
    script = textwrap.dedent(
        f"""
        import json, sys
        from pathlib import Path
        import indexer.store.edge as edge
        from indexer.store import EdgeStore, StoreLocked
        out = []
        try:
            EdgeStore(Path({str(tmp_path)!r}))
        except StoreLocked as exc:
            out.append(str(exc))
        edge.fcntl = None  # bypass our lock file: the engine's own WAL lock must be translated too
        try:
            EdgeStore(Path({str(tmp_path)!r})).count("docs")
        except StoreLocked as exc:
            out.append(str(exc))
        print(json.dumps(out))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    messages = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(messages) == 2, proc.stderr
    for msg in messages:
        assert "another process" in msg and "rag index" in msg and "RAG_QDRANT_URL" in msg
    s.close()
    with EdgeStore(tmp_path) as again:  # released on close
        assert again.count("docs") == 12


def test_edge_closed_store_refuses_work(tmp_path: Path) -> None:
    s = EdgeStore(tmp_path)
    s.create_collection("docs", DIM, {})
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.count("docs")


# ----- server connection ----------------------------------------------------------------
def test_connect_unreachable_fails_fast_with_hint() -> None:
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        QdrantClientStore.connect("http://127.0.0.1:1", timeout=2)
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert "Cannot reach Qdrant at http://127.0.0.1:1" in msg
    assert "docker compose up -d qdrant" in msg and "unset RAG_QDRANT_URL" in msg


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_connect_reports_rejected_api_key() -> None:
    class Deny(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": {"error": "forbidden"}}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(StoreError, match="HTTP 403.*check the API key"):
            QdrantClientStore.connect(f"http://127.0.0.1:{server.server_port}", api_key="wrong", timeout=2)
    finally:
        server.shutdown()


def test_client_path_mode_persists_meta(tmp_path: Path) -> None:
    s = QdrantClientStore(QdrantClient(path=str(tmp_path / "qc")))
    s.create_collection("docs", DIM, META)
    s.upsert("docs", corpus()[:3])
    assert s.describe() == f"Qdrant local store at {tmp_path / 'qc'}"
    s.close()
    s = QdrantClientStore(QdrantClient(path=str(tmp_path / "qc")))
    assert s.collection_meta("docs") == META and s.count("docs") == 3
    s.close()


def test_open_store_picks_backend(tmp_path: Path) -> None:
    s = open_store(None, None, tmp_path / "store")
    assert isinstance(s, EdgeStore) and s.describe() == f"embedded store at {tmp_path / 'store'}"
    s.close()
    with pytest.raises(StoreError, match="Cannot reach Qdrant"):
        open_store("http://127.0.0.1:1", None, tmp_path / "store", timeout=2)


# ----- cross-backend ----------------------------------------------------------------------
def tie_groups(hits) -> list[set[str]]:
    """Ids grouped by (rounded) equal score, best first: engines may order exact ties differently."""
    groups: dict[float, set[str]] = {}
    for h in hits:
        groups.setdefault(round(h.score, 4), set()).add(h.id)
    return [groups[s] for s in sorted(groups, reverse=True)]


def test_backends_agree(tmp_path: Path) -> None:
    points = corpus(seed=21)
    n = len(points)
    stores = [EdgeStore(tmp_path / "edge"), QdrantClientStore(QdrantClient(":memory:"))]
    try:
        for s in stores:
            s.create_collection("docs", DIM, META)
            s.upsert("docs", points)
            s.build_index("docs")
        rng = np.random.default_rng(99)
        hybrid_checked = 0
        for text in ["apples orchard", "revenue budget", "zygomorphic bees", "quetzalcoatl serpent", "trees"]:
            q = unit(rng)
            for mode in ["dense", "sparse"]:  # k = all points: no cut inside a tie group
                a, b = (s.search("docs", dense=q, text=text, mode=mode, k=n) for s in stores)
                assert tie_groups(a) == tie_groups(b), (mode, text)
                assert sorted(h.score for h in a) == pytest.approx(sorted(h.score for h in b), rel=1e-4)
                assert a, (mode, text)
            sparse = stores[0].search("docs", text=text, mode="sparse", k=n)
            if all(len(g) == 1 for g in tie_groups(sparse)):  # RRF ranks are only defined without ties
                a, b = (s.search("docs", dense=q, text=text, mode="hybrid", k=5) for s in stores)
                assert [h.id for h in a] == [h.id for h in b], text
                assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-4)
                hybrid_checked += 1
        assert hybrid_checked >= 2
        flt = SearchFilter(path_prefix="/data/docs", modified_after=1500)
        a, b = (s.search("docs", dense=points[0].dense, mode="dense", k=4, flt=flt) for s in stores)
        assert [h.id for h in a] == [h.id for h in b] and len(a) == 4
    finally:
        for s in stores:
            s.close()


def test_payload_helpers() -> None:
    assert ancestor_dirs("/a/b/c.md") == ["/", "/a", "/a/b"]
    assert chunk_id("/a/b.md", 0) == chunk_id("/a/b.md", 0) != chunk_id("/a/b.md", 1)
    with pytest.raises(ValueError, match="chunk_index=3"):
        make_payload("t", source="/a", root="/", chunk_index=3, chunk_count=2, start=0, end=1,
                     title="a", file_type="md", mtime=0.0, content_hash="")


def test_update_collection_meta_merges_and_persists(tmp_path):
    from indexer.store import EdgeStore, QdrantClientStore

    from qdrant_client import QdrantClient

    for make in (lambda: EdgeStore(tmp_path / "edge"), lambda: QdrantClientStore(QdrantClient(path=str(tmp_path / "local")))):
        store = make()
        store.create_collection("c", 4, {"a": 1})
        store.update_collection_meta("c", {"last_indexed": 123.5, "roots": ["/x"]})
        store.close()
        store = make()
        assert store.collection_meta("c") == {"a": 1, "last_indexed": 123.5, "roots": ["/x"]}
        with pytest.raises(Exception, match="missing"):
            store.update_collection_meta("missing", {"a": 2})
        store.close()
