"""The deployment contract: compose.yaml, the Dockerfile, and server collection options.

No Docker engine is needed: the files are parsed and checked against the code they configure.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
import yaml
from qdrant_client import QdrantClient, models

from app.settings import Settings
from indexer.store import CollectionOptions, EdgeStore, QdrantClientStore, collection_config, open_store

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SETTINGS_ENV = {"RAG_" + name.upper() for name in Settings.model_fields}
_VAR = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def qdrant_services() -> dict[str, dict]:
    return {n: s for n, s in SERVICES.items() if str(s.get("image", "")).startswith("qdrant/qdrant:")}


def app_services() -> dict[str, dict]:
    """Services that run our image (built from the Dockerfile)."""
    return {n: s for n, s in SERVICES.items() if "build" in s}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` for the given environment."""
    def sub(m: re.Match) -> str:
        name, op, arg = m.groups()
        if env.get(name):
            return env[name]
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg or ""
    return _VAR.sub(sub, str(value))


# -- compose.yaml -------------------------------------------------------------------------------
def test_core_services_and_profiles():
    assert {"qdrant", "app", "ui", "indexer"} <= SERVICES.keys()
    default = {n for n, s in SERVICES.items() if not s.get("profiles")}
    assert default == {"qdrant", "app", "ui"}, "plain `docker compose up` should start qdrant, the service and the UI"
    assert SERVICES["indexer"]["profiles"] == ["index"]
    assert SERVICES["app"]["command"] == ["serve", "--host", "0.0.0.0", "--port", "8800"]
    assert SERVICES["ui"]["command"] == ["ui", "--host", "0.0.0.0", "--port", "8501"]
    assert SERVICES["indexer"]["command"] == ["index", "/docs"]
    assert "${DOCS_DIR:-./samples}:/docs:ro" in SERVICES["indexer"]["volumes"]
    assert SERVICES["indexer"]["environment"]["RAG_WORKERS"] == "${RAG_WORKERS:-1}"
    assert (ROOT / "samples").is_dir()


def test_qdrant_image_is_pinned_to_a_release_with_collection_metadata():
    images = {s["image"] for s in qdrant_services().values()}
    assert len(images) == 1 and len(qdrant_services()) == 4  # single node + 3 cluster peers
    tag = images.pop().split(":", 1)[1]
    m = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", tag)
    assert m, f"pin a release tag, not {tag!r}"
    assert tuple(map(int, m.groups())) >= (1, 16, 0)


def test_every_published_port_is_bound_to_localhost():
    published = [(n, p) for n, s in SERVICES.items() for p in s.get("ports", [])]
    assert len(published) >= 5
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
    assert all("network_mode" not in s for s in SERVICES.values())
    assert "127.0.0.1:6333:6333" in SERVICES["qdrant"]["ports"]
    assert "127.0.0.1:6334:6334" in SERVICES["qdrant"]["ports"]
    assert "127.0.0.1:8800:8800" in SERVICES["app"]["ports"]
    assert "127.0.0.1:8501:8501" in SERVICES["ui"]["ports"]
    hosts = [p.rsplit(":", 2)[0] + ":" + p.rsplit(":", 2)[1] for _, p in published]
    assert len(hosts) == len(set(hosts)), "two services publish the same host port"


def test_api_key_comes_from_the_environment_and_is_required():
    for name, service in qdrant_services().items():
        key = service["environment"]["QDRANT__SERVICE__API_KEY"]
        assert key.startswith("${RAG_QDRANT_API_KEY:?"), name
        with pytest.raises(KeyError, match="RAG_QDRANT_API_KEY"):
            interpolate(key, {})
    for name, service in app_services().items():
        assert service["environment"]["RAG_QDRANT_API_KEY"].startswith("${RAG_QDRANT_API_KEY"), name


def test_app_environment_names_are_real_settings():
    assert Settings.model_config["env_prefix"] == "RAG_"
    for name, service in app_services().items():
        rag_vars = {k for k in service["environment"] if k.startswith("RAG_")}
        # RAG_API_KEY is a secret `rag serve` reads at start, not a setting
        assert rag_vars - SETTINGS_ENV - {"RAG_API_KEY"} == set(), f"{name}: unknown settings"
        assert {"RAG_QDRANT_URL", "RAG_QDRANT_API_KEY", "RAG_MODEL"} <= rag_vars


@pytest.mark.parametrize(("service", "host", "shards", "replication"),
                         [("app", "qdrant", None, None), ("app-cluster", "qdrant-node1", 6, 2)])
def test_app_settings_resolve_and_point_at_qdrant(monkeypatch, service, host, shards, replication):
    env = {k: interpolate(v, {"RAG_QDRANT_API_KEY": "secret", "RAG_API_KEY": "key"})
           for k, v in SERVICES[service]["environment"].items()}
    for var in list(SETTINGS_ENV):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings()
    url = urlparse(settings.qdrant_url)
    assert (url.scheme, url.hostname, url.port) == ("http", host, 6333)
    assert "qdrant/qdrant" in SERVICES[host]["image"]
    assert settings.api_key() == "secret" and settings.model == "default"
    assert settings.collection_options() == CollectionOptions(shards, replication, False, False)
    assert host in dependency_closure(service)


def dependency_closure(service: str) -> set[str]:
    seen, todo = set(), [service]
    while todo:
        deps = SERVICES[todo.pop()].get("depends_on", {})
        for dep, cond in deps.items():
            assert cond["condition"] == "service_healthy"
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_qdrant_services_have_a_healthcheck_without_curl():
    for name, service in qdrant_services().items():
        test = " ".join(service["healthcheck"]["test"])
        assert "curl" not in test and "wget" not in test and "/dev/tcp/127.0.0.1/6333" in test, name
        assert "/readyz" in test
    assert "healthcheck" in SERVICES["app"] and "/health" in " ".join(SERVICES["app"]["healthcheck"]["test"])
    assert "healthcheck" in SERVICES["ui"]


def test_the_service_bound_beyond_loopback_requires_an_api_key():
    key = SERVICES["app"]["environment"]["RAG_API_KEY"]
    assert key.startswith("${RAG_API_KEY:?")
    with pytest.raises(KeyError, match="RAG_API_KEY"):
        interpolate(key, {})


def test_volumes_are_declared_and_not_shared_between_qdrant_nodes():
    declared = set(COMPOSE["volumes"])
    storage = []
    for name, service in SERVICES.items():
        for vol in service.get("volumes", []):
            source, target = vol.split(":")[:2]
            if not source.startswith((".", "/", "$", "~")):
                assert source in declared, (name, source)
            if target == "/qdrant/storage":
                storage.append(source)
    assert sorted(storage) == sorted(set(storage)) and len(storage) == 4
    assert "hf-cache:/cache/huggingface" in SERVICES["app"]["volumes"]


def test_cluster_profile_has_three_peers_bootstrapping_from_node1():
    peers = {n: s for n, s in qdrant_services().items() if s.get("profiles") == ["cluster"]}
    assert sorted(peers) == ["qdrant-node1", "qdrant-node2", "qdrant-node3"]
    for name, service in peers.items():
        assert service["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert service["environment"]["QDRANT__CLUSTER__P2P__PORT"] == "6335"
        cmd = service["command"]
        if name == "qdrant-node1":
            assert cmd[cmd.index("--uri") + 1] == "http://qdrant-node1:6335" and "--bootstrap" not in cmd
        else:
            assert cmd[cmd.index("--bootstrap") + 1] == "http://qdrant-node1:6335"
            assert "qdrant-node1" in service["depends_on"]
    assert SERVICES["app-cluster"]["profiles"] == ["cluster"]


# -- Dockerfile ---------------------------------------------------------------------------------
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_dockerfile_pins_torch_like_pyproject_and_runs_rag():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.13.0" in deps
    runs = [arg for op, arg in instructions if op == "RUN"]
    assert any(re.search(r"pip install torch==2\.13\.0 --index-url", r) for r in runs)
    assert any(re.search(r'pip install "?\.(\[scale\])?"?( |$)', r) for r in runs)  # with Ray for --workers
    assert runs.index(next(r for r in runs if "torch==" in r)) < runs.index(next(r for r in runs if re.search(r"install \"?\.", r)))
    assert json.loads(dict(instructions)["ENTRYPOINT"]) == ["rag"]
    assert dict(instructions)["EXPOSE"] == "8501 8800"
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_dockerignore_keeps_what_the_image_copies():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    assert {".venv", ".git", "tests"} <= set(patterns)
    copied = [p for op, arg in dockerfile_instructions() if op == "COPY" for p in arg.split()[:-1]]
    assert {"pyproject.toml", "README.md", "app", "indexer", "embedder", "finetune"} <= set(copied)
    for path in copied:
        assert (ROOT / path).exists(), path
        assert not any(fnmatch.fnmatch(path, pat) for pat in patterns), f"{path} is excluded by .dockerignore"


# -- server collection options ------------------------------------------------------------------
def test_collection_config_defaults_to_a_plain_collection():
    kwargs = collection_config(384)
    assert set(kwargs) == {"vectors_config", "sparse_vectors_config"}
    dense = kwargs["vectors_config"]["dense"]
    assert (dense.size, dense.distance, dense.on_disk) == (384, models.Distance.COSINE, None)
    assert kwargs["sparse_vectors_config"]["bm25"].modifier == models.Modifier.IDF


def test_collection_config_forwards_every_option():
    opts = CollectionOptions(shard_number=6, replication_factor=2, on_disk=True, int8=True)
    kwargs = collection_config(4096, opts)
    assert kwargs["shard_number"] == 6 and kwargs["replication_factor"] == 2
    assert kwargs["vectors_config"]["dense"].on_disk is True
    scalar = kwargs["quantization_config"].scalar
    assert scalar.type == models.ScalarType.INT8 and scalar.always_ram is True
    assert "quantization_config" not in collection_config(8, CollectionOptions(on_disk=True))


@pytest.mark.parametrize(("field", "value"), [("shard_number", 0), ("replication_factor", -1),
                                              ("shard_number", True), ("replication_factor", 1.5)])
def test_collection_options_reject_nonsense(field, value):
    env = {"shard_number": "RAG_SHARDS", "replication_factor": "RAG_REPLICATION"}[field]
    with pytest.raises(ValueError, match=env):
        CollectionOptions(**{field: value})


def test_store_creates_collections_with_its_options():
    opts = CollectionOptions(shard_number=3, replication_factor=2, on_disk=True, int8=True)
    store = QdrantClientStore(QdrantClient(":memory:"), options=opts)
    calls = []
    real = store.client.create_collection
    store.client.create_collection = lambda *a, **kw: calls.append(kw) or real(*a, **kw)
    store.create_collection("c", 8, {"k": 1})
    assert len(calls) == 1 and calls[0]["metadata"] == {"k": 1}
    expected = collection_config(8, opts)
    assert calls[0]["shard_number"] == 3 and calls[0]["replication_factor"] == 2
    assert calls[0]["quantization_config"] == expected["quantization_config"]
    assert store.client.get_collection("c").config.params.vectors["dense"].on_disk is True  # kept locally
    store.close()


def test_settings_reach_the_server_store(monkeypatch, tmp_path, caplog):
    from app.factories import build_store

    monkeypatch.setenv("RAG_SHARDS", "4")
    monkeypatch.setenv("RAG_REPLICATION", "")
    monkeypatch.setenv("RAG_INT8", "true")
    seen, server = {}, SimpleNamespace()
    monkeypatch.setattr(QdrantClientStore, "connect",
                        classmethod(lambda cls, url, **kw: seen.update(url=url, **kw) or server))
    settings = Settings(qdrant_url="http://qdrant:6333", data_dir=tmp_path, fusion="rrf")
    assert build_store(settings) is server and server.fusion == "rrf"
    assert seen["url"] == "http://qdrant:6333"
    assert seen["options"] == CollectionOptions(shard_number=4, replication_factor=None, int8=True)
    with caplog.at_level(logging.WARNING):
        store = open_store(None, None, tmp_path / "edge", options=seen["options"])
    assert isinstance(store, EdgeStore) and "RAG_SHARDS" in caplog.text
    store.close()
