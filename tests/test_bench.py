"""The benchmark scripts run end to end (on a few generated HTML pages instead of the Python docs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOPICS = ["vector databases", "sourdough bread", "alpine hiking", "violin concertos", "gas giants"]


@pytest.fixture
def bench_env(tmp_path) -> dict:
    docs = tmp_path / "html"
    docs.mkdir()
    for i, topic in enumerate(TOPICS):
        body = "".join(f"<p>Paragraph {j} about {topic}: " + f"{topic} words " * 30 + "</p>" for j in range(6))
        (docs / f"page{i}.html").write_text(f"<html><head><title>{topic}</title></head><body>{body}</body></html>")
    return {**os.environ, "RAG_BENCH_DOCS": str(docs), "RAG_BENCH_CACHE": str(tmp_path / "cache"),
            "HF_HUB_OFFLINE": "1"}


def run(script: str, *args: str, env: dict) -> tuple[str, str]:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout, proc.stderr


@pytest.mark.slow
def test_index_pipeline_runs_every_phase(bench_env):
    out, err = run("index_pipeline.py", "--quick", "--embed-batch", "16", env=bench_env)
    assert "| Indexer.run, fresh store" in out and "| embed only (baseline)" in out
    assert "chunk counts differ" not in err  # the phases saw the same chunks


@pytest.mark.slow
def test_index_overlap_runs(bench_env):
    out, _ = run("index_overlap.py", "--files", "4", "--repeat", "1", "--ms-per-chunk", "1", env=bench_env)
    assert "| Indexer.run" in out and "of the shorter side overlapped" in out
