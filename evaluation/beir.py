"""Read and write retrieval test sets in the BEIR folder layout.

Layout (the one BEIR and MTEB datasets use)::

    folder/corpus.jsonl        {"_id": "d1", "title": "...", "text": "..."}   (title optional)
    folder/queries.jsonl       {"_id": "q1", "text": "..."}
    folder/qrels/test.tsv      query-id <TAB> corpus-id <TAB> score   (header line optional)

Also accepted for the relevance judgements, tried in this order for ``split``:

- ``qrels/{split}.tsv`` (3 columns; 4 whitespace-separated columns are read as TREC
  ``qid iter docid rel``),
- ``qrels/{split}.jsonl`` (``{"query-id", "corpus-id", "score"}`` per line),
- ``qrels.jsonl`` at the top (same fields, plus an optional ``"split"`` field; lines with
  another split are skipped).

``corpus.jsonl.gz`` / ``queries.jsonl.gz`` are read too. Only queries that have judgements
are kept, as BEIR does.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.jsonl import JsonlError, iter_jsonl, write_jsonl

logger = logging.getLogger(__name__)

LAYOUT = (
    "expected a BEIR folder: corpus.jsonl ({\"_id\", \"title\", \"text\"} per line), "
    "queries.jsonl ({\"_id\", \"text\"} per line) and qrels/<split>.tsv "
    "(query-id, corpus-id, score) or qrels.jsonl"
)
_QID_KEYS = ("query-id", "query_id", "qid")
_DOCID_KEYS = ("corpus-id", "corpus_id", "doc_id", "docid", "doc-id")


class BeirFormatError(ValueError):
    """A BEIR folder is missing a file or has a malformed line; the message names it."""


@dataclass
class BeirDataset:
    """A retrieval test set: documents, queries and graded relevance judgements.

    ``corpus``: doc id -> (title, text); ``queries``: query id -> text (only queries with
    judgements); ``qrels``: query id -> {doc id: relevance grade}.
    """

    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        unjudged = [q for q in self.queries if q not in self.qrels]
        if unjudged:
            self.queries = {q: t for q, t in self.queries.items() if q in self.qrels}
            logger.debug("%s: dropped %d queries without judgements", self.name or "dataset", len(unjudged))
        unknown = [q for q in self.qrels if q not in self.queries]
        if unknown:
            logger.warning("%s: %d judged query ids are not in the queries (e.g. %r); ignoring them",
                           self.name or "dataset", len(unknown), unknown[0])
            self.qrels = {q: r for q, r in self.qrels.items() if q in self.queries}
        missing_docs = {d for rels in self.qrels.values() for d in rels if d not in self.corpus}
        if missing_docs:
            logger.warning("%s: %d judged doc ids are not in the corpus (e.g. %r); they count as "
                           "relevant but can never be retrieved", self.name or "dataset",
                           len(missing_docs), sorted(missing_docs)[0])

    def document(self, doc_id: str, sep: str = " ") -> str:
        """The text embedded/indexed for ``doc_id``: ``title + sep + text`` (just text without a title)."""
        return document_text(*self.corpus[doc_id], sep=sep)

    def __repr__(self) -> str:
        return (f"BeirDataset({self.name or 'unnamed'}: {len(self.corpus)} docs, {len(self.queries)} queries, "
                f"{sum(len(r) for r in self.qrels.values())} judgements)")


def document_text(title: str, text: str, sep: str = " ") -> str:
    """``title + sep + text``, stripped; BEIR and MTEB join with a space."""
    return f"{title}{sep}{text}".strip() if title else text.strip()


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Load the BEIR folder ``folder`` with the judgements of ``split``.

    Raises:
        FileNotFoundError: a file is missing (the message names it and the expected layout).
        BeirFormatError: a line cannot be parsed (the message names file and line).
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"BEIR folder {root} does not exist; {LAYOUT}.")
    corpus = {doc_id: (str(row.get("title") or ""), str(row.get("text") or ""))
              for doc_id, row in _read_records(_find(root, "corpus.jsonl"))}
    queries = {qid: str(row.get("text") or "") for qid, row in _read_records(_find(root, "queries.jsonl"))}
    qrels = read_qrels(root, split)
    ds = BeirDataset(corpus, queries, qrels, name=f"{root.name}/{split}")
    logger.info("loaded %r", ds)
    return ds


def read_qrels(root: Path, split: str = "test") -> dict[str, dict[str, int]]:
    """The judgements of ``split`` from ``root`` (see the module docstring for the file names)."""
    tsv, jsonl, top = root / "qrels" / f"{split}.tsv", root / "qrels" / f"{split}.jsonl", root / "qrels.jsonl"
    if tsv.is_file():
        return _read_qrels_tsv(tsv)
    if jsonl.is_file():
        return _read_qrels_jsonl(jsonl, None)
    if top.is_file():
        qrels = _read_qrels_jsonl(top, split)
        if not qrels:
            raise BeirFormatError(f"{top} has no judgements for split {split!r}; pick a split present "
                                  "in its \"split\" field.")
        return qrels
    splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
    hint = f" Available splits: {', '.join(splits)}." if splits else ""
    raise FileNotFoundError(f"No judgements for split {split!r} in {root}: looked for {tsv}, {jsonl} and "
                            f"{top}.{hint} {LAYOUT}.")


def write_beir(folder: str | Path, dataset: BeirDataset, split: str = "test") -> Path:
    """Write ``dataset`` as a BEIR folder (corpus.jsonl, queries.jsonl, qrels/{split}.tsv); returns it.

    Existing files are overwritten. ``load_beir(folder, split)`` reads back an equal dataset.
    """
    root = Path(folder).expanduser()
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "corpus.jsonl",
                ({"_id": doc_id, "title": title, "text": text} for doc_id, (title, text) in dataset.corpus.items()))
    write_jsonl(root / "queries.jsonl", ({"_id": qid, "text": text} for qid, text in dataset.queries.items()))
    with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["query-id", "corpus-id", "score"])
        for qid, rels in dataset.qrels.items():
            for doc_id, score in rels.items():
                writer.writerow([qid, doc_id, int(score)])
    logger.info("wrote %r to %s", dataset, root)
    return root


# -- helpers -----------------------------------------------------------------------------------
def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{root / name} is missing; {LAYOUT}.")


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        yield from iter_jsonl(path)
    except JsonlError as exc:
        raise BeirFormatError(f"{exc}; {LAYOUT}.") from None


def _read_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, row in _read_jsonl(path):
        if "_id" not in row:
            raise BeirFormatError(f"{path}:{lineno} has no \"_id\" field (keys: {sorted(row)}); {LAYOUT}.")
        yield str(row["_id"]), row


def _grade(value: Any, where: str) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise BeirFormatError(f"{where}: relevance score {value!r} is not a number; {LAYOUT}.") from None


def _read_qrels_tsv(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            cols = line.rstrip("\r\n").split("\t")
            if len(cols) == 1:
                cols = line.split()
            if not cols or cols == [""]:
                continue
            if len(cols) == 4:  # TREC: qid iter docid rel
                cols = [cols[0], cols[2], cols[3]]
            if len(cols) != 3:
                raise BeirFormatError(f"{path}:{lineno} has {len(cols)} columns, expected 3 "
                                      "(query-id, corpus-id, score) or 4 (TREC qrels)")
            qid, doc_id, score = cols
            if lineno == 1 and not _is_number(score):
                continue  # header
            qrels.setdefault(qid, {})[doc_id] = _grade(score, f"{path}:{lineno}")
    return qrels


def _read_qrels_jsonl(path: Path, split: str | None) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, row in _read_jsonl(path):
        if split is not None and "split" in row and row["split"] != split:
            continue
        qid = next((row[k] for k in _QID_KEYS if k in row), None)
        doc_id = next((row[k] for k in _DOCID_KEYS if k in row), None)
        if qid is None or doc_id is None:
            raise BeirFormatError(f"{path}:{lineno} needs \"query-id\" and \"corpus-id\" fields "
                                  f"(keys: {sorted(row)}); {LAYOUT}.")
        qrels.setdefault(str(qid), {})[str(doc_id)] = _grade(row.get("score", 1), f"{path}:{lineno}")
    return qrels


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
