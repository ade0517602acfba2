"""Refinement of synthetic (query, positive passage) training data, after Linq-Embed-Mistral / NV-Retriever.

Each step is a pure function over records returning ``(kept, dropped)``; ``dropped`` holds
:class:`Dropped` entries with a reason. Pass a :class:`RefineReport` to count them. A typical
order::

    report = RefineReport()
    passages, _ = drop_repetitive_passages(passages, report=report)
    examples, _ = drop_malformed(examples, passages, report=report)      # also drops lost positives
    examples, _ = dedupe_queries(examples, report=report)
    # the caller embeds queries (with the task instruction) and passages, then:
    kept, _ = filter_false_positives(examples, q_vecs, p_vecs, p_ids, top_k=20, report=report)
    q_vecs, examples = q_vecs[rows_of(kept, examples)], kept
    examples, _ = mine_hard_negatives(examples, q_vecs, p_vecs, p_ids, n_negatives=7,
                                      passages=passages, report=report)

Vectors: ``query_vecs`` has one row per example (in order); ``passage_vecs`` one row per id
in ``passage_ids``. Scores are cosine similarities (rows are L2-normalised here).
Near-duplicate text detection uses shingle Jaccard similarity with MinHash-LSH candidate
search, so it scales to large sets; candidates are always verified with the exact Jaccard.

The package: :mod:`.records` (Example, Dropped, RefineReport), :mod:`.text` (the text helpers),
:mod:`.minhash` (near-duplicate search), :mod:`.filters` (the model-free steps) and :mod:`.vectors`
(the false-positive filter and hard-negative mining).
"""

from .filters import dedupe_queries, drop_malformed, drop_repetitive_passages
from .minhash import near_duplicate_groups
from .records import Dropped, Example, RefineReport, rows_of
from .text import (
    copied_from,
    jaccard,
    letter_ratio,
    normalize_text,
    shingles,
    strip_artifacts,
    words,
)
from .vectors import filter_false_positives, mine_hard_negatives

__all__ = [
    "Dropped", "Example", "RefineReport", "copied_from", "dedupe_queries", "drop_malformed",
    "drop_repetitive_passages", "filter_false_positives", "jaccard", "letter_ratio", "mine_hard_negatives",
    "near_duplicate_groups", "normalize_text", "rows_of", "shingles", "strip_artifacts", "words",
]
