"""Heading -> section training pairs from a docs folder (``rag finetune --pairs structure``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main
from finetune import run
from finetune.structure import collect_sections, title_pairs
from indexer.extract.sections import html_sections, text_sections
from indexer.jsonl import read_jsonl, write_jsonl

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
BODY = " ".join(["word"] * 40)


def test_rst_markdown_and_html_sections():
    rst = f"Title here\n==========\n\nIntro {BODY}\n\nSub part one\n------------\n\nSub text {BODY}\n"
    assert [t for t, _ in text_sections(rst)] == ["Title here", "Sub part one"]
    assert text_sections(rst).__next__()[1].startswith("Intro") and "Sub text" not in next(text_sections(rst))[1]
    md = f"# Getting started\n\nStart {BODY}\n\n## Install the tool\n\nRun it {BODY}\n"
    assert [t for t, _ in text_sections(md)] == ["Getting started", "Install the tool"]
    html = (f"<html><body><h1>2.1. Main page title<a class='headerlink'>¶</a></h1><p>Lead {BODY}</p>"
            f"<h2>Second heading</h2><p>Other <b>bold</b> {BODY}</p><script>x=1</script></body></html>")
    got = list(html_sections(html))
    assert [t for t, _ in got] == ["Main page title", "Second heading"]
    assert got[0][1].startswith("Lead") and "Other" not in got[0][1] and "bold" in got[1][1] and "x=1" not in got[1][1]


def test_pairs_need_unique_headings(tmp_path):
    (tmp_path / "a.md").write_text(f"# Examples\n\n{BODY}\n\n# Using the cache well\n\n{BODY} cache\n")
    (tmp_path / "b.md").write_text(f"# Examples\n\n{BODY}\n\n# Reading config files\n\n{BODY} config\n")
    sections = collect_sections(tmp_path, min_words=30)
    assert [s.id for s in sections] == ["a.md#0", "a.md#1", "b.md#0", "b.md#1"]
    pairs = title_pairs(sections)
    assert [p["query"] for p in pairs] == ["Using the cache well", "Reading config files"]
    assert {p["task"] for p in pairs} == {"title"} and pairs[0]["positive_id"] == "a.md#1"
    assert collect_sections(tmp_path, exclude=("a.*",))[0].page == "b.md"
    with pytest.raises(FileNotFoundError, match="--docs"):
        collect_sections(tmp_path / "missing")


def test_split_holds_out_whole_pages(tmp_path):
    n = run.step_structure(tmp_path, SAMPLES)
    passages = read_jsonl(tmp_path / "passages.jsonl")
    assert n >= 50 and {p["page"] for p in passages} >= {"python-howto/sorting.html", "python-tutorial/classes.rst"}
    rows = read_jsonl(tmp_path / "generated.jsonl")
    # as after refine and mine, with every other passage as a negative
    for name in ("screened.jsonl", "mined.jsonl"):
        write_jsonl(tmp_path / name, [{**r, "hard_negative_ids": [p["_id"] for p in passages[:30]]}
                                          for r in rows])
    run.step_split(tmp_path, heldout_fraction=0.3)
    page = {p["_id"]: p["page"] for p in passages}
    train = read_jsonl(tmp_path / "train.jsonl")
    held_ids = {r["positive_id"] for r in rows} - {r["positive_id"] for r in train}
    held_pages = {page[i] for i in held_ids}
    assert held_pages and not held_pages & {page[r["positive_id"]] for r in train}
    assert not any(page[neg] in held_pages for r in train for neg in r["hard_negative_ids"])


def test_cli_structure_pairs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    work = tmp_path / "work"
    assert main(["finetune", "run", "--pairs", "structure", "--docs", str(SAMPLES / "python-howto"),
                 "--workdir", str(work), "--negatives", "1", "--batch-size", "4", "--max-steps", "2",
                 "--heldout", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["generated_now"] >= 10
    assert "filter_false_positives" not in out["refine"]  # pairs true by construction: no filter
    assert "after" in out["eval"] and (work / "adapter" / "training_card.json").exists()
    with pytest.raises(SystemExit, match="--docs"):
        main(["finetune", "run", "--pairs", "structure", "--workdir", str(work)])
