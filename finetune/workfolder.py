"""The fine-tuning work folder: every file a step reads or writes, by name, in one place.

    passages.jsonl   {"_id", "text"[, "page"]}: the collection's sampled chunks, or a docs folder's sections
    generated.jsonl  one query per (passage, task type): a local LLM's, or each section's heading
    screened.jsonl   after the model-free filters (malformed, copied, duplicate, repetitive)
    refined.jsonl    screened, then the false-positive filter: the training data
    mined.jsonl      refined, with hard negatives (false-negative guard)
    train.jsonl      the training split; heldout/ a BEIR folder of the held-out pages' screened queries
    report.json      counts of every step, and the evaluation before/after
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from indexer.jsonl import read_jsonl, write_jsonl

#: Each JSONL file and the `rag finetune` step that writes it.
WRITTEN_BY = {"passages": "generate", "generated": "generate", "screened": "refine", "refined": "refine",
              "mined": "mine", "train": "train"}


@dataclass(frozen=True)
class WorkFolder:
    """``WorkFolder(path).read("refined")`` -> the rows of ``path/refined.jsonl``, or an error naming
    the step to run first."""

    path: Path

    def file(self, name: str) -> Path:
        """The JSONL file ``name`` (one of :data:`WRITTEN_BY`)."""
        if name not in WRITTEN_BY:
            raise KeyError(f"{name!r} is not a work-folder file; known: {', '.join(WRITTEN_BY)}")
        return self.path / f"{name}.jsonl"

    @property
    def heldout(self) -> Path:
        return self.path / "heldout"

    @property
    def report_file(self) -> Path:
        return self.path / "report.json"

    def has(self, name: str) -> bool:
        return self.file(name).exists()

    def need(self, name: str) -> Path:
        path = self.file(name)
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `rag finetune {WRITTEN_BY[name]}` first.")
        return path

    def need_heldout(self) -> Path:
        if not (self.heldout / "queries.jsonl").exists():
            raise FileNotFoundError(f"{self.heldout} is missing: run `rag finetune train` (its split) first.")
        return self.heldout

    def read(self, name: str) -> list[dict]:
        return read_jsonl(self.need(name))

    def write(self, name: str, rows) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_jsonl(self.file(name), rows)

    def passages(self) -> dict[str, str]:
        """Passage id -> text."""
        return {r["_id"]: r["text"] for r in self.read("passages")}

    def pages(self) -> dict[str, str]:
        """Passage id -> the page it comes from (itself when passages carry no page)."""
        return {r["_id"]: r.get("page", r["_id"]) for r in self.read("passages")}

    def report(self) -> dict:
        return json.loads(self.report_file.read_text()) if self.report_file.exists() else {}

    def update_report(self, key: str, value) -> dict:
        report = self.report()
        report[key] = value
        self.path.mkdir(parents=True, exist_ok=True)
        self.report_file.write_text(json.dumps(report, indent=2))
        return report
