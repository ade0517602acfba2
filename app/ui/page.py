"""The Streamlit search page (``rag ui``): a thin script over :class:`app.service.SearchService`.

The model and the store load once per process (``st.cache_resource``); every widget has a stable
``key`` so tests can drive the page (``streamlit.testing.v1.AppTest``, Playwright).
"""

from __future__ import annotations

import html
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # `streamlit run app/ui/page.py` runs this file as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import streamlit as st  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from app.service import (  # noqa: E402
    NoIndexYet,
    SearchService,
    ServiceError,
    highlight,
    query_terms,
    context_around,
)
from app.ui.render import preview_html  # noqa: E402
from app.ui.results import card_snippet  # noqa: E402
from app.factories import build_embedder  # noqa: E402
from app.settings import Settings  # noqa: E402
from embedder import TASKS  # noqa: E402
from indexer.modes import MODE_HELP, MODES  # noqa: E402

log = logging.getLogger("app.ui.page")
ALL_FOLDERS = "(all folders)"
#: The hover text of each score kind (indexer.search.SearchResponse.score_kind).
SCORE_HELP = {
    "cosine": "cosine similarity of the query's and the chunk's embeddings (-1 to 1; higher is closer)",
    "bm25": "BM25 keyword score: grows with rare query words in the chunk; not bounded, not comparable across queries",
    "dbsf": "distribution-based score fusion of the dense and the keyword ranking: each ranking's scores "
            "scaled to about 0-1 (mean +/- 3 standard deviations), then added; not a similarity",
    "rrf": "reciprocal rank fusion of the dense and the keyword ranking: the sum of 1/(k + rank) over both; "
           "it says how high both rankings put the chunk, not how similar it is",
    "rerank cosine": "cosine similarity under the reranking model (the order also weighs the first ranking)",
}
CSS = """<style>
.hit-head {display:flex; justify-content:space-between; gap:1rem; align-items:baseline}
.hit-title {font-weight:600; font-size:1.05rem}
.hit-section {font-weight:400; color:#374151}
.hit-score {color:#6b7280; font-size:.85rem; font-family:monospace; white-space:nowrap}
.hit-source {color:#6b7280; font-size:.8rem; word-break:break-all; margin:.1rem 0 .4rem}
.hit-text {white-space:pre-wrap; line-height:1.5; font-size:.92rem}
.hit-context {max-height:28rem; overflow-y:auto; border-left:3px solid #e5e7eb; padding-left:.75rem}
.hit-gap {color:#6b7280; font-size:.8rem; text-align:center; margin:.3rem 0}
.hit-ctx {white-space:pre-wrap; line-height:1.5; font-size:.92rem; color:#9ca3af}
.hit-text mark, .hit-ctx mark {background:#fde68a; color:inherit; padding:0 .1rem; border-radius:.2rem}
</style>"""


@st.cache_resource(show_spinner="Loading the embedding model…")
def _embedder(key: str, _settings: Settings):
    return build_embedder(_settings, lazy=True)     # weights load on the first dense/hybrid query


@st.cache_resource(show_spinner="Opening the index…")
def _service(key: str, _settings: Settings) -> SearchService:
    embedder = _embedder(repr(_settings.embedder_config()), _settings)
    return SearchService.from_settings(_settings, embedder=embedder)


def _remote_service(settings: Settings):
    """The running `rag serve` for this data dir (embedded store), as the page's service; else None."""
    if settings.qdrant_url:
        return None
    from app.serve.client import RemoteClient
    from app.serve.remote import RemoteSearchService

    client = RemoteClient.for_data_dir(settings.data_dir)
    return RemoteSearchService(client) if client is not None else None


def show_error(exc: ServiceError) -> None:
    """No index yet is a hint (info); everything else is an error."""
    if isinstance(exc, NoIndexYet):
        st.info(f"{exc} — or use “Index a folder” in the sidebar.")
    else:
        st.error(str(exc))


def sidebar(service: SearchService, settings: Settings) -> tuple[str, object]:
    """Collection picker, its status and the "Index a folder" form; returns (collection, status)."""
    with st.sidebar:
        st.header("Index")
        names = sorted(set(service.collections()) | {settings.collection})
        collection = st.selectbox("Collection", names, index=names.index(settings.collection), key="collection")
        status_box = st.container()
        st.subheader("Index a folder")
        folder = st.text_input("Folder", key="index_path", placeholder="/home/me/Documents")
        if st.button("Index", key="index_button", type="primary"):
            bar = st.progress(0.0, text="Scanning…")
            try:
                report = service.index_folder(folder, collection, on_progress=lambda done, total: bar.progress(
                    done / max(total, 1), text=f"{done}/{total} files"))
            except ServiceError as exc:
                bar.empty()
                st.error(str(exc))
            else:
                bar.progress(1.0, text="Done")
                st.success(f"Indexed {report.indexed} files ({report.chunks} chunks), {report.unchanged} "
                           f"unchanged, {report.removed} removed in {report.seconds:.1f} s.")
                for failure in report.failed[:5]:
                    st.warning(f"{failure.path}: {failure.reason}")
                st.session_state.pop("last_search", None)
        status = service.status(collection)
        with status_box:
            if status.exists:
                fp = status.fingerprint
                st.metric("Chunks", f"{status.points:,}")
                st.markdown(f"**Model** `{fp.get('model')}`  \n**Quantization** `{fp.get('quantization')}`  \n"
                            f"**Adapter** `{fp.get('adapter') or 'none'}`  \n**Dimensions** `{fp.get('dim')}`")
                st.caption(f"Last indexed {status.last_indexed_text}")
                if status.roots:
                    st.caption("Folders: " + ", ".join(status.roots))
            else:
                st.caption("This collection does not exist yet: index a folder below.")
            st.caption(f"Store: {status.store}")
            st.caption(f"Query model: {service.model_name}")
            training_card(settings.adapter)
    return collection, status


def training_card(adapter: str | None) -> None:
    """The fine-tuned adapter's held-out result and plots (loss curve, before/after per query)."""
    folder = Path(adapter).expanduser() if adapter else None
    if folder is None or not (folder / "training_card.json").is_file():
        return
    card = json.loads((folder / "training_card.json").read_text())
    with st.expander("Training card"):
        ev = card.get("eval_heldout", {})
        if ev:
            s = ev.get("significance", {}).get("ndcg@10", {})
            st.markdown(f"Held-out nDCG@10 **{ev['before']['ndcg@10']:.3f} → {ev['after']['ndcg@10']:.3f}**"
                        + (f" ({s['delta']:+.3f}, 95 % CI {s['ci95'][0]:+.3f} to {s['ci95'][1]:+.3f}, "
                           f"p = {s['p_value']:.3f})" if s else ""))
        for name, caption in (("loss.png", "Training loss"), ("before_after.png", "Held-out nDCG@10 per query"),
                              ("ablation.png", "Ablation: each refinement step off")):
            if (folder / name).is_file():
                st.image(str(folder / name), caption=caption)


def query_options(service: SearchService, collection: str, available: bool, settings: Settings) -> dict:
    """Task, instruction and filter widgets; returns the search keyword arguments."""
    tasks = list(TASKS)
    why_not = (None if service.instructed else
               f"Not applicable: {service.model_name} does not take instructions, so the task and custom "
               "instruction do not change the query.")
    with st.expander("Task, instruction and filters"):
        left, right = st.columns(2)
        task = left.selectbox("Task (named instruction)", tasks, key="task",
                              index=tasks.index(settings.task) if settings.task in tasks else 0,
                              format_func=lambda t: t.replace("_", " "), disabled=bool(why_not), help=why_not)
        instruction = left.text_input("Custom instruction (overrides the task)", key="instruction",
                                      value=settings.instruction or "", disabled=bool(why_not), help=why_not)
        if why_not:
            left.caption(why_not)
        options = service.filter_options(collection) if available else None
        folders = [ALL_FOLDERS] + (options.folders if options else [])
        folder = right.selectbox("Folder", folders, key="folder")
        glob = right.text_input("Path glob", key="glob", placeholder="*.md or docs/*")
        types = right.multiselect("File types", options.file_types if options else [], key="types")
        after = right.date_input("Modified after", value=None, key="after")
    flt = service.make_filter(None if folder == ALL_FOLDERS else folder, glob, types, after)
    return {"task": task, "instruction": instruction.strip() or None, "flt": flt}


def render_hit(service: SearchService, collection: str, query: str, r, score_kind: str) -> None:
    """One result: rank, score (labelled with what it is), title and section, source, highlighted
    chunk, context and preview toggles."""
    meta = r.metadata
    more = bool(st.session_state.get(f"ctx_{r.id}"))   # with its context the whole chunk is shown
    text = r.text if more else card_snippet(r.text, query_terms(query), mid_file=meta.get("chunk_index", 0) > 0)
    section = f'<span class="hit-section"> › {html.escape(r.section)}</span>' if r.section else ""
    with st.container(border=True, key=f"hit-{r.rank}"):
        st.html(f'<div class="hit"><div class="hit-head"><span class="hit-title">{r.rank}. '
                f'{html.escape(r.title)}{section}</span>'
                f'<span class="hit-score" title="{html.escape(SCORE_HELP[score_kind])}">'
                f'{score_kind} {r.score:.4f}</span></div>'
                f'<div class="hit-source">{html.escape(r.source)} · chunk {meta.get("chunk_index", 0) + 1}'
                f'/{meta.get("chunk_count", 1)} · {html.escape(meta.get("file_type", ""))}</div>'
                f'<div class="hit-text">{highlight(text, query)}</div></div>')
        left, right = st.columns(2)
        more = left.toggle("Show more context", key=f"ctx_{r.id}")
        preview = right.toggle("Preview file", key=f"pv_{r.id}")
        try:
            if more:
                before, after = context_around(r, service.context(r, collection))
                if not (before or after):
                    st.caption("No more context: this chunk is the whole file.")
                else:
                    st.html(f'<div class="hit-context"><div class="hit-ctx">{highlight(before, query) or "(start of file)"}'
                            f'</div><div class="hit-gap">⋯ the result above ⋯</div>'
                            f'<div class="hit-ctx">{highlight(after, query) or "(end of file)"}</div></div>')
            if preview:
                show_preview(service, r.source, collection, r)
        except ServiceError as exc:
            show_error(exc)


PREVIEW_FRAME = """<style>
body {{font-family: system-ui, sans-serif; font-size: 14px; line-height: 1.5; margin: .5rem; color: #1f2937}}
pre {{background: #f3f4f6; padding: .5rem; overflow-x: auto}} mark {{background: #fde68a}}
</style><div class="doc">{body}</div>
<script>const hit = document.getElementById("hit"); if (hit) hit.scrollIntoView({{block: "center"}});</script>"""


def show_preview(service: SearchService, path: str, collection: str, hit=None) -> None:
    """The file rendered as a document (through the service, which refuses paths outside the indexed
    folders); from a result card, scrolled to the result's text, which is highlighted."""
    p = service.preview(path, collection)
    st.caption(f"{p.path} · {p.file_type}" + (" · first 20,000 characters" if p.truncated else ""))
    meta = hit.metadata if hit is not None else {}
    body = preview_html(p.text, p.file_type, meta.get("start"), meta.get("end"))
    st.iframe(PREVIEW_FRAME.format(body=body), height=360)


def run_search(service: SearchService, collection: str, query: str, mode: str, k: int, opts: dict):
    """Search, reusing the last response when only a toggle changed (no re-embedding)."""
    key = (collection, query, mode, k, opts["task"], opts["instruction"], repr(opts["flt"]))
    last = st.session_state.get("last_search")
    if last and last[0] == key:
        return last[1]
    response = service.search(query, collection, k=k, mode=mode, **opts)
    st.session_state["last_search"] = (key, response)
    return response


def main() -> None:
    st.set_page_config(page_title="Document search", page_icon="🔎", layout="wide")
    st.html(CSS)
    try:
        settings = Settings()
    except ValidationError as exc:
        st.error(f"Invalid RAG_* setting: {exc}")
        st.stop()
    try:
        service = _remote_service(settings) or _service(settings.model_dump_json(), settings)
    except ServiceError as exc:
        st.error(str(exc))
        st.button("Retry", key="retry")
        st.stop()

    try:
        collection, status = sidebar(service, settings)
    except ServiceError as exc:  # e.g. the Qdrant server went away after the page opened
        st.error(str(exc))
        st.button("Retry", key="retry")
        st.stop()
    st.title("Search your documents")
    available = status.exists and status.error is None
    if not status.exists:
        st.info(f"No collection {collection!r} in {status.store} yet. Index a folder with “Index a folder” in "
                "the sidebar, or run `rag index PATH` (stop this UI first when using the embedded store).")
    elif status.error:
        st.error(status.error)

    query = st.text_input("Search", key="query", placeholder="Ask a question or type keywords, then press Enter",
                          label_visibility="collapsed")
    left, right = st.columns([3, 1])
    mode = left.radio("Mode", MODES, key="mode", horizontal=True, index=MODES.index(settings.mode),
                      help=" · ".join(f"{m}: {MODE_HELP[m]}" for m in MODES))
    k = int(right.number_input("Results", min_value=1, max_value=100, value=10, key="k"))
    try:
        opts = query_options(service, collection, available, settings)
    except ServiceError as exc:
        show_error(exc)
        opts = {"task": None, "instruction": None, "flt": None}

    if query.strip():
        with st.expander("Query text sent to the model"):
            try:
                st.code(service.query_text(query, opts["task"], opts["instruction"]), language=None,
                        wrap_lines=True)
            except ServiceError as exc:
                show_error(exc)
            if not service.instructed:
                st.caption(f"{service.model_name} is not instruction-tuned: the query is embedded as typed"
                           + (" (with its query prefix)." if service.embedder.spec.query_prefix else "."))
        if available:
            try:
                response = run_search(service, collection, query, mode, k, opts)
            except ServiceError as exc:
                show_error(exc)
            else:
                st.caption(f"{len(response.results)} results in {response.seconds * 1000:.0f} ms · {mode} · "
                           f"score = {response.score_kind}",
                           help=f"model + engine time for this query. Score: {SCORE_HELP[response.score_kind]}")
                if not response.results:
                    st.info("No matches. Try another mode, fewer filters or other words.")
                for r in response.results:
                    render_hit(service, collection, query, r, response.score_kind)

    with st.expander("Preview a file"):
        path = st.text_input("Path of an indexed file", key="preview_path")
        if path.strip():
            try:
                show_preview(service, path, collection)
            except ServiceError as exc:
                show_error(exc)


main()
