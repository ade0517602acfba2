"""Refinement steps on hand-made data where the right answer is known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from finetune.refine import (
    Example,
    RefineReport,
    copied_from,
    dedupe_queries,
    drop_malformed,
    drop_repetitive_passages,
    filter_false_positives,
    jaccard,
    mine_hard_negatives,
    near_duplicate_groups,
    rows_of,
    shingles,
    strip_artifacts,
)

PASSAGES = {
    "qdrant": "Qdrant is a vector database written in Rust. It supports filtering and hybrid search over payloads.",
    "bread": "Bread dough needs to rise for about an hour before baking at a high temperature.",
    "cats": "Cats are mammals.",
    "blank": "   ",
}


def ex(query: str, positive: str = "qdrant", task: str = "web_search") -> Example:
    return Example(query, positive, task)


# -- drop_malformed ------------------------------------------------------------------------------
def test_drop_malformed_reasons_and_stripping():
    examples = [
        ex("what language is qdrant written in"),                                 # kept
        ex('Here is a query: "how long does bread dough rise"', "bread"),         # kept, stripped
        ex("**Query:** vector database written in rust"),                         # kept: short keyword query
        ex("is qdrant a vector database written in rust or go"),                  # kept: 5 of 10 words verbatim
        ex("Qdrant is a vector database written in Rust"),                        # copied: substring, 8 words
        ex("qdrant is a vector database written in rust it supports filtering"),  # copied across the sentence end
        ex("cats are mammals", "cats"),                                           # copied: the whole passage
        ex("qdrant"),                                                             # too_short
        ex(" ".join(["word"] * 200)),                                             # too_long
        ex("1234 5678 9012 #### ab"),                                             # not_text
        ex("As an AI language model, I cannot write queries for this passage"),   # llm_artifact
        ex("1. what is qdrant\n2. what is rust"),                                 # llm_artifact: a list
        ex("what is in the passage", "missing"),                                  # missing_positive
        ex("what is in the passage", "blank"),                                    # missing_positive (empty)
    ]
    report = RefineReport()
    kept, dropped = drop_malformed(examples, PASSAGES, report=report)
    assert [k.query for k in kept] == [
        "what language is qdrant written in",
        "how long does bread dough rise",
        "vector database written in rust",
        "is qdrant a vector database written in rust or go",
    ]
    assert [d.reason for d in dropped] == ["copied", "copied", "copied", "too_short", "too_long", "not_text",
                                           "llm_artifact", "llm_artifact", "missing_positive", "missing_positive"]
    assert dropped[0].item is examples[4]
    assert report.steps["drop_malformed"] == {"in": 14, "kept": 4, "stripped": 2, "copied": 3, "too_short": 1,
                                              "too_long": 1, "not_text": 1, "llm_artifact": 2,
                                              "missing_positive": 2}
    assert examples[1].query.startswith("Here is")  # inputs are not mutated


@pytest.mark.parametrize("raw, clean", [
    ("Sure! Here is the query: what is qdrant", "what is qdrant"),
    ("Question 2: why is the sky blue?", "why is the sky blue?"),
    ("“best pasta recipe”", "best pasta recipe"),
    ("query-based filtering in qdrant", "query-based filtering in qdrant"),  # not a "Query:" label
    ("how to parse json in python", "how to parse json in python"),
])
def test_strip_artifacts(raw, clean):
    assert strip_artifacts(raw) == clean


def test_copied_from_needs_a_long_verbatim_run():
    passage = "a b c d e f g h i j".split()
    assert copied_from("c d e f g h i j x".split(), passage, 0.8)        # 8 of 9 contiguous >= ceil(7.2)
    assert not copied_from("c d e f x g h i j".split(), passage, 0.8)    # longest run is 4
    assert not copied_from([], passage, 0.9)


# -- dedupe_queries -------------------------------------------------------------------------------
def test_dedupe_queries_keeps_first_of_each_group():
    examples = [
        ex("How do I rotate a PDF page?", "p1"),
        ex("how do i rotate a pdf page", "p2"),        # duplicate after normalisation
        ex("how do I rotate a pdf pages", "p3"),       # char-4-gram Jaccard 0.96 -> near duplicate
        ex("how can I rotate a PDF page", "p4"),       # Jaccard 0.62: a different wording, kept
        ex("how do I merge two PDF files", "p5"),      # kept
        ex("How do I rotate a PDF page?", "p6", task="question_answering"),
    ]
    report = RefineReport()
    kept, dropped = dedupe_queries(examples, report=report)
    assert [k.positive_id for k in kept] == ["p1", "p4", "p5"]
    assert [(d.item.positive_id, d.reason, d.detail) for d in dropped] == [
        ("p2", "duplicate", "How do I rotate a PDF page?"),
        ("p6", "duplicate", "How do I rotate a PDF page?"),
        ("p3", "near_duplicate", "How do I rotate a PDF page?"),
    ]
    assert report.steps["dedupe_queries"] == {"in": 6, "kept": 3, "duplicate": 2, "near_duplicate": 1}
    per_task, _ = dedupe_queries(examples, per_task=True)
    assert [k.positive_id for k in per_task] == ["p1", "p4", "p5", "p6"]


def test_minhash_lsh_matches_brute_force():
    """LSH candidates + exact check give the same groups as comparing every pair."""
    rng = np.random.default_rng(1)
    vocab = "rotate merge split pdf page file how do i can you a the two one in acrobat word".split()
    base = [" ".join(rng.choice(vocab, size=6)) for _ in range(60)]
    texts = base + [t + " s" for t in base[:40]] + [t.replace(" ", "  ", 1) + "x" for t in base[20:60]]
    sets = [shingles(t) for t in texts]
    got = near_duplicate_groups(sets, 0.8)
    expected: list[int] = []
    for i, s in enumerate(sets):
        expected.append(next((j for j in range(i) if expected[j] == -1 and jaccard(s, sets[j]) >= 0.8), -1))
    assert got == expected
    assert sum(o != -1 for o in got) >= 40  # the test data really has duplicates


# -- drop_repetitive_passages --------------------------------------------------------------------
NATURAL = ("The embedded store keeps one shard directory per collection and writes a small sidecar file with "
           "the vector size and the embedder fingerprint, so that opening a collection with a different model "
           "is refused before any search runs.")


def test_drop_repetitive_passages():
    passages = {
        "natural": NATURAL,                                        # 40 words, unique ratio 0.8: kept
        "boiler": "Click here to subscribe. " * 20,                 # 80 words, 4 distinct: repetitive
        "copy": "  " + NATURAL.upper() + " ",                       # same words: near duplicate of natural
        "short": "Subscribe subscribe subscribe.",                 # < 30 words: ratio not judged, kept
        "empty": " \n ",
        "other": PASSAGES["bread"],
    }
    report = RefineReport()
    kept, dropped = drop_repetitive_passages(passages, report=report)
    assert list(kept) == ["natural", "short", "other"]
    assert kept["natural"] == NATURAL
    assert [(d.item, d.reason, d.detail) for d in dropped] == [
        ("boiler", "repetitive", "unique-word ratio 0.05"),
        ("empty", "empty", ""),
        ("copy", "near_duplicate", "natural"),
    ]
    assert report.steps["drop_repetitive_passages"] == {"in": 6, "kept": 3, "repetitive": 1, "empty": 1,
                                                        "near_duplicate": 1}


# -- vectors: a query along x; passages at known cosines -------------------------------------------
def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_filter_false_positives_by_rank():
    ids = ["a", "b", "c", "d"]
    p = np.stack([unit(1, 0), unit(0.8, 0.6), unit(0.6, 0.8), unit(0, 1)])  # scores for q=(1,0): 1, .8, .6, 0
    examples = [ex("q", "a"), ex("q", "b"), ex("q", "c"), ex("q", "zzz")]
    q = np.stack([unit(1, 0)] * 4) * 3.0  # scale must not matter: cosine
    report = RefineReport()
    kept, dropped = filter_false_positives(examples, q, p, ids, top_k=2, report=report)
    assert [k.positive_id for k in kept] == ["a", "b"]          # ranks 1 and 2
    assert [(d.item.positive_id, d.reason, d.detail) for d in dropped] == [
        ("c", "positive_rank", "3"), ("zzz", "missing_positive", "zzz")]
    assert report.steps["filter_false_positives"]["positive_rank"] == 1
    assert len(filter_false_positives(examples[:3], q[:3], p, ids, top_k=3)[0]) == 3
    with pytest.raises(ValueError, match="3 rows for 4 examples"):
        filter_false_positives(examples, q[:3], p, ids)


# Query along x. Scores (cosine with the query) and the guard each candidate meets, margin 0.95:
#   pos  0.80  the positive; ceiling = 0.95 * 0.80 = 0.76
#   fn   0.79  > 0.76: likely a false negative -> skipped by the margin
#   dup  0.75  text is the positive's with one word changed -> skipped as a near-duplicate (needs texts)
#   vdup 0.74  cosine to the positive 0.994 >= 0.99 -> skipped as a near-duplicate by vector
#   n1   0.70, n2 0.50, n3 0.30: plain negatives, in this order
POS_TEXT = ("Jupiter is the largest planet in the solar system. It is a gas giant with a mass more than two and a "
            "half times that of all the other planets combined, and it has dozens of moons.")
MINE_IDS = ["n3", "pos", "n1", "fn", "dup", "vdup", "n2"]  # not in score order on purpose
MINE_VECS = np.stack([unit(0.3, 0, -0.954), unit(0.8, 0.6, 0), unit(0.7, 0, 0.714), unit(0.79, -0.6131, 0),
                      unit(0.75, 0.5, 0.433), unit(0.74, 0.67, 0.05), unit(0.5, 0, 0.866)])
MINE_TEXTS = {"pos": POS_TEXT, "dup": POS_TEXT.replace("dozens", "many"), "fn": "Jupiter facts.",
              "vdup": "Planets.", "n1": "Saturn has rings.", "n2": "Mars is red.", "n3": "Stars shine."}


def mine(examples, **kw):
    q = np.stack([unit(1, 0, 0)] * len(examples))
    return mine_hard_negatives(examples, q, MINE_VECS, MINE_IDS, **kw)


def test_mine_hard_negatives_skips_false_and_duplicate_negatives():
    # The vectors are what the table above says, or the expectations below would prove nothing.
    scores = MINE_VECS @ unit(1, 0, 0)
    assert dict(zip(MINE_IDS, scores.round(2))) == {"n3": 0.3, "pos": 0.8, "n1": 0.7, "fn": 0.79, "dup": 0.75,
                                                   "vdup": 0.74, "n2": 0.5}
    assert float(MINE_VECS[5] @ MINE_VECS[1]) >= 0.99 > float(MINE_VECS[4] @ MINE_VECS[1])
    assert jaccard(shingles(MINE_TEXTS["dup"], 3, "word"), shingles(POS_TEXT, 3, "word")) >= 0.8
    report = RefineReport()
    kept, dropped = mine([ex("largest planet", "pos")], n_negatives=2, passages=MINE_TEXTS, report=report)
    assert dropped == []
    assert kept[0].hard_negative_ids == ["n1", "n2"]
    assert report.steps["mine_hard_negatives"] == {"in": 1, "kept": 1, "skipped_above_margin": 1,
                                                   "skipped_duplicate_of_positive": 2}
    # without texts only the vector duplicate is caught; "dup" becomes the hardest negative
    assert mine([ex("largest planet", "pos")], n_negatives=2)[0][0].hard_negative_ids == ["dup", "n1"]
    # margin 1.0 lets the likely false negative through
    assert mine([ex("largest planet", "pos")], n_negatives=2, margin=1.0,
                passages=MINE_TEXTS)[0][0].hard_negative_ids == ["fn", "n1"]


def test_mine_hard_negatives_other_positives_and_too_few():
    # the same query also has n1 as a positive: n1 must not be a negative of the first example
    examples = [ex("Largest planet?", "pos"), ex("largest planet", "n1")]
    kept, _ = mine(examples, n_negatives=2, passages=MINE_TEXTS)
    assert kept[0].hard_negative_ids == ["n2", "n3"]
    # only n1, n2, n3 are safe: asking for 4 drops the example unless 3 are enough
    kept, dropped = mine([ex("largest planet", "pos")], n_negatives=4, passages=MINE_TEXTS)
    assert kept == [] and dropped[0].reason == "too_few_negatives" and dropped[0].detail == "3 of 4"
    kept, _ = mine([ex("largest planet", "pos")], n_negatives=4, min_negatives=3, passages=MINE_TEXTS)
    assert kept[0].hard_negative_ids == ["n1", "n2", "n3"]
    kept, dropped = mine([ex("largest planet", "gone")], n_negatives=1)
    assert dropped[0].reason == "missing_positive"


def test_mine_hard_negatives_window_fallback_matches_full_sort():
    """Many candidates above the margin push past the cheap top window; results equal a full sort."""
    rng = np.random.default_rng(5)
    n = 300
    vecs = rng.normal(size=(n, 8)).astype(np.float32)
    query = vecs[0] + 0.01 * rng.normal(size=8).astype(np.float32)  # passage 0 scores ~1
    ids = [f"p{i}" for i in range(n)]
    scores = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    positive = int(np.argsort(-scores)[60])  # 60 passages score above it: all skipped by the margin
    kept, _ = mine_hard_negatives([ex("q", ids[positive])], query[None], vecs, ids, n_negatives=3,
                                  margin=1.0, duplicate_cosine=1.1)
    ceiling = scores[positive]
    expected = [ids[i] for i in np.argsort(-scores) if i != positive and scores[i] <= ceiling][:3]
    assert kept[0].hard_negative_ids == expected


def test_report_summary_accumulates():
    report = RefineReport()
    for _ in range(2):
        dedupe_queries([ex("what is qdrant"), ex("What is Qdrant?")], report=report)
    assert report.as_dict() == {"dedupe_queries": {"in": 4, "kept": 2, "duplicate": 2}}
    assert report.summary() == "dedupe_queries: 4 -> 2 (duplicate=2)"


def test_pipeline_order_keeps_inputs_immutable():
    examples = [ex('Query: "what is qdrant written in"'), ex("what is qdrant written in?")]
    snapshot = [e.query for e in examples]
    cleaned, _ = drop_malformed(examples, PASSAGES)
    deduped, _ = dedupe_queries(cleaned)
    assert [e.query for e in deduped] == ["what is qdrant written in"]
    assert [e.query for e in examples] == snapshot
    assert list(itertools.chain(*(e.hard_negative_ids for e in deduped))) == []


def test_rows_of_selects_vector_rows_of_survivors():
    ids = ["a", "b"]
    p = np.stack([unit(1, 0), unit(0, 1)])
    examples = [ex("q one", "b"), ex("q two", "a"), ex("q three", "a")]
    q = np.stack([unit(1, 0), unit(1, 0), unit(0, 1)])
    kept, _ = filter_false_positives(examples, q, p, ids, top_k=1)
    assert rows_of(kept, examples) == [1]  # only "q two" ranks its positive first
    with pytest.raises(ValueError, match="re-embed"):
        rows_of([ex("q two", "a")], examples)
