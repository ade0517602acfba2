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
    snippet,
)
from app.factories import build_embedder, index_settings
from app.settings import Settings
from indexer.collection import collection_meta
from indexer.pipeline import Indexer
from indexer.search import SearchResult
from indexer.store import DEFAULT_MODE, MODES, EdgeStore, score_kind

from .docs import make_corpus

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "ui" / "page.py")
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


def previews(at: AppTest) -> list[str]:
    """The HTML of the page's preview frames (``st.iframe``)."""
    return [e.proto.srcdoc for e in at.get("iframe")]


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
    frames = previews(at)
    assert len(frames) == 1 and '<mark id="hit">Baking bread' in frames[0] and "Knead the dough" in frames[0]
    assert "scrollIntoView" in frames[0]                          # the page scrolls to the hit
    at.text_input(key="preview_path").input("/etc/passwd").run()
    assert "outside the indexed folders" in texts(at.error)
    at.text_input(key="preview_path").input(f"{corpus}/notes/../../{corpus.name}/notes/garden.md").run()
    assert "<h1>Garden</h1>" in previews(at)[-1] and "Tomatoes need full sun" in previews(at)[-1]  # rendered


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


def test_snippets_end_at_line_sentence_or_word_boundaries():
    code = ">>> matrix = [\n...     [1, 2, 3, 4],\n... ]\n" * 4
    lines = snippet(code)
    assert lines[:3] == [">>> matrix = [", "... [1, 2, 3, 4],", "... ]"]     # whole lines, one per line
    assert len(lines) == 6 and lines[-1].endswith(" …")
    prose = "Lists are mutable. " * 10 + "Tuples are not."
    cut = snippet(prose, limit=100)
    assert len(cut) == 1 and cut[0].endswith("mutable. …") and len(cut[0]) <= 102   # at a sentence end
    words = snippet("supercalifragilistic " * 30, limit=50)[0]
    assert words.endswith("supercalifragilistic …")                              # never mid-word
    assert snippet("Short.") == ["Short."]


def test_context_shows_the_neighbours_only_without_overlaps():
    text = "one two three four five six"

    def chunk(i, start, end):
        return SearchResult(0, 0.0, str(i), text[start:end], {"chunk_index": i, "start": start, "end": end})

    hit = chunk(1, 8, 18)  # "three four"
    before, after = context_around(hit, [chunk(0, 0, 13), hit, chunk(2, 14, 27)])
    assert (before, after) == ("one two", "five six")            # not "three" twice, not the hit again
    assert context_around(hit, [hit]) == ("", "")
    assert SearchService.make_filter("", " ", [], None) is None


def test_preview_renders_the_document_safely_with_the_hit_marked():
    from app.ui.render import preview_html

    md = "# Title\n\nSome *text* <script>alert(1)</script>.\n\n    code line\n"
    out = preview_html(md, "md", md.index("Some"), md.index("Some") + 4)
    assert "<h1>Title</h1>" in out and "<em>text</em>" in out and '<mark id="hit">Some</mark>' in out
    assert "<script>" not in out and "&lt;script&gt;" in out              # raw HTML is shown, not run
    plain = "Intro line\nsecond line\n\n    >>> x = 1\n    >>> x\n\nEnd <b>."
    out = preview_html(plain, "rst", 0, 5)
    assert out.startswith('<p><mark id="hit">Intro</mark> line<br>second line</p>')
    assert "<pre>    &gt;&gt;&gt; x = 1\n    &gt;&gt;&gt; x</pre>" in out and "End &lt;b&gt;." in out
    assert preview_html("abc", "txt") == "<p>abc</p>"                        # no hit: nothing marked
    two = "First para.\n\nSecond para."
    assert preview_html(two, "txt", 0, len(two)) == ('<p><mark id="hit">First para.</mark></p>\n'
                                                     "<p><mark>Second para.</mark></p>")   # one mark per block


def test_card_snippet_keeps_whole_lines_sentences_and_statements():
    from app.ui.results import card_snippet

    text = ("ing another list comprehension. Consider the following example of a matrix:\n\n"
            ">>> matrix = [\n...     [1, 2, 3, 4],\n...     [5, 6, 7, 8],\n... ]\n\nThe end.")
    cut = card_snippet(text, ["matrix"], max_chars=70)
    assert cut.startswith("… Consider the following example")          # the sentence fragment is dropped
    assert "[5, 6, 7, 8],\n... ]" in cut and not cut.rstrip(" …").endswith("[")   # the bracket is closed
    assert card_snippet(text, ["end"], max_chars=20) == "… The end."
    loop = "Intro line.\n>>> for i in range(4):\n...     print(i)\n...\nMore text here."
    assert card_snippet(loop, ["for"], max_chars=30) == "… >>> for i in range(4):\n...     print(i)\n... …"
    assert card_snippet("lower case start. Whole text.", [], mid_file=False) == "lower case start. Whole text."
    assert card_snippet("2, 3, 1, 4]\n>>> a.sort()\n>>> a", ["sort"]) == "… >>> a.sort()\n>>> a"   # a line's tail

