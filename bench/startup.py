"""Start-up time of the commands a user runs: `rag status`, `rag search` (sparse and dense), the page.

Each command runs in a fresh interpreter (what a user pays every time), ``--repeat`` times, and
the fastest run is kept (the machine is shared: the minimum is the least disturbed). The page is
timed from ``streamlit run`` to the health endpoint answering (server up) and to the search box
showing in headless Chromium (first page load, the service and model included), when Playwright
and /usr/bin/chromium are there. ``--repo`` runs another checkout's code (e.g. an older commit in
a git worktree) on the same documents, for before/after figures.

    .venv/bin/python bench/startup.py [--repeat 3] [--repo PATH] [--no-page]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
SAMPLES = ["python-tutorial/venv.rst", "python-tutorial/appetite.rst", "python-tutorial/whatnow.rst"]
CHROMIUM = Path("/usr/bin/chromium")


def timed(cmd: list[str], cwd: Path, env: dict, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        best = min(best, elapsed)
    return best


def page_times(repo: Path, env: dict) -> tuple[float, float | None]:
    """(seconds to /_stcore/health, seconds to the search box in Chromium or None)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "streamlit", "run", "app/page.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None or time.perf_counter() - start > 120:
                raise SystemExit("streamlit did not start")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.1)
        healthy = time.perf_counter() - start
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            return healthy, None
        if not CHROMIUM.exists():
            return healthy, None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
                page.locator(".st-key-query input").wait_for(timeout=120_000)
                return healthy, time.perf_counter() - start
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repo", type=Path, default=HERE, help="checkout whose code runs (default: this one)")
    ap.add_argument("--no-page", action="store_true", help="skip the page timings")
    args = ap.parse_args()
    repo = args.repo.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="startup-"))
    try:
        docs = tmp / "docs"
        docs.mkdir()
        for name in SAMPLES:
            shutil.copy(HERE / "samples" / name, docs / Path(name).name)
        env = {**os.environ, "RAG_DATA_DIR": str(tmp / "store"), "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        for name in ("RAG_MODEL", "RAG_QDRANT_URL", "RAG_COLLECTION", "RAG_MODE", "RAG_RERANK"):
            env.pop(name, None)
        rag = [sys.executable, "-m", "app.cli"]
        timed(rag + ["index", str(docs), "--no-progress"], repo, env, 1)
        print(f"repo {repo}  load average {os.getloadavg()[0]:.1f}  best of {args.repeat}")
        rows = [("python -c pass", timed([sys.executable, "-c", "pass"], repo, env, args.repeat)),
                ("rag status", timed(rag + ["status"], repo, env, args.repeat)),
                ("rag search --mode sparse", timed(rag + ["search", "virtual environment", "--mode", "sparse"],
                                                   repo, env, args.repeat)),
                ("rag search --mode dense", timed(rag + ["search", "virtual environment", "--mode", "dense"],
                                                  repo, env, args.repeat))]
        if not args.no_page:
            healthy, loaded = page_times(repo, env)
            rows.append(("page: server answers", healthy))
            if loaded is not None:
                rows.append(("page: search box in Chromium", loaded))
        for label, seconds in rows:
            print(f"  {label:32s} {seconds:6.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
