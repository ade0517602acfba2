"""`rag finetune ablate` at tiny size: every refinement step switched off in turn, paired against the full recipe."""

from __future__ import annotations

import copy
import json

import pytest

from app.cli import main
from finetune.ablate import ARM_NAMES, run_ablation
from indexer.jsonl import read_jsonl
from finetune.plots import before_after_plot, loss_plot
from finetune.train import TrainConfig
from tests.test_finetune_run import BAD, GOOD, TOPICS

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def workdir(tmp_path):
    rows = [{"_id": pid, "text": text} for pid, text in TOPICS.items()]
    (tmp_path / "passages.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    generated = [{"query": q, "positive_id": pid, "task": task} for pid, qs in GOOD.items() for task, q in qs]
    generated += [{"query": q, "positive_id": pid, "task": task} for pid, task, q in BAD]
    # a second, near-identical wording of some queries: what dedupe removes
    generated += [{"query": q + "?", "positive_id": pid, "task": "question"} for pid, qs in GOOD.items()
                  for task, q in qs if task == "question"]
    (tmp_path / "generated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in generated))
    return tmp_path


def test_every_arm_is_paired_with_the_full_recipe(tiny_embedder, workdir):
    config = TrainConfig(batch_size=4, max_steps=2, temperature=0.05, gradient_checkpointing=False)
    report = run_ablation(workdir, tiny_embedder, lambda: copy.deepcopy(tiny_embedder), config,
                          top_k=6, negatives=1, heldout_fraction=0.25, progress=False)
    arms = report["arms"]
    assert list(arms) == list(ARM_NAMES) and arms["full"]["vs_full"] == {}
    n_held = report["heldout_queries"]
    assert n_held > 0
    for name in ARM_NAMES[1:]:
        s = arms[name]["vs_full"]["ndcg@10"]
        assert s["queries"] == n_held and 0 <= s["p_value"] <= 1 and s["ci95"][0] <= s["delta"] <= s["ci95"][1]
    full = arms["full"]["train_examples"]
    # the data each switch changes, and only that
    assert arms["no_dedupe"]["train_examples"] > full
    assert arms["no_false_positive_filter"]["train_examples"] >= full
    assert arms["random_batches"]["train_examples"] == full == arms["no_hard_negatives"]["train_examples"]
    assert 0 < arms["single_task"]["train_examples"] < full
    single = read_jsonl(workdir / "ablation" / "single_task" / "train.jsonl")
    assert len({r["instruction_task"] for r in single}) == 3  # the split keeps all; training used one
    # no training example of any arm points at a held-out page
    held = {line.split("\t")[1] for line in
            (workdir / "ablation" / "full" / "heldout" / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    assert held
    card_dir = workdir / "ablation" / "full" / "adapter"
    card = json.loads((card_dir / "training_card.json").read_text())
    assert card["eval_heldout"]["significance"]["ndcg@10"]["queries"] == n_held
    assert all((card_dir / name).read_bytes().startswith(PNG) for name in card["plots"])
    assert "![ablation.png](ablation.png)" in (card_dir / "README.md").read_text()
    assert (card_dir / "ablation.png").read_bytes().startswith(PNG)
    table = (card_dir / "ablation.md").read_text()
    assert table.count("\n| ") == len(ARM_NAMES) + 1 and "(reference)" in table
    assert json.loads((card_dir / "ablation.json").read_text())["arms"].keys() == arms.keys()


def test_cli_ablate_names_unknown_arms(workdir, tmp_path, monkeypatch, capsys, tiny_mistral_dir):
    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_MODEL", str(tiny_mistral_dir))
    monkeypatch.setenv("RAG_MAX_LENGTH", "64")
    with pytest.raises(SystemExit, match="no_dedupe"):
        main(["finetune", "ablate", "--workdir", str(workdir), "--arms", "nope"])
    assert main(["finetune", "ablate", "--workdir", str(workdir), "--arms", "no_hard_negatives", "--top-k", "6",
                 "--negatives", "1", "--batch-size", "4", "--max-steps", "1", "--heldout", "0.25",
                 "--no-gradient-checkpointing"]) == 0
    out = capsys.readouterr().out
    assert "| no_hard_negatives |" in out and "| full |" in out and "ablation.png" in out


def test_plots_are_png(tmp_path):
    assert loss_plot([3.0, 2.5, 2.0, 1.9, 1.5] * 3, tmp_path / "loss.png").read_bytes().startswith(PNG)
    before = {"q1": {"ndcg@10": 0.0}, "q2": {"ndcg@10": 1.0}}
    after = {"q1": {"ndcg@10": 0.5}, "q2": {"ndcg@10": 1.0}}
    assert before_after_plot(before, after, tmp_path / "s.png").read_bytes().startswith(PNG)
    with pytest.raises(ValueError, match="no losses"):
        loss_plot([], tmp_path / "x.png")
