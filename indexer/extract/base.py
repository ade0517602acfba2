"""The result type and the error shared by every format parser."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .outline import Heading


@dataclass(frozen=True, slots=True)
class Extracted:
    """The result of extracting one file: its text, title, type and (reST, Markdown, HTML, DOCX) the
    headings found in the text (:mod:`indexer.extract.outline`)."""

    text: str
    title: str
    file_type: str
    headings: tuple[Heading, ...] = ()


class ExtractionError(Exception):
    """A file could not be turned into text; ``reason`` says why in plain words."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep picklable (multiprocessing) despite the 2-arg __init__
        return (type(self), (self.path, self.reason))
