"""indexer.extract on real files made in tmp_path (PDF via fpdf2, DOCX via python-docx)."""

from __future__ import annotations

import io
import os
import pickle
import random
from pathlib import Path

import pytest

from indexer.extract import (
    SUPPORTED_SUFFIXES,
    Extracted,
    ExtractionError,
    decode_bytes,
    extract,
    looks_binary,
)

from .docs import make_pdf

# --------------------------------------------------------------------------- builders


def make_image_only_pdf(path: Path) -> Path:
    """A PDF whose page has only vector graphics: what a scan looks like to a text extractor."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")
    pdf.line(10, 10, 150, 150)
    path.write_bytes(bytes(pdf.output()))
    return path


def make_docx(path: Path, title: str | None = None) -> Path:
    import docx

    document = docx.Document()
    if title is not None:
        document.core_properties.title = title
    document.add_heading("Quarterly Report", level=1)
    document.add_paragraph("Revenue grew in every region.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Region"
    table.cell(0, 1).text = "Growth"
    table.cell(1, 0).text = "EMEA"
    table.cell(1, 1).text = "12%"
    document.add_paragraph("Outlook remains positive.")
    document.save(str(path))
    return path


# --------------------------------------------------------------------------- plain text


def test_utf8_text_title_is_first_non_empty_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("\n\n  Shopping list  \nmilk\r\neggs\n", encoding="utf-8")
    result = extract(path)
    assert result == Extracted(
        text="  Shopping list  \nmilk\neggs", title="Shopping list", file_type="txt"
    )


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "bom.md"
    path.write_bytes(b"\xef\xbb\xbf# Caf\xc3\xa9 notes\n\nbody\n")
    result = extract(path)
    assert result.text.startswith("# Café notes")
    assert result.title == "Café notes"


def test_latin1_text_is_decoded_not_crashing(tmp_path: Path) -> None:
    path = tmp_path / "legacy.txt"
    sentence = "Le garçon a mangé une crème brûlée à Noël, déjà très satisfait."
    path.write_bytes(sentence.encode("latin-1"))
    result = extract(path)
    assert result.text == sentence


def test_cyrillic_single_byte_text_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "ru.txt"
    sentence = "Привет, мир! Это проверка определения кодировки текста."
    path.write_bytes(sentence.encode("cp1251"))
    assert extract(path).text == sentence


def test_decode_bytes_never_fails_on_arbitrary_bytes() -> None:
    data = bytes(random.Random(0).randrange(1, 256) for _ in range(5000))
    text = decode_bytes(data)
    assert isinstance(text, str) and len(text) > 0


def test_utf16_with_bom_is_text_not_binary(tmp_path: Path) -> None:
    path = tmp_path / "wide.txt"
    path.write_bytes("Hello wide world".encode("utf-16"))
    assert not looks_binary(path.read_bytes())
    assert extract(path).text == "Hello wide world"


def test_markdown_title_prefers_front_matter_then_first_heading(tmp_path: Path) -> None:
    fm = tmp_path / "fm.md"
    fm.write_text('---\ntitle: "Front Title"\ntags: [a]\n---\n# Heading\n\ntext\n')
    assert extract(fm).title == "Front Title"
    setext = tmp_path / "setext.md"
    setext.write_text("intro line\n\nReal Title\n==========\n\n## Later ##\n")
    assert extract(setext).title == "Real Title"


def test_rst_title_from_adorned_section(tmp_path: Path) -> None:
    path = tmp_path / "doc.rst"
    path.write_text(".. comment\n\n=========\nUser Guide\n=========\n\nIntro\n-----\n\nText.\n")
    result = extract(path)
    assert result.title == "User Guide"
    assert result.file_type == "rst"


def test_source_code_keeps_text_and_uses_file_name_as_title(tmp_path: Path) -> None:
    path = tmp_path / "tool.py"
    code = "# not a heading\nimport os\n\n\ndef main():\n    return os.getcwd()\n"
    path.write_text(code)
    result = extract(path)
    assert result.text == code.rstrip("\n")
    assert result.title == "tool.py"
    assert result.file_type == "py"
    assert {".py", ".js", ".ts", ".go", ".rs", ".yaml", ".sql"} <= SUPPORTED_SUFFIXES


def test_csv_rows_become_lines(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text('name,city\nAda,"London, UK"\n\nLinus,Helsinki\n')
    result = extract(path)
    assert result.text.split("\n") == ["name | city", "Ada | London, UK", "Linus | Helsinki"]
    assert result.title == "people.csv"


def test_json_is_pretty_printed_with_title_key(tmp_path: Path) -> None:
    path = tmp_path / "item.json"
    path.write_text('{"title": "Widget", "tags": ["a", "ü"], "n": 1}')
    result = extract(path)
    assert result.title == "Widget"
    assert '  "tags": [\n    "a",\n    "ü"\n  ]' in result.text


def test_invalid_json_falls_back_to_raw_text(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json at all")
    result = extract(path)
    assert result.text == "{not json at all"
    assert result.title == "broken.json"


# --------------------------------------------------------------------------- HTML


HTML = """<!doctype html>
<html><head><title>Vector Search 101</title>
<style>body { color: red; }</style>
<script>var secret = "do not index";</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/about">About</a></nav>
<h1>Intro</h1>
<p>Embeddings map text
   to vectors.</p>
<div>Similar texts<br>land close.</div>
<ul><li>first item</li><li>second item</li></ul>
<script>trackUser();</script>
<!-- a comment -->
</body></html>"""


def test_html_drops_scripts_styles_nav_and_keeps_blocks(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(HTML)
    result = extract(path)
    assert result.title == "Vector Search 101"
    assert result.file_type == "html"
    for junk in ("secret", "trackUser", "color: red", "Home", "About", "a comment"):
        assert junk not in result.text
    assert result.text.split("\n\n") == [
        "Intro",
        "Embeddings map text to vectors.",
        "Similar texts\nland close.",
        "first item",
        "second item",
    ]


def test_html_title_falls_back_to_first_h1(tmp_path: Path) -> None:
    path = tmp_path / "page.htm"
    path.write_text("<body><h2>Sub</h2><h1>Main <b>Title</b></h1><p>x</p></body>")
    result = extract(path)
    assert result.title == "Main Title"
    assert result.file_type == "html"


def test_html_in_legacy_encoding_uses_meta_charset(tmp_path: Path) -> None:
    path = tmp_path / "legacy.html"
    html = (
        '<html><head><meta charset="windows-1252"><title>Résumé</title></head>'
        "<body><p>Çà et là</p></body></html>"
    )
    path.write_bytes(html.encode("cp1252"))
    result = extract(path)
    assert result.title == "Résumé"
    assert result.text == "Çà et là"


# --------------------------------------------------------------------------- PDF


def test_pdf_with_text_layer(tmp_path: Path) -> None:
    path = make_pdf(
        tmp_path / "paper.pdf",
        ["First page talks about vectors.", "Second page mentions Qdrant."],
        title="A Study of Vectors",
    )
    result = extract(path)
    assert result.file_type == "pdf"
    assert result.title == "A Study of Vectors"
    assert result.text == "First page talks about vectors.\n\nSecond page mentions Qdrant."


def test_pdf_without_metadata_title_uses_first_line(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "untitled.pdf", ["Opening line here\nand more"])
    assert extract(path).title == "Opening line here"


def test_pdf_without_text_layer_says_ocr_unsupported(tmp_path: Path) -> None:
    path = make_image_only_pdf(tmp_path / "scan.pdf")
    with pytest.raises(ExtractionError, match="no text layer; OCR is not supported"):
        extract(path)


def test_corrupt_pdf_raises_extraction_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.pdf"
    path.write_bytes(bytes(random.Random(1).randrange(256) for _ in range(4096)))
    with pytest.raises(ExtractionError) as info:
        extract(path)
    assert "corrupt" in info.value.reason
    assert info.value.path == path


def test_truncated_pdf_raises_extraction_error(tmp_path: Path) -> None:
    good = make_pdf(tmp_path / "good.pdf", ["Some text that will be cut off."])
    path = tmp_path / "truncated.pdf"
    path.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ExtractionError):
        extract(path)


def test_password_protected_pdf_raises_extraction_error(tmp_path: Path) -> None:
    import pypdf

    plain = make_pdf(tmp_path / "plain.pdf", ["Top secret plans."])
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(plain))
    writer.encrypt("hunter2", algorithm="RC4-128")
    path = tmp_path / "locked.pdf"
    with path.open("wb") as fh:
        writer.write(fh)
    with pytest.raises(ExtractionError, match="encrypted"):
        extract(path)


def test_pdf_encrypted_with_empty_user_password_is_read(tmp_path: Path) -> None:
    import pypdf

    plain = make_pdf(tmp_path / "plain.pdf", ["Readable despite encryption."])
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(plain))
    writer.encrypt("", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    path = tmp_path / "owner-only.pdf"
    path.write_bytes(buffer.getvalue())
    assert extract(path).text == "Readable despite encryption."


# --------------------------------------------------------------------------- DOCX


def test_docx_paragraphs_and_tables_in_order(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "report.docx", title="Q3 Report")
    result = extract(path)
    assert result.title == "Q3 Report"
    assert result.file_type == "docx"
    assert result.text.split("\n\n") == [
        "Quarterly Report",
        "Revenue grew in every region.",
        "Region | Growth\nEMEA | 12%",
        "Outlook remains positive.",
    ]


def test_docx_headings_are_its_heading_styles(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Guide", level=0)  # the "Title" style: a title, not a section
    document.add_heading("Install", level=1)
    document.add_paragraph("Run the installer.")
    document.add_heading("On Linux", level=2)
    document.add_paragraph("Use the package.")
    document.save(str(tmp_path / "guide.docx"))
    got = extract(tmp_path / "guide.docx")
    assert _heading_lines(got) == [(1, "Install", "Install"), (2, "On Linux", "On Linux")]


def test_docx_title_falls_back_to_first_heading(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "untitled.docx", title="")
    assert extract(path).title == "Quarterly Report"


def test_corrupt_docx_raises_extraction_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04" + bytes(random.Random(2).randrange(256) for _ in range(2000)))
    with pytest.raises(ExtractionError, match="corrupt or not a DOCX"):
        extract(path)


# --------------------------------------------------------------------------- failures


def test_binary_file_with_text_suffix_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(ExtractionError, match="binary"):
        extract(path)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.md"
    path.write_bytes(b"")
    with pytest.raises(ExtractionError, match="empty"):
        extract(path)


def test_whitespace_only_file_has_no_text(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text(" \n\t\n  ")
    with pytest.raises(ExtractionError, match="no extractable text"):
        extract(path)


def test_file_over_max_bytes_is_rejected_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    path.write_text("x" * 5000)
    with pytest.raises(ExtractionError) as info:
        extract(path, max_bytes=1000)
    assert "5,000 bytes" in info.value.reason and "1,000" in info.value.reason
    assert extract(path, max_bytes=5000).text == "x" * 5000


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "archive.zip"
    path.write_bytes(b"PK")
    with pytest.raises(ExtractionError, match=r"unsupported file type '\.zip'"):
        extract(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ExtractionError, match="not found"):
        extract(tmp_path / "gone.txt")


def test_directory_with_text_suffix_is_not_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "folder.txt"
    path.mkdir()
    with pytest.raises(ExtractionError, match="not a regular file"):
        extract(path)


def test_chmod_000_file_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("classified")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip(
                "running as root: chmod 000 does not stop reads (see the monkeypatched test)"
            )
        with pytest.raises(ExtractionError, match="permission denied"):
            extract(path)
    finally:
        path.chmod(0o644)


def test_permission_error_on_open_becomes_extraction_error(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "locked.txt"
    path.write_text("classified")
    real_open = Path.open

    def deny(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(ExtractionError, match="permission denied"):
        extract(path)


def test_extraction_error_is_readable_and_picklable(tmp_path: Path) -> None:
    error = ExtractionError(tmp_path / "a.pdf", "corrupt PDF")
    assert str(error) == f"{tmp_path / 'a.pdf'}: corrupt PDF"
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.path, clone.reason) == (error.path, error.reason)
    assert isinstance(error, Exception)


RST_PAGE = """\
.. _tut-structures:

***************
Data Structures
***************

More on Lists
=============

.. method:: list.append(x)
   :noindex:

   Add an item to the end of the list.  Equivalent to ``a[len(a):] = [x]``, see :func:`len` [#]_.

.. index:: single: lists

.. note::

   Read :ref:`the tutorial <tut-intro>` and *this* first.

An example::

    >>> matrix = [
    ...     [1, 2, 3],
    ... ]
    >>> print(*matrix)   # ``kept`` as typed: :func:`not a role here`

.. code-block:: python
   :linenos:

   def f(*args, **kwargs):
       return `x`

After the code.
"""


def test_rst_is_indexed_as_the_text_a_reader_sees_with_code_kept(tmp_path: Path) -> None:
    path = tmp_path / "structures.rst"
    path.write_text(RST_PAGE)
    got = extract(path)
    assert got.title == "Data Structures"
    for markup in (".. _tut-structures:", "*****", "=====", ".. method::", ":noindex:", ".. index::",
                   ":func:`len`", "``a[len(a):] = [x]``", "[#]_", ":ref:", "::\n", ":linenos:", ".. code-block"):
        assert markup not in got.text, markup
    assert "list.append(x)\n" in got.text and "Equivalent to a[len(a):] = [x], see len." in got.text
    assert "Note:" in got.text and "Read the tutorial and this first." in got.text
    assert "An example:\n" in got.text
    # literal blocks are kept verbatim, role-like text included
    assert "    >>> matrix = [\n    ...     [1, 2, 3],\n    ... ]\n" in got.text
    assert "# ``kept`` as typed: :func:`not a role here`" in got.text
    assert "   def f(*args, **kwargs):\n       return `x`" in got.text
    assert got.text.rstrip().endswith("After the code.")


def test_rst_inline_literals_keep_their_backslashes_and_escapes_resolve() -> None:
    from indexer.extract.rst import clean_rst_inline

    # reST applies no escapes inside inline literals: a regex or a newline stays as written
    assert clean_rst_inline(r"a newline character (``\n``) is left; ``\d+`` matches digits") == (
        r"a newline character (\n) is left; \d+ matches digits")
    # elsewhere a backslash escapes: \* is a star (no emphasis), \\ a backslash, "\ " nothing
    assert clean_rst_inline(r"``int``\ s, \*not emphasis\*, *emphasis*, C:\\temp") == (
        r"ints, *not emphasis*, emphasis, C:\temp")
    assert clean_rst_inline(r"``*args`` and ``**kwargs``, :samp:`a\\b`") == r"*args and **kwargs, a\b"


def _heading_lines(doc) -> list[tuple[int, str, str]]:
    """(level, title, the text's line at the heading's offset) of each heading."""
    return [(h.level, h.title, doc.text[h.offset:].split("\n", 1)[0]) for h in doc.headings]


def test_rst_headings_are_found_with_docutils_levels(tmp_path: Path) -> None:
    path = tmp_path / "structures.rst"
    path.write_text(RST_PAGE + "\nThe :keyword:`!del` statement\n=============================\n\nDeleting.\n")
    got = extract(path)
    assert _heading_lines(got) == [(1, "Data Structures", "Data Structures"), (2, "More on Lists", "More on Lists"),
                                   (2, "The del statement", "The del statement")]
    # a literal block's "===" under a line of code is not a heading
    path.write_text("Title\n=====\n\nExample::\n\n    x = 1\n    =====\n\nAfter.\n")
    assert [h.title for h in extract(path).headings] == ["Title"]


def test_markdown_headings_skip_fenced_code_and_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text("---\ntitle: Notes\n---\n# Setup\n\nText.\n\n```sh\n# not a heading\n```\n\n"
                    "Usage\n-----\n\n### Flags ###\n\nMore.\n")
    assert _heading_lines(extract(path)) == [(1, "Setup", "# Setup"), (2, "Usage", "Usage"),
                                             (3, "Flags", "### Flags ###")]


def test_html_headings_are_the_h_tags(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text('<html><head><title>Lists — Docs</title></head><body><h1>Lists<a class="headerlink" '
                    'href="#l">¶</a></h1><p>Intro.</p><h2>Sorting <code>list</code>s</h2><p>Use sort.</p>'
                    '<h3>Keys</h3><p>key=len.</p></body></html>')
    got = extract(path)
    assert _heading_lines(got) == [(1, "Lists", "Lists"), (2, "Sorting lists", "Sorting lists"), (3, "Keys", "Keys")]


def test_a_chunk_gets_the_heading_path_it_is_in() -> None:
    from indexer.extract import section_at
    from indexer.extract.outline import locate

    text = "Lists\n\nIntro.\n\nSorting\n\nUse sort.\n\nKeys\n\nkey=len.\n\nSets\n\nUnique."
    heads = locate(text, [(1, "Lists", "Lists"), (2, "Sorting", "Sorting"), (3, "Keys", "Keys"), (2, "Sets", "Sets")])
    keys, sets = text.index("key=len"), text.index("Sets")
    assert section_at(heads, keys, keys + 7) == "Lists › Sorting › Keys"
    assert section_at(heads, keys, keys + 7, title="Lists — Python docs") == "Sorting › Keys"  # the title's own
    assert section_at(heads, sets - 12, sets + 20) == "Lists › Sets"      # a heading early in the chunk wins
    intro = text.index("Intro")  # Sorting and Keys both begin in the chunk's first half: the first one
    assert section_at(heads, intro, len(text)) == "Lists › Sorting"
    assert section_at(heads, 0, 3) == "Lists" and section_at((), 0, 10) == ""


def test_html_drops_sphinx_permalinks_and_sidebars(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text('<html><body><div class="related" role="navigation"><a href="#">next</a></div>'
                    '<h1>Lists<a class="headerlink" href="#lists" title="Permalink">¶</a></h1>'
                    '<p>Lists are mutable.</p><div class="sphinxsidebar"><h3>Quick search</h3></div>'
                    '</body></html>')
    text = extract(path).text
    assert text == "Lists\n\nLists are mutable."


def test_sphinx_rst_sources_are_read_as_rst(tmp_path):
    path = tmp_path / "intro.rst.txt"      # what Sphinx publishes under _sources/
    path.write_text(".. _intro:\n\n*****\nIntro\n*****\n\nSee :func:`len`.\n")
    doc = extract(path)
    assert (doc.text, doc.title, doc.file_type) == ("Intro\n\nSee len.", "Intro", "rst")
