"""The benchmark scripts run end to end (on a few generated HTML pages instead of the Python docs)."""

from __future__ import annotations

import json
import os
import re
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
    out, err = run("index_pipeline.py", "--quick", "--embed-batch", "16", "--parse-workers", "auto,1", env=bench_env)
    assert "| embed only (baseline)" in out
    assert "| Indexer.run, fresh store, parse=auto (threads)" in out       # a CPU model: threads
    assert "| Indexer.run, fresh store, parse=1 (1 process)" in out
    assert "chunk counts differ" not in err  # the phases saw the same chunks


@pytest.mark.slow
def test_index_overlap_runs(bench_env):
    out, _ = run("index_overlap.py", "--files", "4", "--repeat", "1", "--ms-per-chunk", "1", "--parse-workers", "0,1",
                 env=bench_env)
    assert "| Indexer.run, threads" in out and "| Indexer.run, 1 process" in out and "| model alone" in out
    assert "of the shorter side overlapped" in out


@pytest.mark.slow
def test_gpu_packed_tiny_runs_every_row(bench_env):
    """The GPU benchmark's one command, on a tiny Mistral on the CPU: every row, and the index phase."""
    out, _ = run("gpu_packed.py", "--tiny", "--texts", "12", "--precisions", "bf16,4bit", env=bench_env)
    for row in ("sentence-transformers fp32", "ours fp32 padded", "ours fp32 packed", "ours 4bit NF4 packed",
                "| Indexer.run, fresh store", "| embed only (baseline)"):
        assert row in out, row
    cosines = [float(line.split("|")[-2]) for line in out.splitlines() if "packed " in line and line.startswith("|")]
    assert cosines and min(cosines) >= 0.999  # packed vectors = padded vectors


@pytest.mark.slow
def test_packed_cpu_runs(bench_env):
    out, _ = run("packed_cpu.py", "--quick", env=bench_env)
    assert "| all-MiniLM-L6-v2 (default)" in out and "| random Mistral" in out


@pytest.mark.slow
def test_serve_load_compares_batching_and_the_in_process_baseline(bench_env):
    out, _ = run("serve_load.py", "--quick", "--no-adapters", env=bench_env)
    assert "| in-process Searcher (baseline) " in out and "| HTTP /search, batching off " in out
    assert "queries per encode call" in out
    assert "8 clients: HTTP batching on/off" in out
    rows = [line for line in out.splitlines() if line.startswith("| HTTP") or line.startswith("| in-process")]
    assert len(rows) == 8 and all(line.split("|")[7].strip() == "0" for line in rows)  # zero errors

@pytest.mark.slow
def test_startup_runs(bench_env):
    out, _ = run("startup.py", "--repeat", "1", env=bench_env)
    rows = {m.group(1): float(m.group(2)) for m in re.finditer(r"'command': '([^']+)', 'seconds \(median\)': ([\d.]+)", out)}
    assert set(rows) == {"rag status", "rag search (dense)", "rag search (sparse)", "rag search (hybrid)"}
    assert all(seconds > 0 for seconds in rows.values())


@pytest.mark.slow
def test_finetune_real_trains_and_an_adapter_evaluated_later_scores_the_same(bench_env, tiny_mistral_dir, tmp_path):
    """Structure pairs of samples/ -> LoRA on a tiny decoder -> a heading set before/after; then the
    written adapter, evaluated on its own (`--adapter`, as after training on another machine), gives
    the same "after" figures as the model trained in process."""
    from evaluation.beir import write_beir
    from evaluation.docsets import headings_set

    write_beir(tmp_path / "sets" / "samples-headings", headings_set(ROOT / "samples", max_queries=12))
    common = ["--model", str(tiny_mistral_dir), "--sets", str(tmp_path / "sets"), "--modes", "dense",
              "--tasks", "samples-headings=title_lookup", "--threads", "1"]
    run("finetune_real.py", *common, "--docs", str(ROOT / "samples"), "--workdir", str(tmp_path / "w"),
        "--exclude-query-pages", "samples-headings=", "--tag", "tiny", "--max-steps", "2", "--batch-size", "4",
        "--lr", "5e-3", "--json", str(tmp_path / "train.json"), env=bench_env)
    trained = json.loads((tmp_path / "train.json").read_text())
    assert trained["train"]["steps"] == 2 and trained["split"]["train"] > 0
    queries = set(json.loads(line)["query"] for line in (tmp_path / "w" / "tiny" / "train.jsonl").open())
    held = set(json.loads(line)["text"] for line in (tmp_path / "sets" / "samples-headings" / "queries.jsonl").open())
    assert not queries & held  # the set's query pages were left out of training
    adapter = tmp_path / "w" / "tiny" / "adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "loss.png").exists()
    run("finetune_real.py", *common, "--adapter", str(adapter), "--json", str(tmp_path / "eval.json"), env=bench_env)
    assert not (Path(bench_env["RAG_BENCH_CACHE"]) / "finetune-real").exists()  # scoring prepares no training data
    row, again = trained["sets"][0], json.loads((tmp_path / "eval.json").read_text())["adapters"][0]["sets"][0]
    assert row["queries"] == 12
    for metric in ("mrr@10", "ndcg@10"):
        assert again[f"{metric} before"] == row[f"{metric} before"]
        assert again[f"{metric} after"] == pytest.approx(row[f"{metric} after"], abs=1e-3)
    assert row["mrr@10 before"] != row["mrr@10 after"] or row["ndcg@10 before"] != row["ndcg@10 after"]
