"""Several LoRA adapters on one base model: a mixed batch matches each adapter alone (and the
adapter loaded the usual way), in both strategies, and the embeddings API chooses them per request."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from app.serve.adapters import AdapterSet, parse_adapters
from app.serve.runtime import Runtime, ServeOptions
from app.settings import Settings
from embedder import Embedder

from .conftest import CORPUS, build_tiny_mistral
from .serve_helpers import running_server


def save_lora(folder, seed: int):
    from peft import LoraConfig, get_peft_model

    base = build_tiny_mistral()   # seeds 0: the base weights of tiny_mistral_dir
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                            init_lora_weights=False))
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def lora_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("loras")
    return {"legal": save_lora(root / "legal", 1), "code": save_lora(root / "code", 2)}


def cos(a, b):
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.parametrize("strategy", ["grouped", "mixed"])
def test_two_adapters_in_one_batch_match_each_alone(tiny_embedder, tiny_mistral_dir, lora_dirs, strategy):
    adapters = AdapterSet(tiny_embedder, lora_dirs, strategy)
    texts = CORPUS[:6]
    names = ["legal", "code", None, "code", "legal", None]
    mixed = adapters.encode(texts, names)
    for name in ("legal", "code"):
        rows = [i for i, n in enumerate(names) if n == name]
        alone = adapters.encode([texts[i] for i in rows], [name] * len(rows))
        assert cos(mixed[rows], alone).min() >= 0.9999
        reference = Embedder.from_pretrained(str(tiny_mistral_dir), adapter=str(lora_dirs[name]), max_length=64)
        assert cos(mixed[rows], reference.encode([texts[i] for i in rows])).min() >= 0.9999
    base_rows = [2, 5]
    assert cos(mixed[base_rows], tiny_embedder.encode([texts[i] for i in base_rows])).min() >= 0.9999
    # the adapters really change the vectors
    assert cos(mixed[[0]], tiny_embedder.encode([texts[0]]))[0] < 0.999
    assert cos(mixed[[0]], adapters.encode([texts[0]], ["code"]))[0] < 0.999


def test_unknown_adapter_and_bad_spec_name_the_fix(tiny_embedder, lora_dirs, tmp_path):
    adapters = AdapterSet(tiny_embedder, lora_dirs)
    with pytest.raises(KeyError, match="loaded adapters: legal, code"):
        adapters.encode(["x"], ["tax"])
    with pytest.raises(ValueError, match="NAME=PATH"):
        parse_adapters("legal")
    assert parse_adapters("a=/x, b=/y") == {"a": Path("/x"), "b": Path("/y")}
    with pytest.raises(Exception, match="adapter_config.json"):
        AdapterSet(tiny_embedder, {"nope": tmp_path})


def test_embeddings_api_chooses_the_adapter_per_request(tmp_path, tiny_embedder, lora_dirs):
    spec = ",".join(f"{k}={v}" for k, v in lora_dirs.items())
    runtime = Runtime(Settings(data_dir=tmp_path), tiny_embedder, ServeOptions(adapters=spec))
    with running_server(runtime, mcp_http=False) as url:
        def embed(adapter):
            body = {"input": CORPUS[:2], **({"adapter": adapter} if adapter else {})}
            response = httpx.post(f"{url}/v1/embeddings", json=body, timeout=60)
            assert response.status_code == 200, response.text
            return np.array([d["embedding"] for d in response.json()["data"]])

        legal, code, base = embed("legal"), embed("code"), embed(None)
        status = httpx.get(f"{url}/status").json()
    direct = AdapterSet(tiny_embedder, lora_dirs)
    assert cos(legal, direct.encode(CORPUS[:2], ["legal"] * 2)).min() >= 0.9999
    assert cos(code, direct.encode(CORPUS[:2], ["code"] * 2)).min() >= 0.9999
    assert cos(base, tiny_embedder.encode(CORPUS[:2])).min() >= 0.9999
    assert cos(legal, code).max() < 0.999
    assert status["adapters"] == ["legal", "code"]
