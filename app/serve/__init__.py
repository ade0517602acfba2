"""``rag serve``: one process that owns the embedder(s) and the store and serves every client.

- :mod:`.runtime` builds what is served from the settings (search facade, batcher, adapters, jobs);
- :mod:`.api` is the HTTP JSON API (FastAPI; OpenAPI at ``/openapi.json``, docs at ``/docs``);
- :mod:`.batching` packs concurrent requests into the embedder's token-budget batches;
- :mod:`.adapters` serves several LoRA adapters on one base model;
- :mod:`.jobs` runs index jobs in the background, one per collection;
- :mod:`.endpoint` is the ``serve.json`` file that tells clients where the service runs;
- :mod:`.client` is what ``rag search/status/index`` and the page use when a service runs;
- :mod:`.mcp` exposes the same search to agents over MCP (stdio and streamable HTTP).
"""
