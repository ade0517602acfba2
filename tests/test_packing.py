"""Packed (unpadded) batches against the padded path; the varlen plumbing; overlap and compile."""

from __future__ import annotations

import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from embedder import Embedder, EmbedderConfig, EmbedderError
from embedder.core import _ahead
from embedder.packing import (PACKED_ATTENTION, _per_text_attention, _varlen_attention, pack, packed_pool,
                              plan_packed_batches)
from embedder.pooling import pool

from .conftest import build_tiny_tokenizer

WORDS = "qdrant vector database rust embeddings map text to vectors similar texts land close together".split()
#: 1 to ~60 tokens each: queries, sentences, paragraphs, empty, one longer than max_length
MIXED = (["", "cats", "how do vector databases index embeddings?"]
         + [" ".join(WORDS[(i * 7) % len(WORDS):] + WORDS) * (1 + i % 4) for i in range(12)]
         + ["Qdrant is a vector database written in Rust. " * 30])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def pair(model: str, **settings) -> tuple[Embedder, Embedder]:
    """The same model loaded twice: padded and packed."""
    return (Embedder.from_pretrained(model, packing="off", **settings),
            Embedder.from_pretrained(model, packing="on", **settings))


@pytest.mark.parametrize("padding_side", ["left", "right"])
def test_packed_matches_padded_tiny_mistral(tiny_mistral_dir, padding_side):
    padded, packed = pair(str(tiny_mistral_dir), max_length=64, batch_tokens=128)
    padded.tokenizer.padding_side = packed.tokenizer.padding_side = padding_side
    assert packed.packed and not padded.packed
    assert packed.model.config._attn_implementation == PACKED_ATTENTION
    a, b = padded.embed_documents(MIXED), packed.embed_documents(MIXED)
    assert cosines(a, b).min() >= 0.9999
    q_a, q_b = padded.embed_queries(MIXED, task="fact_checking"), packed.embed_queries(MIXED, task="fact_checking")
    assert cosines(q_a, q_b).min() >= 0.9999
    # packing computes only real tokens; padding computed more, and the batches differ
    assert packed.last_stats.padded_tokens == packed.last_stats.tokens < padded.last_stats.padded_tokens
    # one text alone gives the same vector as that text packed with the others: no attention leaks
    alone = np.stack([packed.embed_documents([t])[0] for t in MIXED[:6]])
    assert cosines(alone, b[:6]).min() >= 0.9999


def test_packed_matches_padded_with_sliding_window(tmp_path):
    """Texts longer than Mistral's sliding window: the window applies per text."""
    from transformers import MistralConfig, MistralModel

    torch.manual_seed(0)
    config = MistralConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=1000, bos_token_id=1, eos_token_id=2,
                           pad_token_id=2, sliding_window=8)
    MistralModel(config).save_pretrained(tmp_path)
    build_tiny_tokenizer().save_pretrained(tmp_path)
    padded, packed = pair(str(tmp_path), max_length=48, batch_tokens=96)
    windowed = packed.embed_documents(MIXED)
    assert cosines(padded.embed_documents(MIXED), windowed).min() >= 0.9999
    # the window matters here: with full causal attention the long texts' vectors change
    packed.model.config.sliding_window = None
    assert cosines(packed.embed_documents(MIXED), windowed).min() < 0.999


def test_packed_matches_padded_and_sentence_transformers_minilm(default_embedder):
    from sentence_transformers import SentenceTransformer

    from embedder.loading import default_model_dir

    padded = Embedder.from_pretrained("default", packing="off")
    assert default_embedder.packed  # auto packs BERT encoders
    texts = MIXED + ["word " * 400]  # beyond MiniLM's 256 tokens: truncated
    a, b = padded.embed_documents(texts), default_embedder.embed_documents(texts)
    assert cosines(a, b).min() >= 0.9999
    ref = SentenceTransformer(str(default_model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    assert cosines(b, ref).min() >= 0.9999


def test_packed_pool_equals_padded_pool():
    torch.manual_seed(0)
    lengths = [3, 1, 5]
    hidden = torch.randn(sum(lengths), 4)  # (T, dim)
    cu = torch.tensor([0, 3, 4, 9], dtype=torch.int32)
    padded = torch.zeros(3, 5, 4)
    mask = torch.zeros(3, 5, dtype=torch.long)
    for i, (s, n) in enumerate(zip([0, 3, 4], lengths)):
        padded[i, :n], mask[i, :n] = hidden[s:s + n], 1
    for mode in ("lasttoken", "mean", "cls"):
        assert torch.allclose(packed_pool(mode, hidden, cu), pool(mode, padded, mask), atol=1e-6), mode
    with pytest.raises(ValueError, match="lasttoken, mean, cls"):
        packed_pool("max", hidden, cu)


def test_pack_and_plan():
    p = pack([[5, 6, 7], [8], [9, 10]])
    assert p.input_ids.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert p.position_ids.tolist() == [[0, 1, 2, 0, 0, 1]]
    assert p.cu_seqlens.tolist() == [0, 3, 4, 6] and p.max_len == 3
    with pytest.raises(ValueError, match="non-empty"):
        pack([[1], []])
    lengths = [5, 100, 7, 50, 50, 3, 100, 1, 300]
    batches = plan_packed_batches(lengths, batch_tokens=120)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or sum(lengths[i] for i in batch) <= 120
    assert len(batches) < len(lengths)  # short texts share batches


def _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):
    """The contract of torch.nn.attention.varlen.varlen_attn, in plain PyTorch: (T, H, D) tensors,
    window (left, right), (-1, 0) = causal. Used where the CUDA kernel cannot run."""
    out = torch.empty_like(q)
    for s, e in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        qs, ks, vs = (x[s:e].transpose(0, 1) for x in (q, k, v))  # (H, n, D)
        if ks.shape[0] != qs.shape[0]:
            assert enable_gqa
            ks, vs = (x.repeat_interleave(qs.shape[0] // x.shape[0], 0) for x in (ks, vs))
        i = torch.arange(e - s)
        mask = torch.ones(e - s, e - s, dtype=torch.bool)
        if window_size[1] >= 0:
            mask &= i[None, :] <= i[:, None] + window_size[1]
        if window_size[0] >= 0:
            mask &= i[None, :] >= i[:, None] - window_size[0]
        out[s:e] = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale).transpose(0, 1)
    return out


def _old_signature_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, is_causal=False, scale=None):
    """An older varlen signature: no GQA, no windows."""
    assert k.shape[1] == q.shape[1]
    return _reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, scale=scale,
                             window_size=(-1, 0) if is_causal else (-1, -1))


@pytest.mark.parametrize("kernel", [_reference_varlen, _old_signature_varlen])
@pytest.mark.parametrize("causal,window", [(True, None), (False, None), (True, 3)])
def test_varlen_call_matches_per_text_sdpa(kernel, causal, window):
    """The tensors handed to the GPU varlen kernel (layout, GQA, window, scale) give what the CPU
    path computes."""
    torch.manual_seed(0)
    cu = torch.tensor([0, 4, 5, 11], dtype=torch.int32)
    q, k, v = torch.randn(1, 4, 11, 8), torch.randn(1, 2, 11, 8), torch.randn(1, 2, 11, 8)  # GQA 4:2
    expected = _per_text_attention(q, k, v, cu, causal, 0.3, window)
    params = frozenset(inspect.signature(kernel).parameters)
    got = _varlen_attention(kernel, params, q, k, v, cu, 6, causal, 0.3, window)
    if got is None:  # the old signature cannot do windows or bidirectional attention: caller falls back
        assert kernel is _old_signature_varlen and (window or not causal)
        return
    assert got.shape == expected.shape == (1, 11, 4, 8)
    assert torch.allclose(got, expected, atol=1e-5)


def test_packing_settings_and_errors(tmp_path):
    from transformers import MistralModel

    from .conftest import build_tiny_mistral

    with pytest.raises(EmbedderError, match="auto, on, off"):
        EmbedderConfig(packing="yes")
    eager = build_tiny_mistral()
    eager.config._attn_implementation = "eager"
    eager.save_pretrained(tmp_path)
    build_tiny_tokenizer().save_pretrained(tmp_path)
    model = MistralModel.from_pretrained(tmp_path, attn_implementation="eager")
    from embedder.spec import ModelSpec

    spec = ModelSpec("t", decoder=True, pooling="lasttoken", instructed=True, append_eos=True)
    with pytest.raises(EmbedderError, match="packing=on, but the model runs attn_implementation='eager'.*auto"):
        Embedder(model, build_tiny_tokenizer(), spec, packing="on")
    auto = Embedder(model, build_tiny_tokenizer(), spec, packing="auto")  # falls back to padding
    assert not auto.packed and auto.embed_documents(["a text"]).shape == (1, 64)


def test_ahead_keeps_order_and_runs_on_a_second_thread():
    seen = []

    def produce():
        for i in range(5):
            seen.append(threading.current_thread().name)
            yield i

    assert list(_ahead(produce(), enabled=True)) == list(range(5))
    assert seen and all(name.startswith("embed-prefetch") for name in seen)
    seen.clear()
    assert list(_ahead(produce(), enabled=False)) == list(range(5))
    assert all(name == threading.current_thread().name for name in seen)


def test_streamed_packing_covers_every_text_within_the_budget(tiny_mistral_dir, monkeypatch):
    """The GPU path (tokenize a slice at a time, pack as texts come) on the CPU: every text once,
    batches within the budget, the same vectors as the sorted path."""
    import embedder.core

    monkeypatch.setattr(embedder.core, "TOKENIZE_SLICE", 3)  # several slices from a few texts
    emb = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64, batch_tokens=96)
    texts = [emb.format_document(t) for t in MIXED + [t.upper() for t in MIXED]]
    lengths: list[int] = []
    seen: list[int] = []
    vectors = np.zeros((len(texts), emb.dim), dtype=np.float32)
    for batch, inputs in emb._stream_packed(texts, lengths, pin=False):
        tokens = [lengths[i] for i in batch]
        assert sum(tokens) <= 96 or len(batch) == 1
        seen.extend(batch)
        vectors[batch] = emb._forward_inputs(inputs).detach().numpy()
    assert sorted(seen) == list(range(len(texts)))
    assert lengths == [len(row) for row in emb.tokenize(texts)]
    assert cosines(vectors, emb.encode(texts)).min() >= 0.9999


def test_encode_from_several_threads(tiny_embedder):
    """Several threads embedding at once (a serving layer) get what one thread gets."""
    texts = [MIXED[i:] + MIXED[:i] for i in range(4)]
    expected = [tiny_embedder.embed_documents(t) for t in texts]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = tiny_embedder.embed_documents(texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert cosines(results[i], expected[i]).min() >= 0.9999


@pytest.mark.slow
def test_compile_gives_the_same_vectors_with_one_graph_for_every_block_and_length(tiny_mistral_dir):
    pytest.importorskip("torch._inductor")
    from torch._dynamo.utils import counters

    from embedder.compiled import repeated_blocks

    plain = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64, batch_tokens=128)
    compiled = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64, batch_tokens=128, compile=True)
    blocks = repeated_blocks(compiled.model)
    assert compiled.compiled and len(blocks) == compiled.model.config.num_hidden_layers >= 2
    counters.clear()
    with ThreadPoolExecutor(1) as thread:  # compiled on a thread of its own, as `rag index` embeds
        first = thread.submit(compiled.embed_documents, MIXED).result()
    assert cosines(plain.embed_documents(MIXED), first).min() >= 0.9999
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1  # the blocks did run compiled
    # other packed lengths reuse the graph (dynamic shapes); a single query runs the blocks eagerly
    assert cosines(plain.embed_documents(MIXED[1:4]), compiled.embed_documents(MIXED[1:4])).min() >= 0.9999
    query = "how are packed batches attended?"
    assert float(plain.embed_query(query) @ compiled.embed_query(query)) >= 0.9999
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
def test_warm_up_compiles_before_the_first_batch(tiny_mistral_dir, tmp_path):
    """`rag serve` warms a compiled model up on a thread at start: the first request then compiles nothing."""
    pytest.importorskip("torch._inductor")
    from torch._dynamo.utils import counters

    from app.serve.runtime import Runtime
    from app.settings import Settings

    plain = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64, batch_tokens=128)
    assert plain.warm_up() == 0.0  # nothing compiled: nothing to do (a CPU's default)
    compiled = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64, batch_tokens=128, compile=True)
    torch._dynamo.reset()  # graphs that other tests compiled for this layer class are not reused
    counters.clear()
    runtime = Runtime(Settings(data_dir=tmp_path / "data"), compiled)
    try:
        assert runtime.warmed.wait(120)
        graphs = counters["stats"]["unique_graphs"]
        status = runtime.status()
        assert graphs >= 1 and status["compiled"] and status["warm"] and status["warm_up_s"] > 0
        vectors = runtime.embed(list(MIXED))  # a first request: packed, compiled, no new graph
        assert counters["stats"]["unique_graphs"] == graphs
        assert cosines(plain.embed_documents(MIXED), vectors).min() >= 0.9999
    finally:
        runtime.close()


@pytest.mark.slow
def test_index_progress_says_the_first_batch_compiles(tiny_mistral_dir, tmp_path, capsys):
    pytest.importorskip("torch._inductor")
    from indexer.pipeline import Indexer, IndexSettings
    from indexer.store import EdgeStore

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"n{i}.txt").write_text(f"Note {i} is about packed batches and compiled blocks. " * 8)
    compiled = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64, batch_tokens=128, compile=True)
    assert not compiled.warm
    with EdgeStore(tmp_path / "store") as store:
        Indexer(compiled, store, "docs", IndexSettings(chunk_tokens=32, chunk_overlap=4)).run([folder])
        assert "the first batch compiles the model" in capsys.readouterr().err
        assert compiled.warm and compiled.warm_up() == 0.0  # compiled once: nothing left to warm up
        (folder / "n3.txt").write_text("A new note. " * 20)
        Indexer(compiled, store, "docs", IndexSettings(chunk_tokens=32, chunk_overlap=4)).run([folder])
        assert "compiles the model" not in capsys.readouterr().err


def test_a_failed_compilation_falls_back_to_eager_with_a_warning(tiny_mistral_dir, caplog):
    from embedder.compiled import repeated_blocks

    def broken_backend(graph, example_inputs):
        raise RuntimeError("this backend cannot compile")

    plain = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64, batch_tokens=128)
    compiled = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64, batch_tokens=128, compile=True)
    for block in repeated_blocks(compiled.model):
        block.compile(dynamic=True, backend=broken_backend)
    with caplog.at_level("WARNING", logger="embedder.core"):
        vectors = compiled.embed_documents(MIXED)
    assert cosines(plain.embed_documents(MIXED), vectors).min() >= 0.9999
    assert not compiled.compiled
    assert "torch.compile failed" in caplog.text and "running it eagerly" in caplog.text


def test_eager_calls_on_several_threads_restore_the_compiled_stance_once_all_have_left():
    """A query's eager context on one thread must not end another's early, nor leave the process
    eager for good (the compiler's stance is process-wide)."""
    pytest.importorskip("torch._inductor")
    from embedder.compiled import eager

    compilations = []

    def counting_backend(graph, example_inputs):
        compilations.append(len(example_inputs))
        return graph.forward

    add_one = torch.compile(lambda x: x + 1, backend=counting_backend, dynamic=False)
    first, second = eager(True), eager(True)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert add_one(torch.ones(2)).tolist() == [2.0, 2.0] and compilations == []  # still eager
    second.__exit__(None, None, None)
    assert add_one(torch.ones(3)).tolist() == [2.0, 2.0, 2.0] and len(compilations) == 1  # compiled again
    with eager(False):
        add_one(torch.ones(4))
    assert len(compilations) == 2  # nothing compiled: no stance change


def test_repeated_blocks_are_the_layers(tiny_mistral_dir):
    from embedder.compiled import compile_blocks, repeated_blocks

    embedder = Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64)
    assert repeated_blocks(embedder.model) == list(embedder.model.layers)
    assert repeated_blocks(torch.nn.Linear(2, 2)) == []
    assert compile_blocks(torch.nn.Linear(2, 2)) == 0  # nothing to compile: eager, no error


@pytest.mark.gpu
@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_cuda_packed_matches_padded(tiny_mistral_dir, quantization):
    padded, packed = pair(str(tiny_mistral_dir), device="cuda", dtype="bf16", quantization=quantization,
                          max_length=64, batch_tokens=256)
    assert cosines(padded.embed_documents(MIXED), packed.embed_documents(MIXED)).min() >= 0.999


@pytest.mark.gpu
@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_cuda_compiled_packed_matches_padded(tiny_mistral_dir, quantization):
    padded = Embedder.from_pretrained(str(tiny_mistral_dir), packing="off", device="cuda", dtype="bf16",
                                      quantization=quantization, max_length=64, batch_tokens=256)
    compiled = Embedder.from_pretrained(str(tiny_mistral_dir), packing="on", compile=True, device="cuda",
                                        dtype="bf16", quantization=quantization, max_length=64, batch_tokens=256)
    assert cosines(padded.embed_documents(MIXED), compiled.embed_documents(MIXED)).min() >= 0.999
    assert compiled.compiled  # it ran compiled, without falling back to eager
