"""Shared fixtures: offline, CPU, one thread; a tiny Mistral built from a config; the real small model."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

CORPUS = [
    "Qdrant is a vector database written in Rust.",
    "The quick brown fox jumps over the lazy dog.",
    "Mistral models use grouped query attention and sliding windows.",
    "Embeddings map text to vectors; similar texts land close together.",
    "Instruct: Given a web search query, retrieve relevant passages that answer the query",
    "Query: how do vector databases index embeddings?",
    "PDF files, Word documents, HTML pages and Markdown notes are indexed.",
    "Cats and dogs are popular pets. Stock markets fell sharply today.",
]


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer trained in-process, with Mistral's special tokens (BOS added)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="</s>", padding_side="left")


def build_tiny_mistral(seed: int = 0, hidden_size: int = 64):
    from transformers import MistralConfig, MistralModel

    torch.manual_seed(seed)
    config = MistralConfig(hidden_size=hidden_size, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, vocab_size=1000,
                           bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return MistralModel(config).eval()


def save_tiny_mistral(folder: Path, seed: int = 0, hidden_size: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    build_tiny_mistral(seed, hidden_size).save_pretrained(folder)
    build_tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_mistral_dir(tmp_path_factory) -> Path:
    """A tiny random Mistral saved as a model folder (config, safetensors, tokenizer)."""
    return save_tiny_mistral(tmp_path_factory.mktemp("models") / "tiny-mistral")


@pytest.fixture(scope="session")
def _tiny_embedder(tiny_mistral_dir):
    from embedder import Embedder

    return Embedder.from_pretrained(str(tiny_mistral_dir), max_length=64, batch_tokens=512)


@pytest.fixture
def tiny_embedder(_tiny_embedder):
    """The tiny Mistral embedder: loaded once per session, each test gets its own copy."""
    return copy.deepcopy(_tiny_embedder)


@pytest.fixture(scope="session")
def _default_embedder():
    from embedder import Embedder

    return Embedder.from_pretrained("default")


@pytest.fixture
def default_embedder(_default_embedder):
    """The real packaged CPU model (all-MiniLM-L6-v2): loaded once per session, each test gets its
    own copy, so a test that changes it (an adapter, a setting) cannot leak into the next."""
    return copy.deepcopy(_default_embedder)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The sample corpus (md, txt, html, pdf, docx), made once per test module (a module may define
    its own ``corpus`` instead)."""
    from .docs import make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus") / "corpus", bad=False)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, corpus, _default_embedder) -> Path:
    """``corpus`` indexed into an embedded store with the default model, once per test module;
    tests that write to it copy it first."""
    from .serve_helpers import index_corpus

    return index_corpus(tmp_path_factory.mktemp("store"), corpus, _default_embedder)


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU: torch.cuda.is_available() is False")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip_gpu)
    if not os.environ.get("RAG_QDRANT_URL"):
        skip_server = pytest.mark.skip(reason="needs a Qdrant server: set RAG_QDRANT_URL")
        for item in items:
            if "server" in item.keywords:
                item.add_marker(skip_server)
