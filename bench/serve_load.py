"""`rag serve` under load: 1, 8 and 64 concurrent clients, each sending one query at a time.

Rows (all in one run, same index, same queries):
- in-process ``Searcher`` (the baseline: threads calling ``Searcher.search``, no service);
- in-process batching (threads calling the service's search through the micro-batcher, no HTTP);
- HTTP ``POST /search`` to a real ``rag serve`` subprocess, dynamic batching on and off, and
  ``mode=sparse`` (no model: what HTTP handling and the store cost per request);
- HTTP ``POST /v1/embeddings`` (query, 64 clients) with LoRA adapters: every request on one
  adapter vs requests alternating two adapters, for the ``grouped`` and ``mixed`` strategies.

Latency is per request (p50/p95, ms); req/s is requests over the wall time of the whole load;
errors count non-200 answers and exceptions. The model is the packaged all-MiniLM-L6-v2 on CPU
(``--model`` for another, e.g. a full-size random 7B folder on a GPU); the index is a few
files of the bundled Python tutorial.

The load generator runs on the same cores as the service, so it must cost little: by default
each client thread keeps one ``http.client`` connection (about 0.3 ms of CPU a request here);
``--client httpx`` (one ``httpx.Client`` per thread, 7-8 ms of CPU a request, more than the
service itself) and ``--client async`` (one asyncio loop, ``httpx.AsyncClient``) are kept for
comparison. Each HTTP row notes the CPU the service and the load generator spent per request
(from ``/proc``), so a row limited by the client shows it. ``--repeat`` runs each HTTP
configuration that many times, alternating on and off (the machine is noisy: read the ratios
within a run).

    .venv/bin/python bench/serve_load.py [--quick] [--clients 1,8,64] [--requests 4] [--repeat 2]
                                         [--model default] [--window-ms 5]
                                         [--client stdlib|httpx|async] [--no-adapters]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
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
    from app.factories import build_embedder, index_settings
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


def http_thread_load(name: str, url: str, path: str, body_for, clients: int, per_client: int,
                     kind: str = "stdlib") -> dict:
    """The same load from threads, each with one keep-alive connection: ``http.client`` (stdlib,
    the lightest) or an ``httpx.Client``."""
    import httpx

    local = threading.local()
    counter = iter(range(10**9))
    lock = threading.Lock()
    host, port = url.removeprefix("http://").split(":")

    def post(body: dict) -> tuple[int, bytes]:
        if kind == "httpx":
            if not hasattr(local, "http"):
                local.http = httpx.Client(base_url=url, timeout=300)
            response = local.http.post(path, json=body)
            return response.status_code, response.content
        if not hasattr(local, "http"):
            local.http = http.client.HTTPConnection(host, int(port), timeout=300)
        local.http.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
        response = local.http.getresponse()
        return response.status, response.read()

    def call(q: str) -> None:
        with lock:
            i = next(counter)
        status, content = post(body_for(i, q))
        if status != 200:
            raise RuntimeError(content[:200])

    thread_load(name, call, min(clients, 4), 1)   # warm-up
    return thread_load(name, call, clients, per_client)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(kind: str, served: Served, name: str, path: str, body_for, clients: int, per_client: int) -> dict:
    """One HTTP load against ``served``; the row notes the CPU per request of the service and of
    this process (the load generator), both measured around the whole load (warm-up included)."""
    server0, client0 = cpu_seconds(served.proc.pid), time.process_time()
    args = (name, served.url, path, body_for, clients, per_client)
    row = asyncio.run(http_load(*args)) if kind == "async" else http_thread_load(*args, kind=kind)
    server1, client1 = cpu_seconds(served.proc.pid), time.process_time()
    if server0 is not None and server1 is not None:
        n = row["requests"]
        row["note"] = (f"CPU per request: service {1000 * (server1 - server0) / n:.1f} ms, "
                       f"client {1000 * (client1 - client0) / n:.1f} ms")
    return row


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

    def batching(self) -> dict:
        """The service's batcher counters (requests, encode calls, texts) from /status."""
        import httpx

        return httpx.get(f"{self.url}/status", timeout=60).json()["batching"]

    def __exit__(self, *_) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def save_loras(model: str, folder: Path) -> str:
    """Two random LoRA adapters (query/value projections) for the model; returns RAG_LORA_ADAPTERS."""
    import torch
    from peft import LoraConfig, get_peft_model

    from app.factories import build_embedder
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
    parser.add_argument("--repeat", type=int, default=2, help="runs of each HTTP /search configuration")
    parser.add_argument("--client", choices=["stdlib", "httpx", "async"], default="stdlib",
                        help="HTTP load from threads with one http.client connection each (the lightest), "
                             "one httpx.Client each, or one asyncio loop (httpx.AsyncClient)")
    args = parser.parse_args()
    clients = [1, 8] if args.quick else [int(c) for c in args.clients.split(",")]
    per_client = 2 if args.quick else args.requests
    repeat = 1 if args.quick else args.repeat
    common.quiet_transformers()
    start = common.header("rag serve load", model=args.model, clients=clients, requests_per_client=per_client,
                          window_ms=args.window_ms, client=args.client, repeat=repeat)
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    rows: list[dict] = []
    try:
        data_dir = tmp / "data"
        build_index(data_dir, args.model, args.files)

        # in process: the baseline Searcher, then the service's batcher (no HTTP)
        from app.serve.runtime import Runtime, ServeOptions
        from app.factories import build_embedder
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
        ratios: dict[int, list[str]] = {c: [] for c in clients}
        inproc = {r["clients"]: r["req/s"] for r in rows if r["run"] == "in-process Searcher (baseline)"}
        for n in range(1, repeat + 1):
            rate: dict[tuple[bool, int], float] = {}
            for batching in (True, False):
                extra = ["--window-ms", str(args.window_ms)] + ([] if batching else ["--no-batching"])
                name = f"HTTP /search, batching {'on' if batching else 'off'}" + (f" #{n}" if repeat > 1 else "")
                with Served(data_dir, args.model, *extra) as served:
                    for c in clients:
                        before = served.batching()
                        row = load(args.client, served, name, "/search", search_body, c, per_client)
                        after = served.batching()
                        calls = max(after["encode_calls"] - before["encode_calls"], 1)
                        row["note"] = (f"{(after['texts'] - before['texts']) / calls:.1f} queries per encode call; "
                                       + row["note"])
                        rows.append(row)
                        rate[batching, c] = row["req/s"]
                    if batching and n == 1:   # the floor: HTTP and the store, no model
                        rows.append(load(args.client, served, "floor: HTTP /search mode=sparse, no model", "/search",
                                         lambda i, q: {"query": q, "k": 10, "mode": "sparse"}, max(clients),
                                         per_client))
            for c in clients:
                ratios[c].append(f"{rate[True, c] / rate[False, c]:.2f}x (on / in-process Searcher "
                                 f"{rate[True, c] / inproc[c]:.2f}x)")
        common.table(rows)
        for c in clients:
            print(f"# {c} clients: HTTP batching on/off {', '.join(ratios[c])}")

        if not args.no_adapters:
            spec = save_loras(args.model, tmp / "loras")
            c = max(clients)
            arows = []
            for strategy in ("grouped", "mixed"):
                with Served(data_dir, args.model, "--lora-adapters", spec, "--adapter-strategy", strategy,
                            "--window-ms", str(args.window_ms)) as served:
                    for label, pick in (("one adapter", lambda i: "a"), ("two adapters mixed", lambda i: "ab"[i % 2])):
                        body = lambda i, q, pick=pick: {"input": q, "input_type": "query", "adapter": pick(i)}  # noqa: E731
                        arows.append(load(args.client, served, f"/v1/embeddings {strategy}, {label}",
                                          "/v1/embeddings", body, c, per_client))
            common.table(arows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        common.footer(start)


if __name__ == "__main__":
    main()
