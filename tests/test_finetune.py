"""Fine-tuning: the loss, task-homogeneous batches, LoRA training and resumable generation."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from embedder import Embedder
from finetune.generate import QUERY_TASKS, QueryGenerator, generate_queries
from indexer.jsonl import read_jsonl
from finetune.losses import info_nce, task_homogeneous_batches
from finetune.train import TrainConfig, train_adapter

from .conftest import build_tiny_tokenizer


def test_info_nce_matches_hand_computation():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # two positives, one hard negative
    t = 0.5
    # query 0 logits: [1, 0, 0.6] / 0.5 -> loss0 = -log(e^2 / (e^2 + e^0 + e^1.2))
    l0 = -np.log(np.exp(2) / (np.exp(2) + np.exp(0) + np.exp(1.2)))
    l1 = -np.log(np.exp(2) / (np.exp(0) + np.exp(2) + np.exp(1.6)))
    assert info_nce(q, d, t).item() == pytest.approx((l0 + l1) / 2, rel=1e-5)
    # a perfectly separated batch at low temperature has ~zero loss
    assert info_nce(q, q, 0.02).item() < 1e-6
    with pytest.raises(ValueError, match="positive per query"):
        info_nce(q, d[:1], t)


def test_task_homogeneous_batches_mix_tasks_but_never_within_a_batch():
    items = [("question", i) for i in range(10)] + [("claim", i) for i in range(7)] + [("kw", i) for i in range(5)]
    batches = task_homogeneous_batches(items, lambda x: x[0], batch_size=4, seed=1)
    assert all(len({task for task, _ in b}) == 1 for b in batches)
    assert sorted(x for b in batches for x in b) == sorted(items)  # nothing lost (last partials kept)
    order = [b[0][0] for b in batches]
    assert order != sorted(order)  # tasks interleaved across training
    assert task_homogeneous_batches(items, lambda x: x[0], 4, seed=1) == batches  # deterministic
    dropped = task_homogeneous_batches(items, lambda x: x[0], 4, seed=1, drop_last=True)
    # kw: 5 = 4 + a lone one, merged into one batch of 5; the partial 2 (question) and 3 (claim) go
    assert sorted(len(b) for b in dropped) == [4, 4, 4, 5]
    with pytest.raises(ValueError, match="at least 2"):
        task_homogeneous_batches(items, lambda x: x[0], 1)


PASSAGES = {f"p{i}": text for i, text in enumerate([
    "Qdrant is a vector database written in Rust.",
    "The quick brown fox jumps over the lazy dog.",
    "Mistral models use grouped query attention.",
    "Embeddings map text to vectors close together.",
    "PDF files and Word documents are indexed.",
    "Cats and dogs are popular pets.",
])}
EXAMPLES = [{"query": f"about {text.split()[1]} {text.split()[2]}", "positive_id": pid,
             "instruction_task": task, "hard_negative_ids": [f"p{(int(pid[1:]) + 1) % 6}"]}
            for pid, text in PASSAGES.items() for task in ("question_answering", "fact_checking")]


def _fresh_tiny(tiny_mistral_dir):
    return Embedder.from_pretrained(str(tiny_mistral_dir), max_length=32)


def _loss(emb):
    with torch.no_grad():
        q = emb.embed_with_grad([emb.format_query(e["query"], task=e["instruction_task"]) for e in EXAMPLES[::2]])
        d = emb.embed_with_grad([PASSAGES[e["positive_id"]] for e in EXAMPLES[::2]])
    return info_nce(q, d, 0.05).item()


def test_lora_training_lowers_loss_and_loads_back(tiny_mistral_dir, tmp_path):
    emb = _fresh_tiny(tiny_mistral_dir)
    before = _loss(emb)
    config = TrainConfig(epochs=6, batch_size=6, learning_rate=5e-3, temperature=0.05, lora_r=4,
                         target_modules=("q_proj", "v_proj", "o_proj"), gradient_checkpointing=True)
    result = train_adapter(emb, EXAMPLES, PASSAGES, tmp_path / "adapter", config, progress=False)
    assert result.steps == 12 and len(result.losses) == 12
    after = _loss(emb)
    assert after < before * 0.7, (before, after)
    marker = json.loads((tmp_path / "adapter" / "rag_adapter.json").read_text())
    base = _fresh_tiny(tiny_mistral_dir)
    assert marker["base_model_id"] == base.fingerprint.model_id
    loaded = Embedder.from_pretrained(str(tiny_mistral_dir), adapter=str(tmp_path / "adapter"), max_length=32)
    assert _loss(loaded) == pytest.approx(after, rel=1e-4)
    assert loaded.fingerprint.adapter_id and loaded.fingerprint.key != base.fingerprint.key


def test_training_resumes_from_checkpoint(tiny_mistral_dir, tmp_path):
    config = TrainConfig(epochs=4, batch_size=6, learning_rate=5e-3, lora_r=4, checkpoint_every=3,
                         target_modules=("q_proj", "v_proj"), gradient_checkpointing=False)
    full = train_adapter(_fresh_tiny(tiny_mistral_dir), EXAMPLES, PASSAGES, tmp_path / "full", config, progress=False)

    def interrupt_at_5(step, loss):
        if step == 5:
            raise KeyboardInterrupt  # as a Ctrl-C (or kill) after step 5 would

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train_adapter(_fresh_tiny(tiny_mistral_dir), EXAMPLES, PASSAGES, out, config, progress=False,
                      on_step=interrupt_at_5)
    assert (out / "checkpoints" / "step-3").exists() and not (out / "adapter_config.json").exists()
    resumed = train_adapter(_fresh_tiny(tiny_mistral_dir), EXAMPLES, PASSAGES, out, config, progress=False)
    assert resumed.resumed_from == 3
    assert resumed.losses[:3] == full.losses[:3]
    assert resumed.losses == pytest.approx(full.losses, rel=1e-3)
    assert (out / "adapter_config.json").exists() and not (out / "checkpoints").exists()


def test_second_stage_continues_the_first_stage_adapter(tiny_mistral_dir, tmp_path):
    """--init-adapter: stage 2 starts from stage 1's weights (lr 0 leaves them as they were), keeps its
    LoRA shape, moves on from there with a real learning rate, and refuses an adapter of another base."""
    from safetensors.torch import load_file

    stage1 = TrainConfig(epochs=2, batch_size=6, learning_rate=5e-3, lora_r=4, target_modules=("q_proj", "v_proj"),
                         gradient_checkpointing=False)
    train_adapter(_fresh_tiny(tiny_mistral_dir), EXAMPLES, PASSAGES, tmp_path / "s1", stage1, progress=False)
    def weights(name):
        return load_file(tmp_path / name / "adapter_model.safetensors")

    first = weights("s1")

    frozen = replace(stage1, learning_rate=0.0, lora_r=16, init_adapter=str(tmp_path / "s1"))
    train_adapter(_fresh_tiny(tiny_mistral_dir), EXAMPLES, PASSAGES, tmp_path / "s2-frozen", frozen, progress=False)
    kept = weights("s2-frozen")
    assert kept.keys() == first.keys()  # stage 1's r=4 on q/v, not lora_r=16
    assert all(torch.equal(kept[k], first[k]) for k in first)

    moving = replace(frozen, learning_rate=5e-3)
    emb = _fresh_tiny(tiny_mistral_dir)
    train_adapter(emb, EXAMPLES, PASSAGES, tmp_path / "s2", moving, progress=False)
    second = weights("s2")
    assert any(not torch.equal(second[k], first[k]) for k in first)
    loaded = Embedder.from_pretrained(str(tiny_mistral_dir), adapter=str(tmp_path / "s2"), max_length=32)
    assert _loss(loaded) == pytest.approx(_loss(emb), rel=1e-4)

    marker = tmp_path / "s1" / "rag_adapter.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "base_model_id": "w:another"}))
    with pytest.raises(ValueError, match="trained on base model w:another"):
        train_adapter(_fresh_tiny(tiny_mistral_dir), EXAMPLES, PASSAGES, tmp_path / "s3", frozen, progress=False)


# -- generation ---------------------------------------------------------------------------------
def tiny_generator(max_new_tokens=6) -> QueryGenerator:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}")
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=1, vocab_size=1000,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=2))
    return QueryGenerator(lm, tok, "tiny-llama", max_new_tokens=max_new_tokens, batch_size=4)


def test_generation_is_resumable_and_datasets_loadable(tmp_path):
    gen = tiny_generator()
    out = tmp_path / "generated.jsonl"
    first = dict(list(PASSAGES.items())[:3])
    assert generate_queries(gen, first, out, tasks=["question", "claim"], progress=False) == 6
    with out.open("a") as fh:
        fh.write('{"query": "torn li')  # a kill mid-write
    assert generate_queries(gen, PASSAGES, out, tasks=["question", "claim"], progress=False) == 6
    records = read_jsonl(out)
    assert Counter((r["positive_id"], r["task"]) for r in records) == Counter(
        {(pid, t): 1 for pid in PASSAGES for t in ("question", "claim")})
    assert {r["instruction_task"] for r in records} == {"question_answering", "fact_checking"}
    import datasets

    clean = tmp_path / "clean.jsonl"
    clean.write_text("".join(json.dumps(r) + "\n" for r in records))
    ds = datasets.load_dataset("json", data_files=str(clean), split="train")
    assert len(ds) == 12 and set(ds.column_names) >= {"query", "positive_id", "task"}
    with pytest.raises(ValueError, match="question, keywords, claim"):
        generate_queries(gen, PASSAGES, out, tasks=["poem"], progress=False)


def test_prompt_is_few_shot_and_clips_long_passages():
    gen = tiny_generator()
    prompt = gen.prompt("word " * 2000, QUERY_TASKS["question"])
    assert prompt.count("Passage:") == 3 and "When was the Eiffel Tower completed?" in prompt
    assert len(gen.tokenizer(prompt)["input_ids"]) < 600


@pytest.mark.slow
def test_packaged_smollm2_writes_a_real_question():
    gen = QueryGenerator.from_pretrained("smollm2", max_new_tokens=24)
    passage = ("The Python tutorial explains that lists are mutable sequences. The append method adds "
               "an item to the end of a list, and pop removes the last item.")
    [query] = gen.complete([gen.prompt(passage, QUERY_TASKS["question"])])
    assert len(query.split()) >= 3 and "list" in query.lower()
