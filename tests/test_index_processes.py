"""Parsing in worker processes (``IndexSettings.parse_workers``) writes what parsing on threads writes.

This module imports no torch at its top: a parse worker that unpickles the crashing preparer below
imports it, and must stay light.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from indexer.parsing import ProcessParsing, RustTokenizer, parse_workers
from indexer.pipeline import Indexer, IndexSettings
from indexer.prepare import DocumentPreparer
from indexer.store import EdgeStore
from indexer.walk import walk

from .docs import make_corpus

SAMPLES = Path(__file__).parents[1] / "samples"
SETTINGS = IndexSettings(chunk_tokens=64, chunk_overlap=8, max_bytes=100_000)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The sample corpus with its bad files (a corrupt PDF, a binary .txt, a file over max_bytes)."""
    return make_corpus(tmp_path_factory.mktemp("corpus") / "docs")


def _collection(store: EdgeStore, name: str) -> dict[str, tuple[dict, list[float]]]:
    return {p.id: (p.payload, [round(x, 5) for x in p.dense]) for page in store.iter_points(name) for p in page}


def test_processes_write_what_threads_write(tiny_embedder, tmp_path):
    """Same point ids, payloads and vectors on the sample docs, whichever way files are parsed."""
    with EdgeStore(tmp_path / "store") as store:
        reports = {w: Indexer(tiny_embedder, store, f"w{w}", dataclasses.replace(SETTINGS, parse_workers=w))
                   .run([SAMPLES], progress=False) for w in (0, 2)}
        threads, processes = _collection(store, "w0"), _collection(store, "w2")
    assert reports[0].indexed == reports[2].indexed >= 15 and reports[0].chunks > 100
    assert [f.path for f in reports[0].failed] == [f.path for f in reports[2].failed]
    assert (len(processes), len(threads)) == (reports[2].chunks, reports[0].chunks) == (reports[2].chunks,) * 2
    assert processes.keys() == threads.keys()
    assert processes == threads


def test_the_rust_tokenizer_chunks_as_the_hugging_face_one(default_embedder, tiny_embedder):
    from indexer.chunking import chunk_text

    text = (SAMPLES / "python-tutorial" / "classes.rst").read_text()
    for tokenizer in (default_embedder.tokenizer, tiny_embedder.tokenizer):
        assert chunk_text(text, RustTokenizer.of(tokenizer), 64, 8) == chunk_text(text, tokenizer, 64, 8)


def test_a_corrupt_file_is_reported_and_skipped_in_processes(default_embedder, corpus, tmp_path):
    with EdgeStore(tmp_path / "store") as store:
        report = Indexer(default_embedder, store, "docs", dataclasses.replace(SETTINGS, parse_workers=2)).run(
            [corpus], progress=False)
        assert store.count("docs") == report.chunks
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert set(failed) == {"broken.pdf", "blob.txt", "huge.md"}
    assert "binary" in failed["blob.txt"].lower()
    assert report.indexed == 5


def test_parse_workers_import_no_torch(default_embedder, corpus):
    preparer = Indexer(default_embedder, None, "docs", SETTINGS).preparer
    entry = next(e for e in walk([corpus]) if e.path.name == "planets.html")
    with ProcessParsing(preparer, 1) as parsing:
        parsed = parsing.prepare(entry, None).result(timeout=120)
        loaded = parsing.submit(eval, "sorted(__import__('sys').modules)").result(timeout=60)
    assert parsed.error is None and len(parsed.points) >= 1
    assert "indexer.chunking" in loaded                      # the worker did chunk
    assert not {"torch", "transformers"} & set(loaded)


class CrashOn(DocumentPreparer):
    """Kills its worker process on ``crash.txt`` (as the OOM killer would)."""

    def prepare(self, entry, stored_digest):
        if entry.path.name == "crash.txt":
            os._exit(9)
        return super().prepare(entry, stored_digest)


def test_a_dead_worker_fails_its_files_and_the_run_goes_on(default_embedder, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(24):
        (folder / f"a{i:02}.txt").write_text(f"Note {i} is about embeddings and vector search. " * 10)
    (folder / "crash.txt").write_text("this file kills its parser")
    with EdgeStore(tmp_path / "store") as store:
        indexer = Indexer(default_embedder, store, "docs", dataclasses.replace(SETTINGS, parse_workers=2))
        indexer.preparer = CrashOn(**{f.name: getattr(indexer.preparer, f.name)
                                      for f in dataclasses.fields(DocumentPreparer)})
        report = indexer.run([folder], progress=False)
        assert store.count("docs") == report.chunks
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert "parse worker died" in failed["crash.txt"] and "--parse-workers 0" in failed["crash.txt"]
    assert report.indexed + len(failed) == 25 and report.indexed >= 16   # only the files in flight failed


class Unloadable(DocumentPreparer):
    """Cannot be unpickled: a worker process fails at its start, as it would where processes cannot run."""

    def __setstate__(self, state):
        raise RuntimeError("this preparer cannot be loaded in a worker")


def test_workers_that_cannot_start_give_way_to_threads(default_embedder, tmp_path, caplog):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(8):
        (folder / f"n{i}.txt").write_text(f"Note {i} is about embeddings and vector search. " * 10)
    with EdgeStore(tmp_path / "store") as store:
        indexer = Indexer(default_embedder, store, "docs", dataclasses.replace(SETTINGS, parse_workers=2))
        indexer.preparer = Unloadable(**{f.name: getattr(indexer.preparer, f.name)
                                         for f in dataclasses.fields(DocumentPreparer)})
        with caplog.at_level("WARNING", logger="indexer.parsing"):
            report = indexer.run([folder], progress=False)
        assert store.count("docs") == report.chunks > 0
    assert report.indexed == 8 and not report.failed  # the files the workers failed were parsed again
    assert "parse worker processes failed to start" in caplog.text


def test_a_script_without_a_main_guard_indexes_in_worker_processes(tmp_path):
    """Spawned workers do not re-run the parent's main script (an unguarded script, a Streamlit
    page): an unguarded script indexes everything in processes (it used to hang on the workers'
    start pipe, then to fall back to threads)."""
    import subprocess
    import sys

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(6):
        (folder / f"n{i}.txt").write_text(f"Note {i} is about embeddings and vector search. " * 10)
    script = tmp_path / "index_it.py"
    script.write_text(f"""
import logging
logging.basicConfig(level=logging.INFO)
import torch
torch.set_num_threads(1)
from embedder import Embedder
from indexer.pipeline import Indexer, IndexSettings
from indexer.store import EdgeStore
with EdgeStore({str(tmp_path / "store")!r}) as store:
    report = Indexer(Embedder.from_pretrained("default"), store, "docs", IndexSettings(parse_workers=1)).run(
        [{str(folder)!r}], progress=False)
    print("indexed", report.indexed, "failed", len(report.failed), "points", store.count("docs"))
""")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "indexed 6 failed 0" in proc.stdout
    assert "parsing in 1 worker processes" in proc.stderr and "failed to start" not in proc.stderr


def test_parse_workers_by_device():
    assert parse_workers(None, "cuda", cores=16) == 8
    assert parse_workers(None, "cuda", cores=6) == 4
    assert parse_workers(None, "cuda", cores=2) == 0      # too few cores: threads
    assert parse_workers(None, "cpu", cores=16) == 0      # a CPU model needs the cores
    assert parse_workers(3, "cpu", cores=2) == 3 and parse_workers(0, "cuda", cores=16) == 0
    with pytest.raises(ValueError, match="parse_workers=-1"):
        parse_workers(-1, "cuda")
