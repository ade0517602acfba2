"""The facade every entry point talks to: one :class:`SearchService` per store, built from the settings.

The ``rag`` command, the search page and ``rag serve`` (HTTP and MCP) all search, index and read
status through it. It holds the embedder, the store and one :class:`~indexer.search.Searcher` per
collection, and turns every failure they can meet into a :class:`ServiceError` whose message says
what to do next (no index yet, store locked or server down, collection built with another model, a
file outside the indexed folders): :func:`friendly_errors` is the one mapping. Indexing runs here, in
the same process, so it never fights the embedded store's single-process lock.

The model is optional at construction: without one, the service reads its config when a search
or an index run first needs it (after checking the collection, before any weights load), so a
status or a keyword (sparse) search never loads a model at all.
"""

from __future__ import annotations

import html
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from embedder import EmbedderError
from indexer.collection import stored_chunk_context
from indexer.extract import ExtractionError, extract
from indexer.pipeline import IndexReport
from indexer.rerank import Reranker
from indexer.search import NoIndex, SearchResponse, SearchResult, Searcher, collection_meta_or_raise
from indexer.store import MODES, CollectionMismatch, CollectionNotFound, SearchFilter, StoreError, VectorStore
from indexer.walk import is_under

from .factories import build_embedder, build_indexer, build_reranker, build_store, check_model
from .settings import Settings

if TYPE_CHECKING:
    from embedder import Embedder

log = logging.getLogger(__name__)

PREVIEW_CHARS = 20_000
MAX_FOLDERS = 500
_OPTION_FIELDS = ["metadata.file_type", "metadata.dirs", "metadata.root"]
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it of on or the to what when where "
    "which who why with".split()
)


class ServiceError(Exception):
    """A problem shown to the user as a message, never a traceback."""


class NoIndexYet(ServiceError):
    """The collection does not exist yet."""


class StoreUnavailable(ServiceError):
    """The store cannot be used: embedded store locked by another process, server unreachable..."""


class ModelMismatch(ServiceError):
    """The collection was built with another embedder (or chunking)."""


class PreviewRefused(ServiceError):
    """The path is not a file under one of the collection's indexed folders."""


class BadRequest(ServiceError):
    """The input cannot be used (unknown task, missing folder...)."""


@dataclass(frozen=True)
class CollectionStatus:
    """What the sidebar shows about one collection."""

    name: str
    store: str
    exists: bool
    points: int = 0
    fingerprint: dict = field(default_factory=dict)
    last_indexed: float | None = None
    roots: list[str] = field(default_factory=list)
    chunk_tokens: int | None = None
    chunk_context: str | None = None  # what its chunks were embedded after ("title", or "none": alone)
    error: str | None = None     # mismatch with the loaded model, unreadable store...

    @property
    def last_indexed_text(self) -> str:
        if not self.last_indexed:
            return "never"
        return datetime.fromtimestamp(self.last_indexed).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class FilterOptions:
    """Filter choices taken from the collection's own payloads."""

    file_types: list[str]
    folders: list[str]
    roots: list[str]


@dataclass(frozen=True)
class Preview:
    """A source file's extracted text (cut at :data:`PREVIEW_CHARS`)."""

    path: str
    title: str
    file_type: str
    text: str
    truncated: bool


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn library exceptions into :class:`ServiceError` subclasses with next-step messages."""
    try:
        yield
    except ServiceError:
        raise
    except (NoIndex, CollectionNotFound) as exc:
        raise NoIndexYet(str(exc)) from exc
    except CollectionMismatch as exc:
        raise ModelMismatch(str(exc)) from exc
    except StoreError as exc:
        raise StoreUnavailable(str(exc)) from exc
    except ConnectionError as exc:
        raise StoreUnavailable(str(exc)) from exc
    except EmbedderError as exc:
        raise ServiceError(f"The embedding model cannot be used: {exc}") from exc
    except (ValueError, FileNotFoundError) as exc:
        raise BadRequest(str(exc)) from exc


def query_terms(query: str) -> list[str]:
    """Words of ``query`` worth highlighting (2+ characters, no stopwords), in order, unique."""
    words = (w.lower() for w in re.findall(r"\w+", query))
    return list(dict.fromkeys(w for w in words if len(w) > 1 and w not in _STOPWORDS))


_SENTENCE_END = re.compile(r"[.!?;:](?=\s|$)")


def snippet(text: str, limit: int = 240, max_lines: int = 6) -> list[str]:
    """The start of ``text`` as whole lines (code stays line by line, indented as it was), about
    ``limit`` characters and at most ``max_lines`` lines.

    A line that does not fit is cut at its last sentence end, else at a word, and marked ``…``;
    never in the middle of a word.
    """
    lines = [re.sub(r"(?<=\S)\s+", " ", line.rstrip()) for line in text.splitlines()]
    out: list[str] = []
    room = limit
    for line in filter(None, lines):
        if len(out) == max_lines:
            out[-1] += " …"
            break
        if len(line) <= room:
            out.append(line)
            room -= len(line)
            continue
        if not out or room >= limit // 3:
            head = line[:room]
            ends = [m.end() for m in _SENTENCE_END.finditer(head)]
            cut = ends[-1] if ends and ends[-1] >= room // 2 else head.rfind(" ")
            out.append((line[:cut] if cut > 0 else head).rstrip() + " …")
        elif out:
            out[-1] += " …"
        break
    return out


def highlight(text: str, query: str) -> str:
    """``text`` as safe HTML with words starting with a query term wrapped in ``<mark>``.

    Every piece of ``text`` is HTML-escaped before any markup is added, so a chunk can never
    inject tags; ``$`` is escaped too so that no renderer takes it for LaTeX.
    """
    def esc(s: str) -> str:
        return html.escape(s).replace("$", "&#36;")

    terms = query_terms(query)
    if not terms:
        return esc(text)
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, terms)) + r")\w*", re.IGNORECASE)
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append(esc(text[pos:m.start()]))
        out.append(f"<mark>{esc(m.group(0))}</mark>")
        pos = m.end()
    out.append(esc(text[pos:]))
    return "".join(out)


class SearchService:
    """Search, context, preview, filter options, status and indexing over one store."""

    def __init__(self, settings: Settings, embedder: Embedder | None, store: VectorStore) -> None:
        """``embedder`` None: the settings' model, read when first needed (see the module docstring)."""
        self.settings = settings
        self._embedder = embedder
        self.store = store
        self._searchers: dict[str, Searcher] = {}
        self._reranker: Reranker | None = None
        self._options: dict[str, FilterOptions] = {}
        self._lock = threading.Lock()          # guards the caches
        self._index_lock = threading.Lock()    # one indexing run at a time

    @classmethod
    def from_settings(cls, settings: Settings, embedder: Embedder | None = None, *,
                      lazy: bool = False) -> SearchService:
        """Open the store and load the model (unless ``embedder`` is given) that ``settings`` name;
        ``lazy``: leave the model to the first search or index run that needs it."""
        with friendly_errors():
            store = build_store(settings)
        try:
            with friendly_errors():
                embedder = embedder or (None if lazy else build_embedder(settings))
        except BaseException:
            store.close()
            raise
        return cls(settings, embedder, store)

    # -- what is loaded ---------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        """The query/document model; read on first use when none was given (config and tokenizer
        after checking that they match the collection, weights at the first embed)."""
        return self._model()

    def _model(self, *, recreate: bool = False) -> Embedder:
        if self._embedder is None:
            with friendly_errors():
                info = check_model(self.settings, self.store, recreate=recreate)
                embedder = build_embedder(self.settings, lazy=True, info=info)
            with self._lock:
                self._embedder = self._embedder or embedder
        return self._embedder

    @property
    def model_name(self) -> str:
        return self.embedder.spec.name

    @property
    def instructed(self) -> bool:
        """Whether the model formats queries with a task instruction (decoder models)."""
        return bool(self.embedder.spec.instructed)

    @property
    def location(self) -> str:
        """``embedded store at PATH`` or ``Qdrant server at URL``."""
        return self.store.describe()

    def collections(self) -> list[str]:
        """Existing collection names."""
        with friendly_errors():
            return self.store.collections()

    def _name(self, collection: str | None) -> str:
        return collection or self.settings.collection

    def searcher(self, collection: str | None = None) -> Searcher:
        name = self._name(collection)
        with self._lock:
            if name in self._searchers:
                return self._searchers[name]
        embedder = self.embedder
        with self._lock:
            return self._searchers.setdefault(name, Searcher(embedder, self.store, name))

    def meta(self, collection: str | None = None) -> dict:
        """The collection's metadata after checking it matches the model; raises ServiceError."""
        with friendly_errors():
            return self.searcher(collection).check()

    # -- sidebar ----------------------------------------------------------------------------------
    def status(self, collection: str | None = None) -> CollectionStatus:
        """Point count, fingerprint, last indexed time and roots; never raises for a bad collection.

        ``error`` reports a mismatch with the model when one is loaded (none is loaded for this).
        """
        name = self._name(collection)
        with friendly_errors():
            meta = self.store.collection_meta(name)
        if meta is None:
            return CollectionStatus(name, self.location, exists=False)
        error = None
        try:
            if self._embedder is not None:
                self.meta(name)
            with friendly_errors():
                points = self.store.count(name)
        except ServiceError as exc:
            error, points = str(exc), 0
        return CollectionStatus(
            name, self.location, exists=True, points=points, fingerprint=meta.get("fingerprint") or {},
            last_indexed=meta.get("last_indexed"), roots=list(meta.get("roots") or []),
            chunk_tokens=meta.get("chunk_tokens"), chunk_context=stored_chunk_context(meta), error=error,
        )

    def filter_options(self, collection: str | None = None) -> FilterOptions:
        """File types and folders (under the indexed roots) present in the collection; cached."""
        name = self._name(collection)
        with self._lock:
            if name in self._options:
                return self._options[name]
        meta = self.meta(name)
        types: set[str] = set()
        folders: set[str] = set()
        with friendly_errors():
            for _, payload in self.store.iter_payloads(name, _OPTION_FIELDS):
                md = payload.get("metadata", {})
                if md.get("file_type"):
                    types.add(md["file_type"])
                root = md.get("root")
                if root:
                    under = root.rstrip("/") + "/"
                    folders.update(d for d in md.get("dirs", []) if d == root or d.startswith(under))
        options = FilterOptions(sorted(types), sorted(folders)[:MAX_FOLDERS], list(meta.get("roots") or []))
        with self._lock:
            self._options[name] = options
        return options

    # -- searching --------------------------------------------------------------------------------
    @staticmethod
    def make_filter(folder: str | None = None, glob: str | None = None, file_types: list[str] | tuple = (),
                    modified_after: date | datetime | None = None) -> SearchFilter | None:
        """A SearchFilter from the page's inputs, or None when nothing is restricted."""
        after = None
        if modified_after is not None:
            day = modified_after if isinstance(modified_after, datetime) else datetime.combine(
                modified_after, datetime.min.time())
            after = day.timestamp()
        glob = (glob or "").strip() or None
        if not (folder or glob or file_types or after):
            return None
        return SearchFilter(path_prefix=folder or None, path_glob=glob, file_types=tuple(file_types),
                            modified_after=after)

    def query_text(self, query: str, task: str | None = None, instruction: str | None = None) -> str:
        """Exactly what the model embeds for ``query`` (instruction formatting on decoders only)."""
        with friendly_errors():
            return self.embedder.format_query(query, instruction=instruction or None, task=task)

    def search(self, query: str, collection: str | None = None, *, k: int = 10, mode: str | None = None,
               task: str | None = None, instruction: str | None = None,
               flt: SearchFilter | None = None, rerank: bool = False) -> SearchResponse:
        """Top ``k`` chunks; ``mode`` is dense, sparse or hybrid (default: the settings' mode);
        ``rerank`` re-scores the top candidates with the reranking model (loaded on first use)."""
        if not query.strip():
            raise BadRequest("Type a query first.")
        mode = mode or self.settings.mode
        if mode not in MODES:
            raise BadRequest(f"Unknown mode {mode!r}; choose one of: {', '.join(MODES)}.")
        with friendly_errors():
            if self._embedder is None:
                collection_meta_or_raise(self.store, self._name(collection))   # before any model loads
            if mode == "sparse" and self._embedder is None:
                # BM25 needs no model: a keyword search over a service without one loads none (not even torch)
                searcher = Searcher(None, self.store, self._name(collection))
            else:
                searcher = self.searcher(collection)
            if rerank:
                searcher.reranker = self.reranker()
            return searcher.search(query, k=int(k), mode=mode, task=task,
                                   instruction=instruction or None, flt=flt, rerank=rerank)

    def reranker(self) -> Reranker:
        """The reranking model named by the settings, loaded once."""
        with self._lock:
            if self._reranker is None:
                with friendly_errors():
                    self._reranker = build_reranker(self.settings)
            return self._reranker

    def context(self, result: SearchResult, collection: str | None = None, before: int = 1,
                after: int = 1) -> list[SearchResult]:
        """The chunks around ``result`` in its file, in order (``result`` included)."""
        with friendly_errors():
            return self.searcher(collection).neighbours(result, before, after)

    def preview(self, path: str | Path, collection: str | None = None) -> Preview:
        """The text of ``path``, only if it resolves to a file under one of the indexed roots.

        Symlinks and ``..`` are resolved first, so neither can lead outside; anything else raises
        :class:`PreviewRefused`.
        """
        raw = str(path).strip()
        if not raw:
            raise PreviewRefused("Enter the absolute path of an indexed file.")
        roots = [Path(r).resolve() for r in self.meta(collection).get("roots") or []]
        if not roots:
            raise PreviewRefused("This collection records no indexed folders; re-index it to enable previews.")
        candidate = Path(raw).expanduser()
        if not candidate.is_absolute():
            raise PreviewRefused(f"{raw!r} is not an absolute path; previews need an indexed file's full path.")
        try:
            target = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loop
            raise PreviewRefused(f"Cannot resolve {raw}: {exc}") from exc
        if not any(is_under(target, root) for root in roots):
            raise PreviewRefused(
                f"Refused: {raw} is outside the indexed folders ({', '.join(map(str, roots))}); "
                "only files under them can be previewed.")
        if not target.is_file():
            raise PreviewRefused(f"{raw} is not a file (or no longer exists); re-index to refresh the results.")
        try:
            doc = extract(target, max_bytes=int(self.settings.max_file_mb * 1024 * 1024))
        except ExtractionError as exc:
            raise ServiceError(f"Cannot preview {raw}: {exc.reason}") from exc
        text = doc.text
        return Preview(str(target), doc.title, doc.file_type, text[:PREVIEW_CHARS], len(text) > PREVIEW_CHARS)

    # -- indexing ---------------------------------------------------------------------------------
    def index_folder(self, path: str | Path, collection: str | None = None,
                     on_progress: Callable[[int, int], None] | None = None) -> IndexReport:
        """Index ``path`` (folder or file) into the collection in this process; refreshes the caches."""
        raw = str(path).strip()
        if not raw:
            raise BadRequest("Enter the folder to index.")
        folder = Path(raw).expanduser()
        if not folder.exists():
            raise BadRequest(f"{folder} does not exist on the machine running the UI; enter an existing folder.")
        return self.index([folder], collection, on_progress=on_progress)

    def index(self, paths: list[Path], collection: str | None = None, *, include: tuple[str, ...] | list = (),
              exclude: tuple[str, ...] | list = (), recreate: bool = False, progress: bool = False,
              on_progress: Callable[[int, int], None] | None = None, workers: int = 1) -> IndexReport:
        """Index ``paths`` (folders or files) into the collection: in this process with the service's
        model, or on ``workers`` Ray workers when above 1 (``rag index --workers``); ``recreate`` drops
        the collection first. Refreshes the caches."""
        name = self._name(collection)
        if not self._index_lock.acquire(blocking=False):
            raise BadRequest("Another folder is being indexed; wait for it to finish.")
        try:
            with friendly_errors():
                if workers > 1:      # the workers load the model; here only its config is checked
                    check_model(self.settings, self.store, recreate=recreate)
                    embedder = None
                else:
                    embedder = self._model(recreate=recreate)
                indexer = build_indexer(self.settings, self.store, embedder, collection=name, workers=workers)
                report = indexer.run(paths, include=include, exclude=exclude, recreate=recreate,
                                     progress=progress, on_progress=on_progress)
        finally:
            self._index_lock.release()
            with self._lock:
                self._options.pop(name, None)
                self._searchers.pop(name, None)
        log.info("indexed %s into %s: %d files, %d chunks", ", ".join(map(str, paths)), name, report.indexed,
                 report.chunks)
        return report

    def close(self) -> None:
        """Release the store (and its lock)."""
        self.store.close()


def context_around(hit: SearchResult, chunks: list[SearchResult]) -> tuple[str, str]:
    """``(before, after)``: the text of ``hit``'s neighbours, without the hit itself (it is already on
    the card) and without the tokens a neighbour shares with the hit (chunks overlap).

    Chunks are exact slices of the file's extracted text (``start``/``end`` offsets), so the part
    of a neighbour that overlaps the hit is cut off instead of shown twice.
    """
    start, end = hit.metadata.get("start", 0), hit.metadata.get("end", 0)
    index = hit.metadata.get("chunk_index", 0)
    before, after = [], []
    for c in chunks:
        i, cs = c.metadata.get("chunk_index", 0), c.metadata.get("start", 0)
        if i < index:
            before.append(c.text[: max(0, start - cs)] if cs < start else c.text)
        elif i > index:
            after.append(c.text[max(0, end - cs):] if cs < end else c.text)
    return "\n".join(before).rstrip(), "\n".join(after).lstrip()
