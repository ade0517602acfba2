"""The MCP tools through the SDK's own client: over stdio (`rag mcp`) and streamable HTTP (`rag serve`)."""

from __future__ import annotations

import json
import os
import shutil
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from app.serve.runtime import Runtime, ServeOptions
from app.settings import Settings

from .serve_helpers import running_server

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def payload(result) -> dict:
    """A tool result's structured content (or its JSON text)."""
    assert not result.is_error, result
    if result.structured_content is not None:
        data = result.structured_content
        return data.get("result", data) if set(data) == {"result"} else data
    return json.loads(result.content[0].text)


def stdio_params(data_dir) -> StdioServerParameters:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_DATA_DIR": str(data_dir), "RAG_CHUNK_TOKENS": "64",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}
    return StdioServerParameters(command=sys.executable, args=["-m", "app.cli", "mcp"], env=env, cwd=REPO)


async def check_tools(client, corpus, index_allowed: bool, collections=("documents",)) -> None:
    names = {t.name for t in (await client.list_tools()).tools}
    assert {"search", "list_collections", "status"} <= names
    assert ("index_folder" in names) == index_allowed
    found = payload(await client.call_tool("search", {"query": "vector database", "k": 2,
                                                      "instruction": "find passages about databases"}))
    assert len(found["results"]) == 2
    hit = found["results"][0]
    assert hit["source"].startswith(str(corpus)) and hit["text"] and isinstance(hit["score"], float)
    assert hit["location"]["chunk"] >= 1 and hit["location"]["end"] > hit["location"]["start"]
    only_md = payload(await client.call_tool("search", {"query": "notes", "file_types": ["md"]}))
    assert only_md["results"] and all(r["source"].endswith(".md") for r in only_md["results"])
    listed = payload(await client.call_tool("list_collections", {}))["collections"]
    assert "documents" in listed and set(listed) <= set(collections)
    status = payload(await client.call_tool("status", {}))
    assert status["collections"][0]["points"] > 0


async def test_tools_over_streamable_http_under_rag_serve(tmp_path, index_dir, corpus, default_embedder):
    data_dir = tmp_path / "data"
    shutil.copytree(index_dir, data_dir)
    runtime = Runtime(Settings(data_dir=data_dir, chunk_tokens=64), default_embedder, ServeOptions(mcp_index=True))
    with running_server(runtime) as url:
        async with Client(f"{url}/mcp") as client:
            await check_tools(client, corpus, index_allowed=True)
            job = payload(await client.call_tool("index_folder", {"path": str(corpus), "collection": "agents"}))
            assert job["state"] == "running" and job["collection"] == "agents"
        # `rag mcp` (stdio) while the service holds the store: its tools go through the service
        async with Client(stdio_params(data_dir)) as client:
            await check_tools(client, corpus, index_allowed=False, collections=("agents", "documents"))


async def test_tools_over_stdio_with_rag_mcp(tmp_path, index_dir, corpus):
    data_dir = tmp_path / "data"
    shutil.copytree(index_dir, data_dir)
    async with Client(stdio_params(data_dir)) as client:
        await check_tools(client, corpus, index_allowed=False)
