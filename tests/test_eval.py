"""Retrieval evaluation: metrics (hand-computed and against trec_eval), the BEIR loader, dense and store paths."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evaluation.beir import BeirDataset, BeirFormatError, load_beir, write_beir
from evaluation.dense import dense_rankings, exact_top_k
from evaluation.evaluate import run_eval
from evaluation.metrics import (
    compute_metrics,
    mrr_at_k,
    ndcg_at_k,
    paired_comparison,
    parse_metric,
    per_query_metrics,
    recall_at_k,
)
from indexer.jsonl import write_jsonl

# -- metrics, by hand ----------------------------------------------------------------------------
# q1 judged {d1: 2, d2: 0, d3: 1}, ranked [d2, d1, d4, d3]:
#   DCG@10  = 0/log2(2) + 2/log2(3) + 0/log2(4) + 1/log2(5) = 1.2618595 + 0.4306766 = 1.6925361
#   IDCG@10 = 2/log2(2) + 1/log2(3)                         = 2 + 0.6309298         = 2.6309298
#   nDCG@10 = 1.6925361 / 2.6309298 = 0.6433224
#   nDCG@2  = (2/log2(3)) / 2.6309298 = 1.2618595 / 2.6309298 = 0.4796249
#   MRR@10  = 1/2 (d2 is judged but grade 0; d1 at rank 2);  MRR@1 = 0
#   Recall@10 = 2/2 = 1.0 (d1, d3);  Recall@2 = 1/2 (only d1)
Q1_RELS = {"d1": 2, "d2": 0, "d3": 1}
Q1_RANK = ["d2", "d1", "d4", "d3"]


def test_ndcg_hand_computed():
    assert ndcg_at_k(Q1_RANK, Q1_RELS, 10) == pytest.approx(0.6433224, abs=1e-6)
    assert ndcg_at_k(Q1_RANK, Q1_RELS, 2) == pytest.approx(0.4796249, abs=1e-6)
    assert ndcg_at_k(["d1", "d3"], Q1_RELS, 10) == pytest.approx(1.0)
    # grades matter: swapping d1 (2) and d3 (1) gives (1/1 + 2/log2(3)) / 2.6309298 = 2.2618595 / 2.6309298
    assert ndcg_at_k(["d3", "d1"], Q1_RELS, 10) == pytest.approx(2.2618595 / 2.6309298, abs=1e-6)


def test_mrr_and_recall_hand_computed():
    assert mrr_at_k(Q1_RANK, Q1_RELS, 10) == 0.5
    assert mrr_at_k(Q1_RANK, Q1_RELS, 1) == 0.0
    assert recall_at_k(Q1_RANK, Q1_RELS, 10) == 1.0
    assert recall_at_k(Q1_RANK, Q1_RELS, 2) == 0.5


def test_repeated_docs_count_once():
    # [d1, d1, d3] -> [d1, d3]: DCG = 2/1 + 1/log2(3) = IDCG, so 1.0; without dedupe d3 would sit at rank 3
    assert ndcg_at_k(["d1", "d1", "d3"], Q1_RELS, 10) == pytest.approx(1.0)
    assert recall_at_k(["d1", "d1"], Q1_RELS, 2) == 0.5


def test_means_over_judged_queries_missing_ranking_scores_zero(caplog):
    # q1 as above (nDCG 0.6433224), q2 judged {d5: 1} but ranked without d5 (0), q3 judged, no ranking (0)
    qrels = {"q1": Q1_RELS, "q2": {"d5": 1}, "q3": {"d1": 1}}
    rankings = {"q1": Q1_RANK, "q2": ["d1", "d2"], "q_unjudged": ["d1"]}
    result = compute_metrics(rankings, qrels)
    assert result["ndcg@10"] == pytest.approx(0.6433224 / 3, abs=1e-6)
    assert result["mrr@10"] == pytest.approx(0.5 / 3)
    assert result["recall@100"] == pytest.approx(1 / 3)
    assert "no ranking" in caplog.text
    assert set(per_query_metrics(rankings, qrels)) == {"q1", "q2", "q3"}


def test_metric_names_and_empty_qrels_rejected():
    assert parse_metric("nDCG@10") == ("ndcg", 10)
    with pytest.raises(ValueError, match="map@10"):
        parse_metric("map@10")
    with pytest.raises(ValueError, match="qrels is empty"):
        compute_metrics({"q": ["d"]}, {})


def test_metrics_match_trec_eval():
    """Random graded judgements and runs: our values equal pytrec_eval's (trec_eval's C code)."""
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(3)
    docs = [f"d{i}" for i in range(300)]
    qrels, rankings = {}, {}
    for q in range(40):
        judged = rng.choice(docs, size=int(rng.integers(1, 15)), replace=False)
        qrels[f"q{q}"] = {d: int(rng.integers(0, 4)) for d in judged}
        qrels[f"q{q}"][str(judged[0])] = int(rng.integers(1, 4))  # at least one relevant
        rankings[f"q{q}"] = [str(d) for d in rng.permutation(docs)[:150]]
    ours = per_query_metrics(rankings, qrels)
    full = {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in rankings.items()}
    top10 = {q: {d: float(10 - i) for i, d in enumerate(r[:10])} for q, r in rankings.items()}
    ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10", "recall.100"}).evaluate(full)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    assert any(v["ndcg@10"] > 0 for v in ours.values())
    for q in qrels:
        assert ours[q]["ndcg@10"] == pytest.approx(ref[q]["ndcg_cut_10"], abs=1e-9), q
        assert ours[q]["recall@10"] == pytest.approx(ref[q]["recall_10"], abs=1e-9), q
        assert ours[q]["recall@100"] == pytest.approx(ref[q]["recall_100"], abs=1e-9), q
        assert ours[q]["mrr@10"] == pytest.approx(rr[q]["recip_rank"], abs=1e-9), q


# -- BEIR folders ------------------------------------------------------------------------------
def beir_folder(tmp_path, qrels_kind="tsv"):
    root = tmp_path / "mini"
    (root / "qrels").mkdir(parents=True)
    write_jsonl(root / "corpus.jsonl", [{"_id": "d1", "title": "T1", "text": "one"},
                                        {"_id": 2, "text": "two"}])  # int id, no title
    write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"},
                                         {"_id": "q3", "text": "unjudged"}])
    if qrels_kind == "tsv":
        (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq2\t2\t1\nq2\td1\t0\n")
        (root / "qrels" / "dev.tsv").write_text("q1\t2\t1\n")  # no header
    else:
        (root / "qrels").rmdir()
        write_jsonl(root / "qrels.jsonl", [
            {"query-id": "q1", "corpus-id": "d1", "score": 2, "split": "test"},
            {"query-id": "q2", "corpus-id": "2", "score": 1, "split": "test"},
            {"query-id": "q2", "corpus-id": "d1", "score": 0, "split": "test"},
            {"query-id": "q1", "corpus-id": "2", "score": 1, "split": "dev"},
        ])
    return root


@pytest.mark.parametrize("kind", ["tsv", "jsonl"])
def test_load_beir_tsv_and_jsonl(tmp_path, kind):
    ds = load_beir(beir_folder(tmp_path, kind))
    assert ds.corpus == {"d1": ("T1", "one"), "2": ("", "two")}
    assert ds.queries == {"q1": "first", "q2": "second"}  # q3 has no judgements
    assert ds.qrels == {"q1": {"d1": 2}, "q2": {"2": 1, "d1": 0}}
    assert ds.document("d1") == "T1 one" and ds.document("2") == "two"
    dev = load_beir(beir_folder(tmp_path / "again", kind), split="dev")
    assert dev.qrels == {"q1": {"2": 1}} and list(dev.queries) == ["q1"]


def test_load_beir_errors_name_the_file(tmp_path):
    root = beir_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="train") as err:
        load_beir(root, split="train")
    assert "dev, test" in str(err.value)  # the available splits
    (root / "corpus.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"corpus\.jsonl is missing.*queries\.jsonl"):
        load_beir(root)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_beir(tmp_path / "nowhere")
    write_jsonl(root / "corpus.jsonl", [{"id": "x", "text": "no _id"}])
    with pytest.raises(BeirFormatError, match=r"corpus\.jsonl:1 has no \"_id\""):
        load_beir(root)


def test_write_beir_round_trip(tmp_path):
    ds = BeirDataset({"a": ("Title", "tab\there"), "b": ("", "é ünïcode")}, {"q": "query one"},
                     {"q": {"a": 1, "b": 0}})
    back = load_beir(write_beir(tmp_path / "out", ds, split="heldout"), split="heldout")
    assert back == ds


# -- exact search --------------------------------------------------------------------------------
def test_exact_top_k_blocks_match_brute_force():
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=(11, 5)).astype(np.float32)
    idx, scores = exact_top_k(q, d, 4, query_block=3, corpus_block=4)
    brute = np.argsort(-(q @ d.T), axis=1)[:, :4]
    assert idx.tolist() == brute.tolist()
    assert np.allclose(scores, np.take_along_axis(q @ d.T, brute, axis=1))
    assert exact_top_k(q, d, 50)[0].shape == (7, 11)
    with pytest.raises(ValueError, match="same dimension"):
        exact_top_k(q, d[:, :3], 2)


# -- end to end on a small hand-made set -----------------------------------------------------
TOPICS = BeirDataset(
    corpus={
        "py": ("Python lists", "Lists in Python are mutable sequences; append adds an item to the end of a list."),
        "bread": ("Baking bread", "Knead the dough, let it rise for an hour, then bake the loaf in a hot oven."),
        "planet": ("Jupiter", "Jupiter is the largest planet in the solar system, a gas giant with a red spot."),
        "cup": ("Football", "The World Cup is a football tournament held every four years between nations."),
        "volcano": ("Volcanoes", "A volcano erupts when magma rises through the crust and lava flows out."),
        "vaccine": ("Vaccines", "Vaccines train the immune system to recognise a virus without the disease."),
    },
    queries={
        "q1": "how do I add an element to a python list",
        "q2": "which planet is the biggest",
        "q3": "how long should bread dough rise before baking",
        "q4": "how often is the football world cup held",
        "q5": "shots that protect against infection",  # no word in common with its document: BM25 misses it
    },
    qrels={"q1": {"py": 2, "vaccine": 0}, "q2": {"planet": 1}, "q3": {"bread": 1}, "q4": {"cup": 1},
           "q5": {"vaccine": 1}},
    name="topics",
)


def test_evaluate_dense_numpy(default_embedder):
    result = run_eval(default_embedder, TOPICS, "dense")
    metrics = result["metrics"]
    assert metrics["ndcg@10"] > 0.8 and metrics["mrr@10"] > 0.8
    assert metrics["recall@100"] == 1.0  # 6 docs: everything is retrieved
    assert result["n_queries"] == 5 and result["n_docs"] == 6 and result["seconds"] >= 0
    rankings = dense_rankings(default_embedder, TOPICS, k=3)
    assert all(len(r) == 3 for r in rankings.values())
    assert rankings["q1"][0] == "py" and rankings["q2"][0] == "planet"
    with pytest.raises(ValueError, match="raise k"):
        run_eval(default_embedder, TOPICS, "dense", k=10)


def test_ignore_identical_ids(default_embedder):
    # a query whose id is also a document id (ArguAna-style): that document is not returned
    ds = BeirDataset(dict(TOPICS.corpus, q2=("", "which planet is the biggest")), dict(TOPICS.queries),
                     dict(TOPICS.qrels))
    assert "q2" not in dense_rankings(default_embedder, ds, k=7)["q2"]
    assert dense_rankings(default_embedder, ds, k=7, ignore_identical_ids=False)["q2"][0] == "q2"


def test_store_paths_sparse_hybrid_and_dense_agree(default_embedder, tmp_path):
    from evaluation.evaluate import store_rankings
    from indexer.store import EdgeStore

    results = {}
    for mode in ("sparse", "hybrid"):
        result = results[mode] = run_eval(default_embedder, TOPICS, mode, lambda _, m=mode: EdgeStore(tmp_path / m))
        assert result["mode"] == mode and result["n_queries"] == 5 and result["n_docs"] == 6
        assert (tmp_path / mode).is_dir() and not any((tmp_path / mode).glob("eval-*"))  # temp collection dropped
    # BM25 finds q1-q4 (shared words) but nothing for q5; hybrid gets q5 from the dense side
    assert 0.6 < results["sparse"]["metrics"]["ndcg@10"] <= 0.8 and results["sparse"]["metrics"]["recall@100"] == 0.8
    assert results["hybrid"]["metrics"]["ndcg@10"] > 0.9 and results["hybrid"]["metrics"]["recall@10"] == 1.0
    assert results["hybrid"]["model"]["model"] == default_embedder.fingerprint.model
    json.dumps(results)  # the --json output must serialise
    assert run_eval(None, TOPICS, "sparse")["metrics"] == results["sparse"]["metrics"]  # BM25 needs no embedder

    with EdgeStore(tmp_path / "dense") as store:
        via_store = store_rankings(default_embedder, store, TOPICS, "dense", k=6)
        assert store.collections() == []
    via_numpy = dense_rankings(default_embedder, TOPICS, k=6)
    assert via_store == via_numpy
    dense = run_eval(default_embedder, TOPICS, "dense")
    dense_store = run_eval(default_embedder, TOPICS, "dense", dense_via_store=True)
    assert dense["metrics"] == pytest.approx(dense_store["metrics"])
    with pytest.raises(ValueError, match="needs an embedder"):
        run_eval(None, TOPICS, "hybrid")


def test_ndcg_formula_constant():
    # guard against a log base slip: rank-2 discount is 1/log2(3)
    assert ndcg_at_k(["x", "d"], {"d": 1}, 10) == pytest.approx(1 / math.log2(3))


def test_paired_comparison_exact_small_case():
    """4 queries, each better by 0.5: the 16 sign flips give |mean| = 0.5 only for all-same signs."""
    before = {f"q{i}": 0.25 for i in range(4)}
    after = {f"q{i}": 0.75 for i in range(4)}
    result = paired_comparison(before, after)
    assert result["delta"] == 0.5 and result["ci95"] == [0.5, 0.5]
    assert result["p_value"] == pytest.approx(2 / 16)  # exact test: 2^4 arrangements, 2 as extreme
    assert (result["better"], result["worse"], result["queries"]) == (4, 0, 4)


def test_paired_comparison_tells_a_real_gain_from_noise():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 120)
    gain = {f"q{i}": float(b + 0.05) for i, b in enumerate(base)}  # every query up by 0.05
    noise = {f"q{i}": float(b + rng.choice([-0.05, 0.05])) for i, b in enumerate(base)}
    before = {f"q{i}": float(b) for i, b in enumerate(base)}
    real, chance = paired_comparison(before, gain), paired_comparison(before, noise)
    assert real["p_value"] < 0.001 and real["ci95"][0] > 0
    assert chance["p_value"] > 0.05 and chance["ci95"][0] < 0 < chance["ci95"][1]
    assert paired_comparison(before, before)["p_value"] == 1.0
    with pytest.raises(ValueError, match="same"):
        paired_comparison(before, {"other": 1.0})
