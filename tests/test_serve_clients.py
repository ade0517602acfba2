"""Clients go through a running service: `rag search/status/index` while the service holds the
embedded store's lock (and while an index job runs), `--direct` still opens the store, and
`rag ui` never leaves its Streamlit child behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from app.cli import main
from app.serve.client import RemoteClient
from app.serve.runtime import Runtime
from app.settings import Settings

from .serve_helpers import running_server, wait_job


@pytest.fixture
def served(tmp_path, index_dir, default_embedder):
    data_dir = tmp_path / "data"
    shutil.copytree(index_dir, data_dir)
    runtime = Runtime(Settings(data_dir=data_dir, chunk_tokens=64), default_embedder)
    with running_server(runtime, mcp_http=False) as url:
        yield data_dir, url


def test_search_status_and_index_go_through_the_service(served, corpus, capsys):
    data_dir, url = served
    assert main(["search", "vector database", "-k", "2", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"via {url}" in out and "2 results" in out
    assert main(["status", "--data-dir", str(data_dir)]) == 0
    assert "through the service" in capsys.readouterr().out
    assert main(["index", str(corpus), "--collection", "more", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert f"through {url}" in out and "failed 0" in out and "indexed 0" not in out
    assert "more" in RemoteClient(url).collections()


def test_direct_is_refused_by_the_lock_the_service_holds(served, capsys):
    data_dir, _ = served
    assert main(["status", "--direct", "--data-dir", str(data_dir)]) == 2
    assert "held by another process" in (err := capsys.readouterr().err) and "rag serve" in err


def test_search_works_while_an_index_job_runs(served, corpus, capsys):
    data_dir, url = served
    client = RemoteClient(url)
    job = client.index(str(corpus), "while")
    assert main(["search", "notes", "--data-dir", str(data_dir), "--json"]) == 0
    assert '"results"' in capsys.readouterr().out
    assert wait_job(client._http, job["id"])["state"] == "done"


def test_without_a_service_the_store_is_opened_directly(tmp_path, index_dir, capsys):
    data_dir = tmp_path / "data"
    shutil.copytree(index_dir, data_dir)
    (data_dir / "serve.json").write_text('{"host": "127.0.0.1", "port": 1, "pid": 999999999}')  # stale
    assert main(["status", "--data-dir", str(data_dir)]) == 0
    assert "through the service" not in capsys.readouterr().out


def test_ui_parent_stops_its_child_on_sigterm(tmp_path):
    pidfile = tmp_path / "child.pid"
    child = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    parent = subprocess.Popen([sys.executable, "-c", "import os, sys; from app.cli import run_child; "
                               f"sys.exit(run_child([sys.executable, '-c', {child!r}], dict(os.environ)))"],
                              cwd=os.getcwd())
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child_pid = int(pidfile.read_text())
    parent.send_signal(signal.SIGTERM)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("the child outlived its parent's SIGTERM")


def test_the_page_goes_through_the_service(served, corpus, monkeypatch):
    from .test_app import hit_sources, page, previews, search

    data_dir, url = served
    at = page(monkeypatch, data_dir)
    assert any(f"through the service at {url}" in c.value for c in at.sidebar.caption)
    at = search(at, "vector database")
    sources = hit_sources(at)
    assert sources and all(s.startswith(str(corpus)) for s in sources)
    at.text_input(key="preview_path").input(sources[0]).run()
    assert not at.exception and previews(at)
    # indexing from the sidebar runs as a job in the service (the store is the service's)
    at.text_input(key="index_path").input(str(corpus)).run()
    at.button(key="index_button").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("unchanged" in s.value for s in at.success)
