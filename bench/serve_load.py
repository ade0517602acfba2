"""`rag serve` under load: 1, 8 and 64 concurrent clients, each sending one query at a time.

Rows (all in one run, same index, same queries):
- in-process ``Searcher`` (the baseline: threads calling ``Searcher.search``, no service);
- in-process batching (threads calling the service's search through the micro-batcher, no HTTP);
- HTTP ``POST /search`` to a real ``rag serve`` subprocess, dynamic batching on and off;
- HTTP ``POST /v1/embeddings`` (query, 64 clients) with LoRA adapters: every request on one
  adapter vs requests alternating two adapters, for the ``grouped`` and ``mixed`` strategies.

Latency is per request (p50/p95, ms); req/s is requests over the wall time of the whole load;
errors count non-200 answers and exceptions. The model is the packaged all-MiniLM-L6-v2 on CPU
(``--model`` for another, e.g. a full-size random 7B folder on a GPU); the index is a few
files of the bundled Python tutorial.

    .venv/bin/python bench/serve_load.py [--quick] [--clients 1,8,64] [--requests 4] [--model default]
                                         [--window-ms 5] [--client threads|async] [--no-adapters]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common

SAMPLES = common.ROOT / "samples" / "python-tutorial"
SUBJECTS = ["lists", "dictionaries", "classes", "modules", "exceptions", "loops", "strings", "files",
            "generators", "decorators", "tuples", "sets"]
FORMS = ["how do I use {}", "what are {} in python", "examples of {}", "errors with {}", "{} vs alternatives",
         "when to use {}"]
QUERIES = [f.format(s) for s in SUBJECTS for f in FORMS]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_index(data_dir: Path, model: str, files: int) -> None:
    from app.services import build_embedder, index_settings
    from app.settings import Settings
    from indexer.pipeline import Indexer
    from indexer.store import EdgeStore

    docs = data_dir.parent / "docs"
    docs.mkdir()
    for f in sorted(SAMPLES.iterdir())[:files]:
        shutil.copy(f, docs / f.name)
    settings = Settings(data_dir=data_dir, model=model, device="cpu")
    store = EdgeStore(data_dir)
    try:
        report = Indexer(build_embedder(settings), store, "documents", index_settings(settings)).run([docs], progress=False)
    finally:
        store.close()
    print(f"# index: {report.indexed} files, {report.chunks} chunks")


def summarize(name: str, clients: int, latencies: list[float], errors: int, wall: float, extra: str = "") -> dict:
    return {"run": name, "clients": clients, "requests": len(latencies) + errors,
            "p50 ms": common.percentile(latencies, 50) * 1000, "p95 ms": common.percentile(latencies, 95) * 1000,
            "req/s": (len(latencies) + errors) / wall, "errors": errors, "note": extra}


def thread_load(name: str, call, clients: int, per_client: int) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def worker(c: int) -> None:
        nonlocal errors
        for r in range(per_client):
            q = QUERIES[(c * per_client + r) % len(QUERIES)]
            t = time.perf_counter()
            try:
                call(q)
                with lock:
                    latencies.append(time.perf_counter() - t)
            except Exception:  # noqa: BLE001 - counted
                with lock:
                    errors += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return summarize(name, clients, latencies, errors, time.perf_counter() - start)


async def http_load(name: str, url: str, path: str, body_for, clients: int, per_client: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        async def worker(c: int) -> None:
            nonlocal errors
            for r in range(per_client):
                i = c * per_client + r
                t = time.perf_counter()
                try:
                    response = await http.post(path, json=body_for(i, QUERIES[i % len(QUERIES)]))
                    if response.status_code != 200:
                        errors += 1
                        continue
                    latencies.append(time.perf_counter() - t)
                except httpx.HTTPError:
                    errors += 1

        await asyncio.gather(*(worker(c) for c in range(min(clients, 4))))   # warm-up connections
        latencies.clear()
        errors = 0
        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in range(clients)))
        wall = time.perf_counter() - start
    return summarize(name, clients, latencies, errors, wall)


def http_thread_load(name: str, url: str, path: str, body_for, clients: int, per_client: int) -> dict:
    """The same load from threads, one keep-alive ``httpx.Client`` each (lighter on the CPU the
    server shares than one asyncio loop juggling 64 connections)."""
    import httpx

    local = threading.local()
    counter = iter(range(10**9))
    lock = threading.Lock()

    def call(q: str) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=url, timeout=300)
        with lock:
            i = next(counter)
        response = local.http.post(path, json=body_for(i, q))
        if response.status_code != 200:
            raise RuntimeError(response.text)

    thread_load(name, call, min(clients, 4), 1)   # warm-up
    return thread_load(name, call, clients, per_client)


def load(kind: str, *args) -> dict:
    return http_thread_load(*args) if kind == "threads" else asyncio.run(http_load(*args))


class Served:
    """A `rag serve` subprocess on a free port."""

    def __init__(self, data_dir: Path, model: str, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(common.ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(self.port),
                                      "--data-dir", str(data_dir), "--model", model, "--device", "cpu", *extra],
                                     env=env, cwd=common.ROOT, stdout=subprocess.DEVNULL)

    def __enter__(self) -> "Served":
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rag serve exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("rag serve did not start")

    def __exit__(self, *_) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def save_loras(model: str, folder: Path) -> str:
    """Two random LoRA adapters (query/value projections) for the model; returns RAG_LORA_ADAPTERS."""
    import torch
    from peft import LoraConfig, get_peft_model

    from app.services import build_embedder
    from app.settings import Settings

    base = build_embedder(Settings(model=model, device="cpu")).model
    names = {n.rsplit(".", 1)[-1] for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = [t for t in ("q_proj", "v_proj", "query", "value") if t in names]
    spec = []
    for i, name in enumerate(("a", "b")):
        torch.manual_seed(i + 1)
        peft = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False))
        peft.save_pretrained(folder / name)
        base = peft.unload()
        spec.append(f"{name}={folder / name}")
    return ",".join(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 8 clients, 2 requests each (a smoke run)")
    parser.add_argument("--clients", default="1,8,64")
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--model", default="default")
    parser.add_argument("--files", type=int, default=4, help="tutorial files to index")
    parser.add_argument("--window-ms", type=float, default=5.0)
    parser.add_argument("--no-adapters", action="store_true")
    parser.add_argument("--client", choices=["threads", "async"], default="threads",
                        help="HTTP load from threads (one httpx.Client each) or one asyncio loop (httpx.AsyncClient)")
    args = parser.parse_args()
    clients = [1, 8] if args.quick else [int(c) for c in args.clients.split(",")]
    per_client = 2 if args.quick else args.requests
    common.quiet_transformers()
    start = common.header("rag serve load", model=args.model, clients=clients, requests_per_client=per_client,
                          window_ms=args.window_ms)
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    rows: list[dict] = []
    try:
        data_dir = tmp / "data"
        build_index(data_dir, args.model, args.files)

        # in process: the baseline Searcher, then the service's batcher (no HTTP)
        from app.serve.runtime import Runtime, ServeOptions
        from app.services import build_embedder
        from app.settings import Settings
        from indexer.search import Searcher

        settings = Settings(data_dir=data_dir, model=args.model, device="cpu")
        embedder = build_embedder(settings)
        for batching in (False, True):
            runtime = Runtime(settings, embedder, ServeOptions(batching=batching, window_ms=args.window_ms))
            try:
                if not batching:
                    searcher = Searcher(embedder, runtime.service.store, "documents")
                    call, name = (lambda q: searcher.search(q, k=10, mode="dense")), "in-process Searcher (baseline)"
                else:
                    call, name = (lambda q: runtime.service.search(q, k=10, mode="dense")), "in-process, batching"
                call(QUERIES[0])
                for c in clients:
                    rows.append(thread_load(name, call, c, per_client))
            finally:
                runtime.close()

        search_body = lambda i, q: {"query": q, "k": 10, "mode": "dense"}  # noqa: E731
        for batching in (True, False):
            extra = ["--window-ms", str(args.window_ms)] + ([] if batching else ["--no-batching"])
            with Served(data_dir, args.model, *extra) as served:
                for c in clients:
                    rows.append(load(args.client, f"HTTP /search, batching {'on' if batching else 'off'}",
                                     served.url, "/search", search_body, c, per_client))
        common.table(rows)
        base = {r["clients"]: r["req/s"] for r in rows if r["run"] == "HTTP /search, batching off"}
        on = {r["clients"]: r["req/s"] for r in rows if r["run"] == "HTTP /search, batching on"}
        inproc = {r["clients"]: r["req/s"] for r in rows if r["run"] == "in-process Searcher (baseline)"}
        for c in clients:
            print(f"# {c} clients: HTTP batching on/off {on[c] / base[c]:.2f}x; "
                  f"HTTP batching on / in-process Searcher {on[c] / inproc[c]:.2f}x")

        if not args.no_adapters:
            spec = save_loras(args.model, tmp / "loras")
            c = max(clients)
            arows = []
            for strategy in ("grouped", "mixed"):
                with Served(data_dir, args.model, "--lora-adapters", spec, "--adapter-strategy", strategy,
                            "--window-ms", str(args.window_ms)) as served:
                    for label, pick in (("one adapter", lambda i: "a"), ("two adapters mixed", lambda i: "ab"[i % 2])):
                        body = lambda i, q, pick=pick: {"input": q, "input_type": "query", "adapter": pick(i)}  # noqa: E731
                        arows.append(load(args.client, f"/v1/embeddings {strategy}, {label}", served.url,
                                          "/v1/embeddings", body, c, per_client))
            common.table(arows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        common.footer(start)


if __name__ == "__main__":
    main()
