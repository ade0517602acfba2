"""The real page in a real browser: `streamlit run app/ui/page.py` driven by headless Chromium (Playwright)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from indexer.pipeline import Indexer, IndexSettings
from indexer.store import EdgeStore

pytestmark = pytest.mark.browser
log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
SAMPLES = ["python-tutorial/venv.rst", "python-tutorial/appetite.rst", "python-tutorial/whatnow.rst",
           "python-tutorial/interactive.rst"]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, log_file: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log_file.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"streamlit did not answer /_stcore/health in {timeout}s:\n{log_file.read_text()[-3000:]}")


@pytest.fixture()
def sync_playwright():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed: run scripts/install-chromium.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not importable ({exc}): pip install -e '.[test]'")
    return sync_playwright


def test_search_in_a_real_browser(tmp_path, default_embedder, sync_playwright):
    from playwright.sync_api import expect

    docs = tmp_path / "docs"
    for name in SAMPLES:
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "samples" / name, docs / name)
    data_dir = tmp_path / "store"
    with EdgeStore(data_dir) as store:  # closed (lock released) before the server opens it
        report = Indexer(default_embedder, store, "documents", IndexSettings(chunk_tokens=128, chunk_overlap=16)) \
            .run([docs], progress=False)
    assert report.indexed == len(SAMPLES)

    port, log_file = _free_port(), tmp_path / "streamlit.log"
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_CHUNK_TOKENS": "128", "RAG_CHUNK_OVERLAP": "16",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for name in ("RAG_MODEL", "RAG_QDRANT_URL", "RAG_COLLECTION"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "streamlit", "run", "app/ui/page.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    with log_file.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(port, proc, log_file)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
                box = page.locator(".st-key-query input")
                box.wait_for(timeout=90_000)  # the first session loads the model
                expect(page.locator("section[data-testid='stSidebar']")).to_contain_text("Chunks", timeout=30_000)
                box.fill("how do I create a virtual environment with venv")
                box.press("Enter")
                top = page.locator(".st-key-hit-1")
                expect(top).to_contain_text("venv.rst", timeout=60_000)
                expect(top.locator("mark").first).to_be_visible()
                expect(top.locator(".hit-section")).to_contain_text("› ")  # the section, after the title
                expect(page.get_by_text("results in")).to_contain_text(" ms")
                # results render one after another: wait for the last expected one before counting
                expect(page.locator(f".st-key-hit-{len(SAMPLES)}")).to_be_visible(timeout=30_000)
                assert page.locator("[class*='st-key-hit-']").count() >= len(SAMPLES)
                box.fill("where can I ask questions: mailing lists, newsgroups and the FAQ")
                box.press("Enter")
                expect(top).to_contain_text("whatnow.rst", timeout=30_000)
                expect(top).to_contain_text("rrf" if os.environ.get("RAG_FUSION") == "rrf" else "dbsf")
                shots = [tmp_path / "search.png", tmp_path / "preview.png"]
                page.screenshot(path=str(shots[0]))
                top.locator("[class*='st-key-pv_'] label").first.click()      # "Preview file" on the top hit
                expect(page.frame_locator("iframe").first.locator("mark#hit")).to_be_visible(timeout=30_000)
                page.screenshot(path=str(shots[1]))
                assert all(shot.stat().st_size > 10_000 for shot in shots)
                if os.environ.get("RAG_SCREENSHOT_DIR"):
                    target = Path(os.environ["RAG_SCREENSHOT_DIR"])
                    target.mkdir(parents=True, exist_ok=True)
                    for shot in shots:
                        shutil.copy(shot, target / shot.name)
                    log.info("screenshots saved to %s", target)
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
