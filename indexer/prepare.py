"""One file into chunk points, before any model: :class:`DocumentPreparer` hashes a file, skips it
when its stored chunks carry that hash, else extracts its text, cuts it into token chunks and
builds each chunk's point (deterministic id, payload per :mod:`indexer.store.payload`). It is a
small frozen value, so it ships as is to the parse tasks of a distributed run."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .chunking import chunk_text
from .extract import ExtractionError, extract, section_at
from .ids import file_hash, point_id
from .store import Point
from .store.payload import DEFAULT_CHUNK_CONTEXT, embedded_text, make_payload
from .walk import FileEntry

logger = logging.getLogger(__name__)


@dataclass
class ParsedFile:
    """One file after parsing: its chunks as points (dense vectors empty until embedded), or why not."""

    entry: FileEntry
    content_hash: str = ""
    points: list[Point] = field(default_factory=list)
    error: str | None = None
    unchanged: bool = False


@dataclass(frozen=True)
class DocumentPreparer:
    """Turns one file into chunk points (hash, extract, chunk, payloads): everything parsing needs,
    small enough to ship to workers."""

    tokenizer: Any
    chunk_tokens: int
    chunk_overlap: int
    max_bytes: int
    chunk_context: str = DEFAULT_CHUNK_CONTEXT  # before each chunk where it is embedded (embedded_text)

    def prepare(self, entry: FileEntry, stored_digest: str | None) -> ParsedFile:
        """Hash, extract and chunk ``entry``; ``unchanged`` when ``stored_digest`` is its hash."""
        parsed = ParsedFile(entry)
        try:
            parsed.content_hash = file_hash(entry.path)
            if parsed.content_hash == stored_digest:
                parsed.unchanged = True
                return parsed
            doc = extract(entry.path, max_bytes=self.max_bytes)
            chunks = chunk_text(doc.text, self.tokenizer, self.chunk_tokens, self.chunk_overlap)
            if not chunks:
                parsed.error = "no text to index"
            source = str(entry.path)
            parsed.points = [
                Point(id=point_id(source, i, parsed.content_hash), dense=[],
                      text=embedded_text(chunk.text, doc.title, self.chunk_context), payload=make_payload(
                    page_content=chunk.text, source=source, root=str(entry.root), chunk_index=i,
                    chunk_count=len(chunks), start=chunk.start, end=chunk.end, title=doc.title,
                    file_type=doc.file_type, mtime=entry.mtime, content_hash=parsed.content_hash,
                    section=section_at(doc.headings, chunk.start, chunk.end, doc.title),
                ))
                for i, chunk in enumerate(chunks)
            ]
        except ExtractionError as exc:
            parsed.error = exc.reason
        except OSError as exc:
            parsed.error = f"cannot read: {exc.strerror or exc}"
        except Exception as exc:  # a parser bug on one odd file must not stop the run
            logger.exception("failed to parse %s", entry.path)
            parsed.error = f"{type(exc).__name__}: {exc}"
        return parsed


#: The old name of :class:`DocumentPreparer`.
Chunker = DocumentPreparer
