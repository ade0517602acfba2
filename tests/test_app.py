"""The Streamlit page (driven with AppTest over a real index) and the SearchService behind it."""

from __future__ import annotations

import re
import shutil
import socket
from datetime import date, timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.service import (
    ModelMismatch,
    NoIndexYet,
    PreviewRefused,
    SearchService,
    StoreUnavailable,
    highlight,
    context_around,
)
from app.services import build_embedder, index_settings
from app.settings import Settings
from indexer.collection import collection_meta
from indexer.pipeline import Indexer
from indexer.search import SearchResult
from indexer.store import DEFAULT_MODE, MODES, EdgeStore, score_kind

from .docs import make_corpus

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "page.py")
CHUNK_TOKENS = "64"


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """md/txt/html/pdf/docx files plus a sub-folder ``notes/`` with one more .md file."""
    folder = make_corpus(tmp_path_factory.mktemp("app") / "corpus", bad=False)
    (folder / "notes").mkdir()
    (folder / "notes" / "garden.md").write_text("# Garden\n\nTomatoes need full sun and regular watering.\n")
    return folder


def _build_index(data_dir: Path, corpus: Path, embedder) -> Path:
    store = EdgeStore(data_dir)
    try:
        settings = Settings(data_dir=data_dir, chunk_tokens=int(CHUNK_TOKENS))
        report = Indexer(embedder, store, "documents", index_settings(settings)).run([corpus], progress=False)
        assert report.indexed == 6 and not report.failed
    finally:
        store.close()
    return data_dir


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, corpus, _default_embedder) -> Path:
    """An embedded store holding the corpus, built with the default model."""
    return _build_index(tmp_path_factory.mktemp("store-default"), corpus, _default_embedder)


@pytest.fixture(scope="module")
def tiny_index_dir(tmp_path_factory, corpus, tiny_mistral_dir) -> Path:
    """The corpus indexed with the tiny (instructed, decoder) Mistral, loaded as the page loads it."""
    embedder = build_embedder(Settings(model=str(tiny_mistral_dir)))
    return _build_index(tmp_path_factory.mktemp("store-tiny"), corpus, embedder)


def page(monkeypatch, data_dir: Path, **env: str) -> AppTest:
    """Run the page with RAG_DATA_DIR=data_dir (plus ``env``) and no other RAG_* settings."""
    for name in ("RAG_MODEL", "RAG_QDRANT_URL", "RAG_COLLECTION", "RAG_TASK", "RAG_INSTRUCTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAG_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RAG_CHUNK_TOKENS", CHUNK_TOKENS)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def search(at: AppTest, query: str) -> AppTest:
    at.text_input(key="query").input(query).run()
    assert not at.exception, at.exception
    return at


def hit_sources(at: AppTest) -> list[str]:
    """Source paths of the rendered hits, in rank order."""
    return [re.search(r'class="hit-source">([^<]+?) · chunk', h.value).group(1)
            for h in at.html if 'class="hit"' in h.value]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# -- the page -------------------------------------------------------------------------------------
def test_query_shows_ranked_hits_with_highlights_and_time(monkeypatch, index_dir):
    at = search(page(monkeypatch, index_dir), "gas giants Jupiter and Saturn")
    sources = hit_sources(at)
    assert sources and sources[0].endswith("planets.html")
    top = next(h.value for h in at.html if 'class="hit"' in h.value)
    assert "<mark>Jupiter</mark>" in top and "1. The outer planets" in top
    assert re.search(r"\d+ results in \d+ ms", texts(at.caption))
    search(at, "knead the dough and let it rise")
    assert hit_sources(at)[0].endswith("bread.txt")
    radio = at.radio(key="mode")
    assert list(radio.options) == list(MODES) and radio.value == DEFAULT_MODE    # one vocabulary, one default
    assert f"· {DEFAULT_MODE} · score = {score_kind(DEFAULT_MODE)}" in texts(at.caption)
    radio.set_value("sparse").run()
    assert hit_sources(at)[0].endswith("bread.txt") and "· sparse · score = bm25" in texts(at.caption)
    top = next(h.value for h in at.html if 'class="hit"' in h.value)
    assert re.search(r'class="hit-score" title="BM25 keyword score[^"]*">bm25 \d+\.\d{4}<', top)
    assert "Chunks" in [m.label for m in at.sidebar.metric] and "all-MiniLM-L6-v2" in texts(at.sidebar.markdown)


def test_task_and_instruction_are_disabled_with_the_reason_for_the_default_model(monkeypatch, index_dir):
    at = search(page(monkeypatch, index_dir), "violin concerto")
    task, instruction = at.selectbox(key="task"), at.text_input(key="instruction")
    assert task.disabled and instruction.disabled               # not merely captioned: they cannot be used
    assert "does not take instructions" in task.help and "does not take instructions" in instruction.help
    assert not at.error and not at.exception
    assert at.code[0].value == "violin concerto"  # the exact query text sent: unchanged
    assert "Not applicable" in texts(at.caption) and "not instruction-tuned" in texts(at.caption)
    assert hit_sources(at)[0].endswith("music.pdf")


def test_instructed_model_query_text_follows_task_and_instruction(monkeypatch, tiny_index_dir, tiny_mistral_dir,
                                                                  tmp_path):
    data_dir = shutil.copytree(tiny_index_dir, tmp_path / "store")
    at = search(page(monkeypatch, data_dir, RAG_MODEL=str(tiny_mistral_dir)), "bread")
    assert not at.selectbox(key="task").disabled and not at.text_input(key="instruction").disabled
    assert at.code[0].value == ("Instruct: Given a web search query, retrieve relevant passages that answer "
                                "the query\nQuery: bread")
    at.selectbox(key="task").set_value("question_answering").run()
    assert at.code[0].value == ("Instruct: Given a question, retrieve passages that answer the question\n"
                                "Query: bread")
    at.text_input(key="instruction").input("Find baking recipes").run()
    assert at.code[0].value == "Instruct: Find baking recipes\nQuery: bread"
    assert "Not applicable" not in texts(at.caption) and len(hit_sources(at)) > 0


def test_file_type_and_folder_filters_use_the_collections_values(monkeypatch, index_dir, corpus):
    at = search(page(monkeypatch, index_dir), "notes and documents")
    assert set(at.multiselect(key="types").options) == {"docx", "html", "md", "pdf", "txt"}
    assert {str(corpus), str(corpus / "notes")} <= set(at.selectbox(key="folder").options)
    assert len({Path(s).suffix for s in hit_sources(at)}) > 1
    at.multiselect(key="types").set_value(["pdf"]).run()
    assert [Path(s).name for s in hit_sources(at)] == ["music.pdf"]
    at.multiselect(key="types").set_value(["md"]).run()
    assert {Path(s).name for s in hit_sources(at)} == {"qdrant.md", "garden.md"}
    at.multiselect(key="types").set_value([])
    at.selectbox(key="folder").set_value(str(corpus / "notes")).run()
    assert [Path(s).name for s in hit_sources(at)] == ["garden.md"]
    at.selectbox(key="folder").set_value("(all folders)")
    at.text_input(key="glob").input("*.docx").run()
    assert [Path(s).name for s in hit_sources(at)] == ["hiking.docx"]
    at.date_input(key="after").set_value(date.today() + timedelta(days=1)).run()
    assert not hit_sources(at) and "No matches" in texts(at.info)
    at.date_input(key="after").set_value(date(2000, 1, 1)).run()
    assert [Path(s).name for s in hit_sources(at)] == ["hiking.docx"]


def test_context_and_preview_of_a_hit_and_refusal_outside_the_roots(monkeypatch, index_dir, corpus):
    at = search(page(monkeypatch, index_dir), "mix flour water salt yeast")
    rid = next(t.key for t in at.toggle if t.key.startswith("ctx_"))[4:]
    at.toggle(key=f"ctx_{rid}").set_value(True)
    at.toggle(key=f"pv_{rid}").set_value(True).run()
    assert "No more context: this chunk is the whole file." in texts(at.caption)    # bread.txt is one chunk
    preview = next(h.value for h in at.html if 'class="doc-preview"' in h.value)   # rendered, not a code box
    assert '<div class="hit-here" id="hit">' in preview and "<mark>flour</mark>" in preview
    assert "scrolled to the result" in texts(at.caption)
    at.text_input(key="preview_path").input("/etc/passwd").run()
    assert "outside the indexed folders" in texts(at.error)
    at.text_input(key="preview_path").input(f"{corpus}/notes/../../{corpus.name}/notes/garden.md").run()
    garden = [h.value for h in at.html if 'class="doc-preview"' in h.value][-1]
    assert "<h1>Garden</h1>" in garden and "<p>Tomatoes need full sun" in garden    # Markdown rendered


def test_empty_store_says_no_index_then_indexing_from_the_sidebar_works(monkeypatch, tmp_path, corpus):
    at = page(monkeypatch, tmp_path / "empty")
    assert "No collection 'documents'" in texts(at.info) and not at.error
    at.text_input(key="index_path").input(str(tmp_path / "missing"))
    at.button(key="index_button").click().run()
    assert "does not exist" in texts(at.error)
    at.text_input(key="index_path").input(str(corpus / "notes"))
    at.button(key="index_button").click().run()
    assert "Indexed 1 files" in texts(at.success) and at.progress[0].value == 100
    search(at, "tomatoes in the sun")
    assert [Path(s).name for s in hit_sources(at)] == ["garden.md"] and not at.info


def test_collection_from_another_model_is_refused_with_the_fix(monkeypatch, tiny_index_dir):
    at = search(page(monkeypatch, tiny_index_dir), "bread")
    assert "was built with a different embedder" in texts(at.error) and "RAG_MODEL=" in texts(at.error)
    assert not hit_sources(at)


def test_locked_store_and_unreachable_server_are_messages(monkeypatch, tmp_path):
    holder = EdgeStore(tmp_path / "locked")
    try:
        at = page(monkeypatch, tmp_path / "locked")
        assert "held by another process" in texts(at.error)
    finally:
        holder.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    at = page(monkeypatch, tmp_path, RAG_QDRANT_URL=f"http://127.0.0.1:{port}")
    assert "Cannot reach Qdrant" in texts(at.error)


# -- the service ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def preview_service(tmp_path_factory, _tiny_embedder):
    """A service over a collection whose recorded root is ``tmp/root`` (no points needed)."""
    tmp_path = tmp_path_factory.mktemp("preview")
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "ok.txt").write_text("inside text")
    (outside / "secret.txt").write_text("secret text")
    (tmp_path / "root-evil").mkdir()
    (tmp_path / "root-evil" / "x.txt").write_text("prefix trick")
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    store = EdgeStore(tmp_path / "store")
    fp = _tiny_embedder.fingerprint
    store.create_collection("documents", fp.dim, collection_meta(fp, 64, 8))
    store.update_collection_meta("documents", {"roots": [str(root)]})
    service = SearchService(Settings(data_dir=tmp_path / "store"), _tiny_embedder, store)
    yield service, root, outside
    service.close()


def test_preview_reads_files_under_the_roots(preview_service):
    service, root, _ = preview_service
    assert service.preview(root / "sub" / "ok.txt").text == "inside text"
    assert service.preview(f"{root}/sub/../sub/ok.txt").text == "inside text"


@pytest.mark.parametrize("path", [
    "/etc/passwd", "{root}/../outside/secret.txt", "{root}/sub/../../outside/secret.txt", "{root}/link.txt",
    "{root}/linkdir/secret.txt", "{root}-evil/x.txt", "sub/ok.txt", "{root}/missing.txt", "{root}/sub", "",
])
def test_preview_refuses_everything_else(preview_service, path):
    service, root, _ = preview_service
    with pytest.raises(PreviewRefused) as err:
        service.preview(path.format(root=root))
    assert "secret text" not in str(err.value) and str(err.value)


def test_service_errors_are_friendly(tmp_path, tiny_embedder, default_embedder):
    service = SearchService(Settings(data_dir=tmp_path / "s"), tiny_embedder, EdgeStore(tmp_path / "s"))
    try:
        assert not service.status().exists
        with pytest.raises(NoIndexYet, match="Index a folder"):
            service.search("anything")
        with pytest.raises(NoIndexYet):
            service.preview("/etc/passwd")
        with pytest.raises(StoreUnavailable, match="held by another process"):
            SearchService.from_settings(Settings(data_dir=tmp_path / "s"), embedder=tiny_embedder)
        fp = default_embedder.fingerprint
        service.store.create_collection("documents", fp.dim, collection_meta(fp, 64, 8))
        assert "different embedder" in service.status().error
        with pytest.raises(ModelMismatch):
            service.search("anything")
    finally:
        service.close()


def test_highlight_escapes_before_marking():
    out = highlight("<b>Qdrant</b> & vectors; a < b costs $5", "qdrant VECTOR lt")
    assert out == ("&lt;b&gt;<mark>Qdrant</mark>&lt;/b&gt; &amp; <mark>vectors</mark>; a &lt; b costs &#36;5")
    assert highlight("<script>x</script>", "the of") == "&lt;script&gt;x&lt;/script&gt;"


def test_context_shows_the_neighbours_only_without_overlaps():
    text = "one two three four five six"

    def chunk(i, start, end):
        return SearchResult(0, 0.0, str(i), text[start:end], {"chunk_index": i, "start": start, "end": end})

    hit = chunk(1, 8, 18)  # "three four"
    before, after = context_around(hit, [chunk(0, 0, 13), hit, chunk(2, 14, 27)])
    assert (before, after) == ("one two", "five six")            # not "three" twice, not the hit again
    assert context_around(hit, [hit]) == ("", "")
    assert SearchService.make_filter("", " ", [], None) is None


SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_snippet_keeps_whole_lines_sentences_and_statements():
    from app.results import snippet

    text = ("ing another list comprehension. Consider the following example of a matrix:\n\n"
            ">>> matrix = [\n...     [1, 2, 3, 4],\n...     [5, 6, 7, 8],\n... ]\n\nThe end.")
    cut = snippet(text, ["matrix"], max_chars=70)
    assert cut.startswith("… Consider the following example")          # the sentence fragment is dropped
    assert "[5, 6, 7, 8],\n... ]" in cut and not cut.rstrip(" …").endswith("[")   # the bracket is closed
    assert snippet(text, ["end"], max_chars=20) == "… The end."
    loop = "Intro line.\n>>> for i in range(4):\n...     print(i)\n...\nMore text here."
    assert snippet(loop, ["for"], max_chars=30) == "… >>> for i in range(4):\n...     print(i)\n... …"
    assert snippet("lower case start. Whole text.", [], mid_file=False) == "lower case start. Whole text."
    assert snippet("2, 3, 1, 4]\n>>> a.sort()\n>>> a", ["sort"]) == "… >>> a.sort()\n>>> a"   # a line's tail


def test_preview_renders_rst_as_the_document_with_the_hit_marked():
    from app.render import document_blocks, document_html
    from indexer.extract import extract

    path = SAMPLES / "python-tutorial" / "datastructures.rst"
    doc = extract(path)
    blocks = document_blocks(path, doc.text, doc.file_type)
    assert "\n\n".join(t for _, t in blocks) == doc.text
    start = doc.text.index("Consider the following example of a 3x4 matrix")
    page = document_html(blocks, (start, start + 200), lambda s: highlight(s, "matrix"), window=len(doc.text))
    assert "<h1>Data Structures</h1>" in page and "<h3>Nested List Comprehensions</h3>" in page
    for markup in (".. _tut-", "****", "::</", ":noindex:"):
        assert markup not in page
    hit = page[page.index('<div class="hit-here" id="hit">'):]
    hit = hit[:hit.index("</div>")]
    assert "<mark>matrix</mark>" in hit and "<pre><code>&gt;&gt;&gt; <mark>matrix</mark> = [" in hit
    assert page.count("hit-here") == 1


def test_preview_renders_html_headings_and_escapes_everything(tmp_path):
    from app.render import document_blocks, document_html
    from indexer.extract import extract

    path = tmp_path / "page.html"
    path.write_text('<html><body><div class="related" role="navigation">Next | Previous</div>'
                    '<h1>Title<a class="headerlink" href="#t">¶</a></h1><p>Use &lt;script&gt; tags.</p>'
                    "<pre>x = 1\n</pre></body></html>")
    doc = extract(path)
    page = document_html(document_blocks(path, doc.text, doc.file_type))
    assert page == ('<div class="doc-preview"><h1>Title</h1><p>Use &lt;script&gt; tags.</p>'
                    "<pre><code>x = 1</code></pre></div>")
