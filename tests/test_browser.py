"""The real page in a real browser: `streamlit run app/page.py` driven by headless Chromium (Playwright)."""

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
    cmd = [sys.executable, "-m", "streamlit", "run", "app/page.py", "--server.headless", "true",
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
                expect(page.get_by_text("results in")).to_contain_text(" ms")
                # results render one after another: wait for the last expected one before counting
                expect(page.locator(f".st-key-hit-{len(SAMPLES)}")).to_be_visible(timeout=30_000)
                assert page.locator("[class*='st-key-hit-']").count() >= len(SAMPLES)
                box.fill("where can I ask questions: mailing lists, newsgroups and the FAQ")
                box.press("Enter")
                expect(top).to_contain_text("whatnow.rst", timeout=30_000)
                shot = tmp_path / "search.png"
                page.screenshot(path=str(shot))
                assert shot.stat().st_size > 10_000
                if os.environ.get("RAG_SCREENSHOT_DIR"):
                    target = Path(os.environ["RAG_SCREENSHOT_DIR"])
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(shot, target / "search.png")
                    log.info("screenshot saved to %s", target / "search.png")
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_preview_is_the_rendered_document_scrolled_to_the_hit(tmp_path, default_embedder, sync_playwright):
    from playwright.sync_api import expect

    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(REPO / "samples" / "python-tutorial" / "datastructures.rst", docs / "datastructures.rst")
    data_dir = tmp_path / "store"
    with EdgeStore(data_dir) as store:
        Indexer(default_embedder, store, "documents", IndexSettings(chunk_tokens=128, chunk_overlap=16)) \
            .run([docs], progress=False)
    port, log_file = _free_port(), tmp_path / "streamlit.log"
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_CHUNK_TOKENS": "128", "RAG_CHUNK_OVERLAP": "16",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    for name in ("RAG_MODEL", "RAG_QDRANT_URL", "RAG_COLLECTION"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "streamlit", "run", "app/page.py", "--server.headless", "true",
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
                box.wait_for(timeout=90_000)
                box.fill("transpose the rows and columns of a matrix with a nested list comprehension")
                box.press("Enter")
                top = page.locator(".st-key-hit-1")
                expect(top).to_contain_text("datastructures.rst", timeout=60_000)
                card = top.locator(".hit-text").inner_text()
                for markup in (".. _", "::", ":keyword:`", "****"):
                    assert markup not in card, (markup, card)      # clean text, not reST markup
                top.get_by_text("Preview file").click()
                preview = top.locator(".doc-preview")
                expect(preview.locator(".hit-here")).to_be_visible(timeout=30_000)
                assert preview.locator("h2, h3").count() > 0 and preview.locator("pre").count() > 0   # rendered
                assert preview.evaluate("el => el.scrollTop") > 0            # scrolled down to the hit
                hit_box, view = preview.locator(".hit-here").bounding_box(), preview.bounding_box()
                assert view["y"] <= hit_box["y"] < view["y"] + view["height"]   # the hit is in view
                if os.environ.get("RAG_SCREENSHOT_DIR"):
                    top.screenshot(path=str(Path(os.environ["RAG_SCREENSHOT_DIR"]) / "preview.png"))
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
