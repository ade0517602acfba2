"""The embedder against the E5-Mistral model card's reference code, quantization, adapters, errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embedder import Embedder, EmbedderConfig, EmbedderError, plan_batches
from embedder.instructions import TASKS, format_instructed_query, resolve_instruction
from embedder.pooling import last_token_pool, mean_pool, pool
from embedder.spec import resolve_spec

from .conftest import build_tiny_mistral, save_tiny_mistral

TEXTS = [
    "how do vector databases index embeddings?",
    "",
    "Qdrant is a vector database written in Rust. " * 30,  # longer than max_length: truncated
    "cats",
    "Embeddings map text to vectors; similar texts land close together.",
]


# -- the model card's reference code, verbatim in substance -------------------------------------
def card_last_token_pool(last_hidden_states, attention_mask):
    left_padding = attention_mask[:, -1].sum() == attention_mask.shape[0]
    if left_padding:
        return last_hidden_states[:, -1]
    sequence_lengths = attention_mask.sum(dim=1) - 1
    batch_size = last_hidden_states.shape[0]
    return last_hidden_states[torch.arange(batch_size), sequence_lengths]


def card_embed(model, tokenizer, input_texts, max_length):
    batch_dict = tokenizer(input_texts, max_length=max_length - 1, return_attention_mask=False,
                           padding=False, truncation=True)
    batch_dict["input_ids"] = [ids + [tokenizer.eos_token_id] for ids in batch_dict["input_ids"]]
    batch_dict = tokenizer.pad(batch_dict, padding=True, return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**batch_dict)
    embeddings = card_last_token_pool(outputs.last_hidden_state, batch_dict["attention_mask"])
    return F.normalize(embeddings, p=2, dim=1).numpy()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("padding_side", ["left", "right"])
@pytest.mark.parametrize("instructed", [True, False])
def test_matches_model_card_reference(tiny_mistral_dir, padding_side, instructed):
    emb = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=32, batch_tokens=64)
    emb.tokenizer.padding_side = padding_side
    task = TASKS["question_answering"]
    texts = [format_instructed_query(task, t) for t in TEXTS] if instructed else TEXTS
    ours = emb.embed_queries(TEXTS, task="question_answering") if instructed else emb.embed_documents(TEXTS)
    ref_tok = copy.deepcopy(emb.tokenizer)
    ref = card_embed(emb.model, ref_tok, texts, max_length=32)
    assert ours.shape == (len(TEXTS), 64)
    assert cosines(ours, ref).min() >= 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # the instruction must actually reach the model: instructed vectors differ from plain ones
    if instructed:
        assert cosines(ours, emb.embed_documents(TEXTS)).min() < 0.999


def test_eos_appended_after_truncation(tiny_embedder):
    ids = tiny_embedder.tokenize(["Qdrant is a vector database. " * 50, "cats"])
    assert len(ids[0]) == tiny_embedder.max_length
    assert ids[0][-1] == ids[1][-1] == tiny_embedder.tokenizer.eos_token_id
    assert ids[1][0] == tiny_embedder.tokenizer.bos_token_id


def test_last_token_pool_is_padding_side_agnostic():
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 4)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    expected = torch.stack([hidden[0, 2], hidden[1, 4], hidden[2, 0]])
    assert torch.equal(last_token_pool(hidden, right), expected)
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert torch.equal(last_token_pool(hidden, left), hidden[:, -1])


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert torch.allclose(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))
    with pytest.raises(ValueError, match="lasttoken, mean, cls"):
        pool("max", hidden, torch.tensor([[1, 1, 0]]))


def test_token_budget_batching_restores_order(tiny_mistral_dir):
    small = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=32, batch_tokens=32)
    large = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=32, batch_tokens=4096)
    a, b = small.embed_documents(TEXTS), large.embed_documents(TEXTS)
    assert cosines(a, b).min() >= 0.9999
    one_by_one = np.stack([large.embed_documents([t])[0] for t in TEXTS])
    assert cosines(a, one_by_one).min() >= 0.9999
    assert small.last_stats.texts == len(TEXTS) and small.last_stats.tokens_per_s > 0


def test_decoder_forward_builds_no_kv_cache(tiny_embedder):
    """Embedding generates nothing: a KV cache would only cost memory (and, for sliding-window
    models, a host-device copy per layer that stalls a GPU)."""
    caches = []
    handle = tiny_embedder.model.register_forward_hook(lambda _m, _a, out: caches.append(out.past_key_values))
    try:
        tiny_embedder.embed_documents(["one text", "and another one"])
    finally:
        handle.remove()
    assert caches == [None]


def test_plan_batches_respects_budget():
    lengths = [5, 100, 7, 50, 50, 3, 100, 1]
    batches = plan_batches(lengths, batch_tokens=120)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 120
    assert [lengths[b[0]] for b in batches] == sorted((lengths[b[0]] for b in batches), reverse=True)


@pytest.mark.parametrize("quantization,min_cos", [("8bit", 0.999), ("4bit", 0.95)])
def test_quantized_close_to_full_precision(tiny_mistral_dir, tiny_embedder, quantization, min_cos):
    quant = Embedder.from_pretrained(str(tiny_mistral_dir), quantization=quantization, max_length=64,
                                     batch_tokens=512)
    assert any("bit" in type(m).__name__.lower() for m in quant.model.modules())  # really quantized
    full, q = tiny_embedder.embed_documents(TEXTS), quant.embed_documents(TEXTS)
    assert cosines(full, q).min() >= min_cos
    assert quant.fingerprint.quantization == quantization
    assert quant.fingerprint.key == tiny_embedder.fingerprint.key  # same collection stays usable


def _make_adapter(base_dir, out_dir, seed=1):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(seed)
    base = AutoModel.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(out_dir)
    return out_dir


def test_lora_adapter_changes_vectors_and_fingerprint(tiny_mistral_dir, tiny_embedder, tmp_path):
    adapter = _make_adapter(tiny_mistral_dir, tmp_path / "adapter")
    tuned = Embedder.from_pretrained(str(tiny_mistral_dir), adapter=str(adapter), max_length=64)
    base_vecs, tuned_vecs = tiny_embedder.embed_documents(TEXTS), tuned.embed_documents(TEXTS)
    assert cosines(base_vecs, tuned_vecs).max() < 0.999
    fp = tuned.fingerprint
    assert fp.adapter_id and fp.key != tiny_embedder.fingerprint.key
    assert "adapter_id" in fp.differences(tiny_embedder.fingerprint)
    again = Embedder.from_pretrained(str(tiny_mistral_dir), adapter=str(adapter), max_length=64)
    assert np.allclose(again.embed_documents(TEXTS), tuned_vecs, atol=1e-6)
    assert again.fingerprint == fp
    merged = Embedder.from_pretrained(str(tiny_mistral_dir), adapter=str(adapter), merge_adapter=True,
                                      max_length=64)
    assert not any("lora" in n for n, _ in merged.model.named_parameters())
    assert cosines(merged.embed_documents(TEXTS), tuned_vecs).min() >= 0.9999


def test_adapter_for_another_base_is_refused(tiny_mistral_dir, tmp_path):
    other = save_tiny_mistral(tmp_path / "wider", seed=3, hidden_size=96)
    adapter = _make_adapter(other, tmp_path / "adapter")
    with pytest.raises(EmbedderError, match="does not fit this base model"):
        Embedder.from_pretrained(str(tiny_mistral_dir), adapter=str(adapter))
    (adapter / "rag_adapter.json").write_text(json.dumps({"base_model_id": "w:someothermodel"}))
    with pytest.raises(EmbedderError, match="trained on base model w:someothermodel"):
        Embedder.from_pretrained(str(tiny_mistral_dir), adapter=str(adapter))
    with pytest.raises(EmbedderError, match="no adapter_config.json"):
        Embedder.from_pretrained(str(tiny_mistral_dir), adapter=str(tmp_path))


def test_unknown_model_errors_name_the_fix(tmp_path):
    with pytest.raises(EmbedderError, match="does not exist"):
        Embedder.from_pretrained(str(tmp_path / "nope"))
    with pytest.raises(EmbedderError, match="hf download some-org/some-model"):
        Embedder.from_pretrained("some-org/some-model")
    with pytest.raises(EmbedderError, match="no config.json"):
        Embedder.from_pretrained(str(tmp_path))


def test_invalid_settings_list_valid_values():
    with pytest.raises(EmbedderError, match="none, 8bit, 4bit"):
        EmbedderConfig(quantization="3bit")
    with pytest.raises(EmbedderError, match="auto, cpu, cuda"):
        EmbedderConfig(device="tpu")
    with pytest.raises(ValueError, match="Valid modes"):
        resolve_spec("m", "bert", None, EmbedderConfig(pooling="max"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_request_without_gpu_is_refused(tiny_mistral_dir):
    with pytest.raises(EmbedderError, match="--device cpu"):
        Embedder.from_pretrained(str(tiny_mistral_dir), device="cuda")


def test_instructions():
    assert resolve_instruction("fact_checking") == TASKS["fact_checking"]
    assert resolve_instruction("fact_checking", "Find recipes") == "Find recipes"
    with pytest.raises(ValueError, match="code_search"):
        resolve_instruction("nonsense")
    assert format_instructed_query("Do X", "q") == "Instruct: Do X\nQuery: q"


def test_spec_read_from_config_and_files():
    decoder = resolve_spec("intfloat/e5-mistral-7b-instruct", "mistral", None, EmbedderConfig())
    assert (decoder.pooling, decoder.instructed, decoder.append_eos, decoder.query_prefix) == (
        "lasttoken", True, True, "")
    e5 = resolve_spec("intfloat/multilingual-e5-small", "xlm-roberta", None, EmbedderConfig())
    assert (e5.pooling, e5.query_prefix, e5.document_prefix, e5.instructed) == ("mean", "query: ", "passage: ", False)
    forced = resolve_spec("x", "bert", None, EmbedderConfig(pooling="cls", query_prefix="q: "))
    assert (forced.pooling, forced.query_prefix) == ("cls", "q: ")


# -- the real default model ---------------------------------------------------------------------
def test_default_model_ranks_related_pairs_higher(default_embedder):
    docs = default_embedder.embed_documents([
        "A kitten is sleeping on the sofa.",
        "The central bank raised interest rates by half a point.",
    ])
    q = default_embedder.embed_query("cat napping on a couch")
    assert q @ docs[0] > q @ docs[1] + 0.2
    assert default_embedder.fingerprint.dim == 384 and default_embedder.spec.pooling == "mean"


def test_default_model_handles_empty_and_huge_inputs(default_embedder):
    vecs = default_embedder.embed_documents(["", "word " * 25_000, "caf\u00e9 \U0001f600 \x00 \ufffd"])
    assert vecs.shape == (3, 384)
    assert np.isfinite(vecs).all() and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_default_model_matches_sentence_transformers(default_embedder):
    from sentence_transformers import SentenceTransformer

    from embedder.loading import default_model_dir

    texts = ["Qdrant stores vectors.", "A much longer sentence about retrieval augmented generation " * 3]
    st = SentenceTransformer(str(default_model_dir()), device="cpu")
    ref = st.encode(texts, normalize_embeddings=True)
    assert cosines(default_embedder.embed_documents(texts), ref).min() >= 0.9999


# -- on a GPU ---------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("quantization,dtype,min_cos", [("none", "bf16", 0.99), ("4bit", "bf16", 0.97)])
def test_cuda_matches_cpu_reference(tiny_mistral_dir, tiny_embedder, quantization, dtype, min_cos):
    gpu = Embedder.from_pretrained(str(tiny_mistral_dir), device="cuda", dtype=dtype,
                                   quantization=quantization, max_length=64)
    assert gpu.device.type == "cuda"
    assert cosines(gpu.embed_documents(TEXTS), tiny_embedder.embed_documents(TEXTS)).min() >= min_cos
    ref = card_embed(build_tiny_mistral(), copy.deepcopy(tiny_embedder.tokenizer),
                     [format_instructed_query(TASKS["web_search"], t) for t in TEXTS], 64)
    assert cosines(gpu.embed_queries(TEXTS), ref).min() >= min_cos
