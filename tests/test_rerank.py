"""The second-stage reranker: re-orders the top candidates with another embedder."""

from __future__ import annotations

import json

import pytest

from evaluation.rankings import fuse_rrf
from indexer.rerank import Reranker
from indexer.search import Searcher, SearchResult
from indexer.store import EdgeStore

TEXTS = [
    "Stock markets fell sharply today after the interest rate decision.",
    "Bake the bread at 220 degrees for thirty minutes.",
    "To rotate a page in a PDF file, open it and choose Rotate from the page menu.",
    "Violins and cellos are string instruments played with a bow.",
]


def results(order):
    return [SearchResult(rank=i + 1, score=1.0 - i / 10, id=f"id{j}", text=TEXTS[j]) for i, j in enumerate(order)]


def test_reranker_moves_the_answer_up_and_renumbers(default_embedder):
    first = results([0, 1, 2, 3])               # the first stage put the answer third
    alone = Reranker(default_embedder, depth=4, fuse=False).rerank("how do I rotate a pdf page", first)
    assert alone[0].id == "id2"
    assert [r.rank for r in alone] == [1, 2, 3, 4]
    q = default_embedder.embed_query("how do I rotate a pdf page")
    assert alone[0].score == pytest.approx(float(default_embedder.embed_documents([TEXTS[2]])[0] @ q), abs=1e-5)
    assert [r.score for r in alone] == sorted((r.score for r in alone), reverse=True)
    fused = Reranker(default_embedder, depth=4, fuse=True).rerank("how do I rotate a pdf page", first)
    expected = fuse_rrf([[r.id for r in first], [r.id for r in alone]], k=2)
    assert [r.id for r in fused] == expected
    assert fused.index(next(r for r in fused if r.id == "id2")) < 2     # up from third


def test_reranker_leaves_results_below_its_depth_in_place(default_embedder):
    first = results([0, 1, 3, 2])
    out = Reranker(default_embedder, depth=2, fuse=False).rerank("how do I rotate a pdf page", first)
    assert [r.id for r in out[2:]] == ["id3", "id2"]          # not re-scored, order kept
    assert [r.score for r in out[2:]] == [r.score for r in first[2:]]
    with pytest.raises(ValueError, match="at least 2"):
        Reranker(default_embedder, depth=1)


def test_searcher_reranks_on_request_and_says_so(default_embedder, tmp_path):
    from embedder import Embedder
    from indexer.pipeline import Indexer, IndexSettings

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(TEXTS):
        (docs / f"d{i}.txt").write_text(text)
    store = EdgeStore(tmp_path / "store")
    try:
        settings = IndexSettings(chunk_tokens=64, chunk_overlap=8)
        Indexer(default_embedder, store, "c", settings).run([docs], progress=False)
        plain = Searcher(default_embedder, store, "c")
        with pytest.raises(ValueError, match="RAG_RERANK"):
            plain.search("rotate a pdf page", rerank=True)
        reranker = Reranker(Embedder.from_pretrained("default"), depth=3)
        searcher = Searcher(default_embedder, store, "c", reranker)
        response = searcher.search("rotate a pdf page", k=2, mode="dense", rerank=True)
    finally:
        store.close()
    assert response.reranked and response.to_dict()["reranked"] is True
    assert len(response.results) == 2 and response.results[0].source.endswith("d2.txt")


def test_cli_search_rerank_flag(tmp_path, monkeypatch, capsys):
    from app.cli import main

    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_RERANK_MODEL", "default")      # the small model keeps the test fast
    monkeypatch.delenv("RAG_QDRANT_URL", raising=False)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(TEXTS):
        (docs / f"d{i}.txt").write_text(text)
    assert main(["index", str(docs), "--json"]) == 0
    capsys.readouterr()
    assert main(["search", "rotate a pdf page", "--rerank", "--json", "-k", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["reranked"] is True
    monkeypatch.setenv("RAG_RERANK", "true")
    assert main(["search", "rotate a pdf page", "--no-rerank", "-k", "2"]) == 0
    assert "reranked" not in capsys.readouterr().out
    assert main(["search", "rotate a pdf page", "-k", "2"]) == 0
    assert "reranked by default" in capsys.readouterr().out
