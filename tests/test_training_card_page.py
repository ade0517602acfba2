"""The search page's model panel shows the adapter's training card: held-out result and plots."""

from __future__ import annotations

import json

from embedder import Embedder
from finetune.plots import before_after_plot, loss_plot
from finetune.train import TrainConfig, train_adapter
from tests.test_app import page


def test_model_panel_shows_the_training_card(monkeypatch, tmp_path, tiny_mistral_dir):
    embedder = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64)
    passages = {"a": "bread dough rises overnight", "b": "jupiter is a gas giant", "c": "violins have four strings"}
    examples = [{"query": q, "positive_id": p, "instruction_task": "web_search"}
                for q, p in (("bread", "a"), ("planets", "b"), ("violin", "c"))]
    adapter = tmp_path / "adapter"
    result = train_adapter(embedder, examples, passages, adapter,
                           TrainConfig(batch_size=3, max_steps=1, gradient_checkpointing=False), progress=False)
    loss_plot(result.losses, adapter / "loss.png")
    before = {"q1": {"ndcg@10": 0.2}, "q2": {"ndcg@10": 0.5}}
    after = {"q1": {"ndcg@10": 0.6}, "q2": {"ndcg@10": 0.5}}
    before_after_plot(before, after, adapter / "before_after.png")
    sig = {"delta": 0.2, "ci95": [0.0, 0.4], "p_value": 0.5, "queries": 2, "better": 1, "worse": 0}
    (adapter / "training_card.json").write_text(json.dumps({"eval_heldout": {
        "before": {"ndcg@10": 0.35}, "after": {"ndcg@10": 0.55}, "significance": {"ndcg@10": sig}}}))

    at = page(monkeypatch, tmp_path / "empty", RAG_MODEL=str(tiny_mistral_dir), RAG_ADAPTER=str(adapter))
    card = [e for e in at.sidebar.expander if e.label == "Training card"]
    assert len(card) == 1
    assert "0.350 → 0.550" in card[0].markdown[0].value and "p = 0.500" in card[0].markdown[0].value
    images = [c for c in card[0].children.values() if getattr(c, "type", None) == "image"]
    assert len(images) == 2  # loss and before/after; no ablation.png in this folder

    monkeypatch.delenv("RAG_ADAPTER")
    bare = page(monkeypatch, tmp_path / "empty", RAG_MODEL=str(tiny_mistral_dir))
    assert not [e for e in bare.sidebar.expander if e.label == "Training card"]
