"""PDF: the text layer of every page, via pypdf (no OCR)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from .base import ExtractionError
from .text import _normalize_newlines, first_line_title

logger = logging.getLogger(__name__)


def _extract_pdf(path: Path, data: bytes) -> tuple[str, str]:
    from pypdf import PasswordType, PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                result = reader.decrypt("")
            except Exception as exc:  # noqa: BLE001 - e.g. DependencyError for AES
                raise ExtractionError(
                    path, f"encrypted PDF that could not be opened ({exc}); decrypt it first"
                ) from None
            if result == PasswordType.NOT_DECRYPTED:
                raise ExtractionError(
                    path, "encrypted PDF (needs a password); save an unencrypted copy to index it"
                )
        pages = reader.pages
        n_pages = len(pages)
    except ExtractionError:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on corrupt input
        raise ExtractionError(
            path, f"corrupt or unreadable PDF ({type(exc).__name__}: {exc})"
        ) from exc
    if n_pages == 0:
        raise ExtractionError(path, "PDF has no pages")

    texts: list[str] = []
    failed = 0
    for number in range(n_pages):
        try:
            page_text = pages[number].extract_text() or ""
        except Exception as exc:  # noqa: BLE001
            failed += 1
            logger.warning("%s: page %d: text extraction failed (%s)", path, number + 1, exc)
            continue
        page_text = _normalize_newlines(page_text).strip()
        if page_text:
            texts.append(page_text)
    if failed == n_pages:
        raise ExtractionError(path, f"corrupt PDF: text extraction failed on all {n_pages} pages")

    text = "\n\n".join(texts)
    return text, _pdf_title(reader) or first_line_title(text)


def _pdf_title(reader) -> str:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # noqa: BLE001 - broken metadata must not lose the text
        return ""
    return title if isinstance(title, str) else ""
