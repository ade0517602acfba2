"""Training records, the reasons a step drops one, and the report that counts them."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Example:
    """One training record: a query, the id of its positive passage, its task, hard negatives."""

    query: str
    positive_id: str
    task: str
    hard_negative_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Dropped:
    """A record a step removed: the example (or passage id), the reason, and a detail."""

    item: Any
    reason: str
    detail: str = ""


@dataclass
class RefineReport:
    """Counts per step: ``{step: {"in": n, "kept": n, <reason>: n, ...}}``."""

    steps: dict[str, dict[str, int]] = field(default_factory=dict)

    def record(self, step: str, n_in: int, n_kept: int, dropped: Iterable[Dropped], **extra: int) -> None:
        """Add the counts of one run of ``step`` (repeated runs accumulate)."""
        counts = self.steps.setdefault(step, {"in": 0, "kept": 0})
        counts["in"] += n_in
        counts["kept"] += n_kept
        for reason, n in Counter(d.reason for d in dropped).items():
            counts[reason] = counts.get(reason, 0) + n
        for key, n in extra.items():
            counts[key] = counts.get(key, 0) + n

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {step: dict(c) for step, c in self.steps.items()}

    def summary(self) -> str:
        """One line per step: ``dedupe_queries: 1000 -> 950 (near_duplicate=50)``."""
        lines = []
        for step, c in self.steps.items():
            rest = ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("in", "kept"))
            lines.append(f"{step}: {c['in']} -> {c['kept']}" + (f" ({rest})" if rest else ""))
        return "\n".join(lines)


def rows_of(subset: Sequence[Example], examples: Sequence[Example]) -> list[int]:
    """Positions in ``examples`` of the records in ``subset`` (the same objects, as steps that do
    not rewrite a record return them), to select the matching rows of a vector matrix."""
    position = {id(e): i for i, e in enumerate(examples)}
    try:
        return [position[id(e)] for e in subset]
    except KeyError:
        raise ValueError("rows_of: subset holds records that are not in examples (a step that rewrites "
                         "records returns new objects); re-embed those queries instead.") from None


def _finish(step: str, n_in: int, kept: list, dropped: list[Dropped], report: RefineReport | None,
            **extra: int) -> tuple[list, list[Dropped]]:
    if report is not None:
        report.record(step, n_in, len(kept), dropped, **extra)
    logger.info("%s: kept %d of %d (%s)", step, len(kept), n_in,
                ", ".join(f"{r}={n}" for r, n in Counter(d.reason for d in dropped).items()) or "none dropped")
    return kept, dropped
