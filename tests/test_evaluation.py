"""Evaluation on real documents: set builders, chunk pooling, fusion, and no loss on our path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.beir import BeirDataset
from evaluation.docsets import _sections, headings_set, text_sections
from evaluation.engine import EvalCollection
from evaluation.metrics import compute_metrics
from evaluation.rankings import chunk_dataset, fuse_rrf, pool_chunks
from indexer.extract.rst import clean_rst_title
from indexer.store import EdgeStore

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

RST = """\
.. _tut-lists:

***************
Data Structures
***************

Intro text of the chapter.

More on Lists
=============

Lists have methods: ``append`` and :meth:`!extend`.

## Not a heading in reST

Under a Markdown-looking line.
"""


def test_text_sections_reads_rst_and_markdown_headings():
    got = list(text_sections(RST))
    assert [t for t, _ in got] == ["Data Structures", "More on Lists", "Not a heading in reST"]
    assert got[0][1] == "Intro text of the chapter."
    assert "append" in got[1][1] and "More on Lists" not in got[1][1]   # the title is not in the body


def test_clean_rst_title_keeps_the_words_of_roles():
    assert clean_rst_title("The :keyword:`!del` statement and :func:`~os.stat`") == "The del statement and os.stat"
    assert clean_rst_title("logging, :pep:`282`-style") == "logging, PEP 282-style"
    # a titled role shows its title, a literal keeps its stars, and the result is one line
    assert clean_rst_title("Using :ref:`the tutorial <tut-intro>`  and\n``*args``") == \
        "Using the tutorial and *args"


def test_sphinx_sections_drop_heading_permalinks_and_nested_sections(tmp_path):
    page = tmp_path / "p.html"
    page.write_text(
        '<html><body><div itemprop="articleBody"><section id="top"><h1>Memory Guide<a class="headerlink" '
        'href="#top">¶</a></h1><p>Top text.</p><section id="kmalloc"><h2>2.1. Allocating with kmalloc'
        '<a class="headerlink" href="#kmalloc">¶</a></h2><p>Use kmalloc for small objects.</p></section>'
        "</section></div></body></html>")
    got = {sid: (title, text) for sid, title, text in _sections(page)}
    assert got["top"] == ("Memory Guide", "Top text.")                   # nested section left out
    assert got["kmalloc"][0] == "Allocating with kmalloc"                  # section number removed
    assert "¶" not in got["kmalloc"][0] and got["kmalloc"][1] == "Use kmalloc for small objects."


def test_headings_set_from_the_bundled_samples():
    ds = headings_set(SAMPLES)
    assert len(ds.queries) >= 40 and len(ds.corpus) > len(ds.queries)
    for qid, title in ds.queries.items():
        (doc,) = ds.qrels[qid]
        assert title not in ds.corpus[doc][1].splitlines()[0]       # the query is not the body's first line
        assert len(title.split()) >= 3


def test_pool_chunks_keeps_each_documents_best_chunk():
    doc_of = {"a::0": "a", "a::1": "a", "b::0": "b", "c::0": "c"}
    assert pool_chunks(["a::1", "b::0", "a::0", "c::0"], doc_of) == ["a", "b", "c"]
    assert pool_chunks(["a::1", "b::0", "a::0", "c::0"], doc_of, k=2) == ["a", "b"]
    # by reciprocal-rank sum: b's single top chunk (1/2) loses to a's two chunks (1/3 + 1/4)
    assert pool_chunks(["b::0", "a::1", "a::0", "c::0"], doc_of, how="rrf") == ["a", "b", "c"]
    with pytest.raises(ValueError, match="max or rrf"):
        pool_chunks([], doc_of, how="mean")


def test_fuse_rrf_favours_agreement_and_follows_weights():
    dense, sparse = ["x", "both", "y"], ["z", "both", "w"]
    assert fuse_rrf([dense, sparse], k=2)[0] == "both"                 # 2 * 1/3 beats 1/2
    assert fuse_rrf([dense, sparse], k=2, weights=(1.0, 0.25))[0] == "x"
    with pytest.raises(ValueError, match="one weight per ranking"):
        fuse_rrf([dense, sparse], weights=(1.0,))


@pytest.mark.parametrize("fusion", ["dbsf", "rrf"])
def test_engine_hybrid_beats_each_mode_and_rrf_equals_offline_fusion(tmp_path, fusion):
    """A hand-made case where dense and sparse each put a wrong document first and the right one
    second: the engine's hybrid ranks the right one first with either fusion; with RRF, exactly as
    :func:`fuse_rrf` computes."""
    fillers = [f"other-{i}" for i in range(6)]          # closer to the query than sparse-wrong, no query terms
    ids = ["right", "dense-wrong", "sparse-wrong", *fillers]
    texts = ["rotate pages of a document", "unrelated prose", "rotate rotate rotate pdf pdf pages pages",
             *(f"nothing here {i}" for i in range(6))]
    q = np.array([1.0, 0.0, 0.0], np.float32)
    vecs = np.array([[0.9, 0.44, 0.0], [1.0, 0.05, 0.0], [-1.0, 0.0, 0.2],
                     *([0.1 * (6 - i), 0.0, 1.0] for i in range(6))], np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    store = EdgeStore(tmp_path)
    store.fusion = fusion
    try:
        with EvalCollection(store, ids, texts, vecs) as coll:
            got = {m: coll.rankings(["q"], ["rotate pdf pages"], q[None], m, 9)["q"]
                   for m in ("dense", "sparse", "hybrid")}
    finally:
        store.close()
    assert got["dense"][0] == "dense-wrong" and got["sparse"][0] == "sparse-wrong"
    assert got["hybrid"][0] == "right"
    from indexer.store.base import RRF_K, RRF_WEIGHTS

    if fusion == "rrf":
        assert got["hybrid"] == fuse_rrf([got["dense"], got["sparse"]], RRF_K, RRF_WEIGHTS, 9)


def test_chunk_dataset_marks_every_chunk_of_a_relevant_document(default_embedder):
    text = " ".join(f"Sentence number {i} about lists and tuples." for i in range(120))
    ds = BeirDataset({"d": ("", text), "e": ("", "short other text")}, {"q": "lists"}, {"q": {"d": 1}})
    chunked = chunk_dataset(ds, default_embedder.tokenizer, 64, 8)
    d_chunks = [c for c, d in chunked.doc_of.items() if d == "d"]
    assert len(d_chunks) > 3
    assert set(chunked.chunks.qrels["q"]) == set(d_chunks)
    assert all(default_embedder.count_tokens(chunked.chunks.corpus[c][1]) <= 64 for c in d_chunks)
    assert all(chunked.chunks.corpus[c][0] == "" for c in d_chunks)  # no header unless asked
    # a contextual header: what the header function returns starts each chunk's document text
    headed = chunk_dataset(ds, default_embedder.tokenizer, 64, 8,
                           header=lambda doc_id, title, chunk: f"{doc_id} @ {chunk.start}")
    for c, d in headed.doc_of.items():
        start = text.index(headed.chunks.corpus[c][1]) if d == "d" else 0
        assert headed.chunks.document(c).startswith(f"{d} @ {start} ")


def test_chunked_eval_embeds_chunks_after_their_title_as_the_index_does(default_embedder):
    from evaluation.evaluate import run_eval

    body = "A long manual about keeping animals. " * 60  # several chunks, none naming the animal
    ds = BeirDataset({"z": ("Zebra care handbook", body), "o": ("Otter notes", "Otters swim in rivers.")},
                     {"q": "zebra handbook"}, {"q": {"z": 1}})
    titled = run_eval(default_embedder, ds, "sparse", chunks=(64, 8), per_query=True)
    alone = run_eval(default_embedder, ds, "sparse", chunks=(64, 8), per_query=True, chunk_context="none")
    assert titled["metrics"]["mrr@10"] == 1.0  # the title's words reach every chunk's BM25 text
    assert alone["metrics"]["mrr@10"] == 0.0   # no chunk text names the zebra


@pytest.mark.slow
def test_rag_eval_dense_loses_nothing_against_sentence_transformers(default_embedder):
    """Our embedding path ranks as well as the model's own sentence-transformers encoding (issue: no loss)."""
    from sentence_transformers import SentenceTransformer

    from embedder.loading import default_model_dir
    from evaluation.evaluate import run_eval

    ds = headings_set(SAMPLES)
    ours = run_eval(default_embedder, ds, mode="dense")["metrics"]
    st = SentenceTransformer(str(default_model_dir()), device="cpu")
    ids = list(ds.corpus)
    qids = list(ds.queries)
    d = st.encode([ds.document(i) for i in ids], normalize_embeddings=True)
    qv = st.encode([ds.queries[q] for q in qids], normalize_embeddings=True)
    top = np.argsort(-(qv @ d.T), axis=1)[:, :100]
    theirs = compute_metrics({q: [ids[j] for j in top[r]] for r, q in enumerate(qids)}, ds.qrels)
    assert ours["mrr@10"] > 0.3                       # the set is not trivial noise
    assert abs(ours["mrr@10"] - theirs["mrr@10"]) <= 0.005
    assert abs(ours["ndcg@10"] - theirs["ndcg@10"]) <= 0.005


def test_rag_eval_chunks_finds_what_lies_past_the_models_max_length(tmp_path, capsys):
    """Whole-document ranking sees a document's first 256 tokens only; `rag eval --chunks` ranks by the
    best chunk, as `rag search` does, so the answer at the end of a long page is found."""
    from app.cli import main
    from evaluation.beir import write_beir

    filler = " ".join(f"Tomatoes and roses need sun, water and compost in bed {i}." for i in range(80))
    corpus = {
        "long": ("", filler + "\n\nThe process scheduler decides which runnable thread gets the CPU next."),
        "cpu": ("", "Processor caches keep recently used memory close to the CPU cores."),
        "net": ("", "Network interfaces move packets between the machine and the wire."),
    }
    write_beir(tmp_path / "set", BeirDataset(corpus, {"q": "which thread does the scheduler run next"},
                                             {"q": {"long": 1}}))
    results = {}
    for flag in ([], ["--chunks"]):
        assert main(["eval", str(tmp_path / "set"), "--mode", "dense", "--json", "--data-dir", str(tmp_path / "d"),
                     *flag]) == 0
        out = json.loads(capsys.readouterr().out)
        results[out["unit"]] = out["metrics"]["mrr@10"]
    assert results["documents"] < 1.0
    assert results["chunks"] == 1.0


def test_rag_eval_rerank_scores_what_rag_search_rerank_returns(tmp_path, capsys, monkeypatch):
    """`rag eval --rerank` re-orders the first stage's top candidates with the reranking model, as
    `rag search --rerank` does: keyword bait that BM25 ranks first drops below the answer."""
    from app.cli import main
    from evaluation.beir import write_beir

    corpus = {
        "bait": ("", "How do I do it, I wonder? I do. Page numbers of a PDF: page 1, page 2, page 3, page 4."),
        "answer": ("", "Do this to turn PDF sheets sideways: choose Turn."),
        "spin": ("", "Spin a PDF sheet by ninety degrees to fix its orientation."),
        "size": ("", "A PDF file grows with every embedded font and image."),
    }
    write_beir(tmp_path / "set", BeirDataset(corpus, {"q": "how do I rotate a pdf page"}, {"q": {"answer": 1}}))
    monkeypatch.setenv("RAG_RERANK_MODEL", "default")
    monkeypatch.setenv("RAG_RERANK_DEPTH", "4")
    out = {}
    for flag in ("--no-rerank", "--rerank"):
        assert main(["eval", str(tmp_path / "set"), "--mode", "sparse", "--json", flag,
                     "--data-dir", str(tmp_path / "d")]) == 0
        out[flag] = json.loads(capsys.readouterr().out)
    assert out["--no-rerank"]["metrics"]["mrr@10"] < 1.0          # BM25 alone prefers the bait
    assert out["--no-rerank"]["rerank"] is None
    assert out["--rerank"]["metrics"]["mrr@10"] == 1.0
    assert out["--rerank"]["rerank"]["depth"] == 4
    assert main(["eval", str(tmp_path / "set"), "--mode", "sparse", "--rerank", "--data-dir", str(tmp_path / "d")]) == 0
    assert "reranked by default (top 4)" in capsys.readouterr().out
