"""Shared helpers for the benchmarks: environment, timing, percentiles, RSS, tables, doc chunks.

Every script prints its figures next to a baseline measured in the same run (the machine is
shared and noisy), together with ``os.getloadavg()`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

DOCS = Path(os.environ.get("RAG_BENCH_DOCS", "/usr/share/doc/python3.11/html"))
CACHE = Path(os.environ.get("RAG_BENCH_CACHE", "/tmp/rag-bench-cache"))


# ----- environment ---------------------------------------------------------------------------
def quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()} {cpu} x{os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def header(title: str, **settings) -> float:
    """Print the run's header (date, machine, load, settings); returns the start time."""
    import torch

    print(f"# {title}  {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# {machine()}; torch {torch.__version__} threads={torch.get_num_threads()}")
    if settings:
        print("# " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    print(f"# loadavg at start {loadavg()}")
    return time.perf_counter()


def footer(start: float) -> None:
    print(f"# loadavg at end {loadavg()}; wall {time.perf_counter() - start:.0f}s")


# ----- timing and statistics -----------------------------------------------------------------
def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """Smallest wall time of ``repeat`` calls: the least disturbed by other processes."""
    return min(timed(fn)[0] for _ in range(max(1, repeat)))


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile, ``p`` in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# ----- memory --------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident set size (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(script: Path | str, args: Sequence[str], timeout: float | None = None) -> dict:
    """Run ``script args`` in a fresh interpreter; it must print one JSON object as its last line.

    The child reports its own ``peak_rss_mb``; ``child_maxrss_mb`` (RUSAGE_CHILDREN) is added as a
    cross-check (it is the max over all children waited for so far, so only an upper bound).
    """
    cmd = [sys.executable, str(script), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result = json.loads(lines[-1])
    result["child_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return result


def emit(result: dict) -> None:
    """Child side of :func:`run_child`: print the result with this process's peak RSS."""
    result = {**result, "peak_rss_mb": round(peak_rss_mb(), 1), "loadavg": loadavg()}
    print(json.dumps(result), flush=True)


# ----- tables --------------------------------------------------------------------------------
def fmt(x: object) -> str:
    if isinstance(x, float):
        if x != x:
            return "-"
        if abs(x) >= 100:
            return f"{x:,.0f}"
        if abs(x) >= 10:
            return f"{x:.1f}"
        return f"{x:.3g}" if abs(x) < 1 else f"{x:.2f}"
    return str(x)


def table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> None:
    """Print ``rows`` (dicts) as a Markdown table, columns in first-seen order."""
    if not rows:
        return
    cols = list(columns or dict.fromkeys(k for r in rows for k in r))
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    text = [any(isinstance(r.get(c), str) for r in rows) for c in cols]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join(("-" * (w + 2)) if t else ("-" * (w + 1) + ":") for w, t in zip(widths, text)) + "|")
    for row in cells:
        print("| " + " | ".join(v.ljust(w) if t else v.rjust(w) for v, w, t in zip(row, widths, text)) + " |")
    sys.stdout.flush()


# ----- the corpus: python docs HTML ----------------------------------------------------------
def doc_files(n: int | None = None) -> list[Path]:
    """``n`` HTML pages of the Python docs, spread evenly over the sorted list (all when None)."""
    if not DOCS.is_dir():
        raise SystemExit(f"{DOCS} is missing: apt-get install python3.11-doc")
    files = sorted(p for p in DOCS.rglob("*.html") if "_" not in p.parts[-2][:1])
    if n is None or n >= len(files):
        return files
    step = len(files) / n
    return [files[int(i * step)] for i in range(n)]


def folder_bench_parser(doc: str, files: int, phases: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Options of a benchmark over a copy of ``--files`` python-docs pages whose phases run as
    child processes (hidden ``--phase``, ``--dir``, ``--store``); ``--quick`` means 4 files."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 files (smoke test)")
    ap.add_argument("--files", type=int, default=files, help="python-docs pages, spread over the docs")
    ap.add_argument("--phase", choices=phases, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    return ap


def copy_docs(n: int, dest: Path) -> Path:
    """Copy :func:`doc_files` ``(n)`` under ``dest``, keeping their paths below the docs root."""
    for src in doc_files(n):
        dst = dest / src.relative_to(DOCS)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    return dest


def doc_chunks(n: int, tokenizer=None, chunk_tokens: int = 254, overlap: int = 32) -> list[str]:
    """``n`` real chunk texts: extract + chunk_text over the docs' pages in a fixed shuffled order.

    254 tokens is what ``Indexer`` cuts for all-MiniLM-L6-v2 (256 max_length minus [CLS] and [SEP]).

    Chunks are cached per page under :data:`CACHE`. When all pages hold fewer than ``n`` chunks
    (about 15k), the list is repeated to length ``n`` (callers state this).
    """
    import random

    from indexer.chunking import chunk_text
    from indexer.extract import ExtractionError, extract

    pages = doc_files()
    random.Random(0).shuffle(pages)
    folder = CACHE / f"chunks-{chunk_tokens}-{overlap}"
    texts: list[str] = []
    for path in pages:
        cached = folder / (str(path.relative_to(DOCS)).replace("/", "__") + ".json")
        if cached.is_file():
            page = json.loads(cached.read_text())
        else:
            if tokenizer is None:
                tokenizer = default_tokenizer()
            try:
                page = [c.text for c in chunk_text(extract(path).text, tokenizer, chunk_tokens, overlap)]
            except ExtractionError:
                page = []
            folder.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(page))
        texts.extend(page)
        if len(texts) >= n:
            return texts[:n]
    out = list(texts)
    while len(out) < n:
        out.extend(texts[: n - len(out)])
    return out


def default_tokenizer():
    from transformers import AutoTokenizer

    from embedder.loading import default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir())


QUERIES = [
    "how do I read a file line by line",
    "sort a list of dictionaries by a key",
    "difference between a list and a tuple",
    "start a subprocess and capture its output",
    "parse command line arguments",
    "format a date as ISO 8601",
    "what is a context manager",
    "asyncio run tasks concurrently",
    "regular expression named groups",
    "json dump with indentation",
    "create a temporary directory",
    "thread pool executor map",
    "decimal rounding half even",
    "how does garbage collection work",
    "unittest mock patch an attribute",
    "convert bytes to a hex string",
    "dataclass default factory",
    "walk a directory tree recursively",
    "socket server accepting connections",
    "pickle protocol versions",
]


def mixed_texts(n: int, query_share: float = 0.25) -> tuple[list[str], list[str]]:
    """``n`` texts of real, mixed lengths: (documents, queries).

    Documents are python-docs chunks cut at 254, 128 and 64 tokens (MiniLM's tokenizer) in equal
    shares, so a batch mixes full chunks, short ones and each page's shorter last chunk; queries
    are :data:`QUERIES` (5-9 words; 10-40 tokens once a decoder's instruction is prepended), about
    ``query_share`` of ``n``.
    """
    n_queries = int(n * query_share)
    n_docs = n - n_queries
    sizes = (254, 128, 64)
    docs: list[str] = []
    for i, size in enumerate(sizes):
        share = n_docs // len(sizes) + (1 if i < n_docs % len(sizes) else 0)
        docs.extend(doc_chunks(share * 3, chunk_tokens=size, overlap=min(32, size // 4))[::3][:share])
    queries = [QUERIES[i % len(QUERIES)] for i in range(n_queries)]
    return docs, queries
