"""Real document files for tests: PDF (fpdf2), DOCX (python-docx), HTML, Markdown, and bad files."""

from __future__ import annotations

import os
from pathlib import Path

DOCS = {
    "qdrant.md": "# Vector databases\n\nQdrant stores embedding vectors and searches them with HNSW graphs.\n\n"
                 "Payload filters narrow a search to matching points.\n",
    "bread.txt": "Baking bread\n\nMix flour, water, salt and yeast. Knead the dough and let it rise "
                 "overnight before baking it in a hot oven.\n",
    "planets.html": "<html><head><title>The outer planets</title><script>var x = 'ignored';</script>"
                    "<style>p {color: red}</style></head><body><h1>The outer planets</h1>"
                    "<p>Jupiter and Saturn are gas giants; Uranus and Neptune are ice giants.</p></body></html>",
}
PDF_TEXT = "Quarterly report. The orchestra rehearsed the violin concerto for the spring festival."
DOCX_TEXT = "Mountain hiking guide: bring water, a map and sturdy boots for the alpine trail."


def make_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    """A real PDF with a text layer, one page per string."""
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    path.write_bytes(bytes(pdf.output()))
    return path


def make_docx(path: Path, text: str = DOCX_TEXT) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Hiking", level=1)
    document.add_paragraph(text)
    document.save(str(path))
    return path


def make_corpus(folder: Path, bad: bool = True) -> Path:
    """Good files of every main type, and (``bad``) a corrupt PDF, a binary .txt and a FIFO."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    make_pdf(folder / "music.pdf", [PDF_TEXT])
    make_docx(folder / "hiking.docx")
    if bad:
        (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(2000))
        (folder / "blob.txt").write_bytes(b"\x00\x01\x02" * 1000)
        (folder / "huge.md").write_text("# big\n\n" + "lorem ipsum " * 20_000)
    return folder
