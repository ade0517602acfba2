"""The one settings object: RAG_* environment variables, overridden by CLI flags."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.cli import build_parser, load_settings
from app.settings import Settings


def test_environment_then_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_MODEL", "/models/from-env")
    monkeypatch.setenv("RAG_COLLECTION", "env-collection")
    monkeypatch.setenv("RAG_QUANTIZATION", "8bit")
    monkeypatch.setenv("RAG_QDRANT_API_KEY", "secret")
    args = build_parser().parse_args(["search", "q", "--collection", "flag-collection",
                                      "--data-dir", str(tmp_path), "--quantization", "4bit"])
    settings = load_settings(args)
    assert settings.model == "/models/from-env"             # env, no flag
    assert settings.collection == "flag-collection"         # flag beats env
    assert settings.quantization == "4bit" and settings.data_dir == tmp_path
    assert settings.api_key() == "secret" and "secret" not in repr(settings)  # kept out of logs
    config = settings.embedder_config()
    assert (config.model, config.quantization) == ("/models/from-env", "4bit")


def test_bad_values_name_the_allowed_ones(monkeypatch):
    monkeypatch.setenv("RAG_QUANTIZATION", "3bit")
    with pytest.raises(ValidationError, match="none.*8bit.*4bit"):
        Settings()


def test_cpu_batch_budget_defaults_by_device(monkeypatch, tiny_mistral_dir):
    from embedder import Embedder

    monkeypatch.delenv("RAG_BATCH_TOKENS", raising=False)
    config = Settings(model=str(tiny_mistral_dir)).embedder_config()
    assert config.batch_tokens is None                      # left to the embedder, by device
    embedder = Embedder.from_config(config)
    assert embedder.batch_tokens == 2048    # the CPU budget
    assert not embedder.compiled            # compile's default (None) is off on a CPU
    monkeypatch.setenv("RAG_BATCH_TOKENS", "100")
    assert Settings(max_length=512).embedder_config().batch_tokens == 512  # never below one text


def test_packing_and_compile_reach_the_embedder(monkeypatch):
    monkeypatch.delenv("RAG_PACKING", raising=False)
    config = Settings().embedder_config()
    assert (config.packing, config.compile) == ("auto", None)
    monkeypatch.setenv("RAG_PACKING", "off")
    monkeypatch.setenv("RAG_COMPILE", "true")
    config = Settings().embedder_config()
    assert (config.packing, config.compile) == ("off", True)
    args = build_parser().parse_args(["search", "q", "--packing", "on"])
    assert load_settings(args).embedder_config().packing == "on"
    monkeypatch.setenv("RAG_PACKING", "sometimes")
    with pytest.raises(ValidationError, match="auto.*on.*off"):
        Settings()
