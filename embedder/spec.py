"""How a model turns text into a vector: read from the model's own files, with overrides.

Decoder-only models (Mistral, Llama, Qwen...) get the E5-Mistral recipe: instruction-formatted
queries, EOS appended, last-token pooling. Encoder models (BERT, XLM-R...) get the pooling that
their sentence-transformers files name (mean by default) and optional ``query: ``/``passage: ``
prefixes (E5 family).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from .config import EmbedderConfig
from .pooling import POOLING_MODES

DECODER_TYPES = frozenset(
    {"mistral", "llama", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "mixtral"}
)


@dataclass(frozen=True)
class ModelSpec:
    """Text-to-vector recipe of one model.

    Attributes:
        name: the model's name or folder, for display.
        decoder: decoder-only (E5-Mistral recipe) or encoder.
        pooling: one of ``lasttoken``, ``mean``, ``cls``.
        instructed: queries are formatted ``Instruct: {task}\\nQuery: {query}``.
        append_eos: EOS is appended after truncation (decoders).
        query_prefix / document_prefix: plain prefixes (E5 encoders: ``query: `` / ``passage: ``).
        max_length: the model's own limit on tokens per text.
    """

    name: str
    decoder: bool
    pooling: str
    instructed: bool
    append_eos: bool
    query_prefix: str = ""
    document_prefix: str = ""
    max_length: int = 512


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _st_pooling(model_dir: Path | None) -> str | None:
    """Pooling named by a sentence-transformers folder, if any."""
    if model_dir is None:
        return None
    modules = _read_json(model_dir / "modules.json")
    pooling_dirs = [m.get("path", "") for m in modules if "Pooling" in m.get("type", "")] if isinstance(
        modules, list
    ) else []
    for sub in pooling_dirs or ["1_Pooling"]:
        cfg = _read_json(model_dir / sub / "config.json")
        if cfg.get("pooling_mode_lasttoken"):
            return "lasttoken"
        if cfg.get("pooling_mode_cls_token"):
            return "cls"
        if cfg.get("pooling_mode_mean_tokens"):
            return "mean"
    return None


def resolve_spec(name: str, model_type: str, model_dir: Path | None, config: EmbedderConfig,
                 model_max_positions: int | None = None) -> ModelSpec:
    """Build the :class:`ModelSpec` for a model from its type and files, then apply overrides."""
    decoder = model_type in DECODER_TYPES
    st_cfg = _read_json(model_dir / "sentence_bert_config.json") if model_dir else {}
    prompts = (_read_json(model_dir / "config_sentence_transformers.json") if model_dir else {}).get(
        "prompts", {}
    ) or {}
    is_e5_encoder = not decoder and "e5" in name.lower() and "mistral" not in name.lower()
    limit = st_cfg.get("max_seq_length") or model_max_positions or 32768
    spec = ModelSpec(
        name=name,
        decoder=decoder,
        pooling="lasttoken" if decoder else (_st_pooling(model_dir) or "mean"),
        instructed=decoder,
        append_eos=decoder,
        query_prefix="" if decoder else prompts.get("query", "query: " if is_e5_encoder else ""),
        document_prefix="" if decoder else prompts.get(
            "document", prompts.get("passage", "passage: " if is_e5_encoder else "")
        ),
        max_length=int(limit),
    )
    overrides = {
        k: v
        for k, v in {
            "pooling": config.pooling,
            "query_prefix": config.query_prefix,
            "document_prefix": config.document_prefix,
            "instructed": config.instructed,
        }.items()
        if v is not None
    }
    if "pooling" in overrides and overrides["pooling"] not in POOLING_MODES:
        raise ValueError(
            f"Unknown pooling mode {overrides['pooling']!r}. Valid modes: {', '.join(POOLING_MODES)}."
        )
    return replace(spec, **overrides)
