"""`rag eval --quantization none,8bit,4bit`: one run, several precisions, paired against the first (bitsandbytes on CPU)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from app.cli import main
from evaluation.beir import BeirDataset, write_beir
from tests.test_finetune_run import TOPICS

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                                reason="bitsandbytes not installed: pip install bitsandbytes")


def test_precisions_are_paired_with_full_precision(tmp_path, monkeypatch, capsys, tiny_mistral_dir):
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_MODEL", str(tiny_mistral_dir))
    monkeypatch.setenv("RAG_MAX_LENGTH", "64")
    queries = {f"q{i}": text.split(",")[0] for i, text in enumerate(TOPICS.values())}
    qrels = {f"q{i}": {pid: 1} for i, pid in enumerate(TOPICS)}
    write_beir(tmp_path / "beir", BeirDataset({k: ("", v) for k, v in TOPICS.items()}, queries, qrels))
    assert main(["eval", str(tmp_path / "beir"), "--mode", "dense", "--quantization", "none,8bit,4bit", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reference"] == "none" and list(out["precisions"]) == ["none", "8bit", "4bit"]
    assert [p["loaded_as"] for p in out["precisions"].values()] == ["none", "8bit", "4bit"]
    assert out["precisions"]["none"]["vs_none"] == {}
    for q in ("8bit", "4bit"):
        s = out["precisions"][q]["vs_none"]["ndcg@10"]
        assert s["queries"] == len(queries) and 0 <= s["p_value"] <= 1
    assert main(["eval", str(tmp_path / "beir"), "--mode", "dense", "--quantization", "none,4bit"]) == 0
    text = capsys.readouterr().out
    assert "(reference)" in text and "4bit" in text and "p = " in text
    with pytest.raises(SystemExit, match="none, 8bit, 4bit"):
        main(["eval", str(tmp_path / "beir"), "--quantization", "fp8"])
