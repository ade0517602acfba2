"""Several LoRA adapters on one base model, chosen per request.

``RAG_LORA_ADAPTERS=name=path,name2=path2`` loads each adapter (a ``rag finetune`` output or any
peft LoRA folder for the base model) into one peft model built on a copy of the base weights (the
base embedder that serves the store stays untouched, so indexing and searching never see an
adapter). Texts for different adapters in one call are embedded either

- ``mixed``: one padded forward per token-budget batch with peft's ``adapter_names`` (each row
  through its own adapter; ``__base__`` rows through the base weights), or
- ``grouped``: one :meth:`Embedder.encode` per adapter (packed batches where the model allows).

``bench/serve_load.py`` measures both; ``grouped`` is the default (it keeps packing).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from embedder import Embedder, EmbedderError, plan_batches

log = logging.getLogger(__name__)

STRATEGIES = ("grouped", "mixed")
BASE = "__base__"      # peft's name for "no adapter" in a mixed batch


def parse_adapters(spec: str | None) -> dict[str, Path]:
    """``"a=/p/a,b=/p/b"`` -> ``{"a": Path("/p/a"), "b": Path("/p/b")}``."""
    out: dict[str, Path] = {}
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ValueError(f"RAG_LORA_ADAPTERS item {item!r} is not NAME=PATH "
                             "(e.g. RAG_LORA_ADAPTERS=legal=/models/legal-lora,code=/models/code-lora).")
        out[name.strip()] = Path(path.strip()).expanduser()
    return out


class AdapterSet:
    """The base embedder plus named LoRA adapters on one peft copy of its model."""

    def __init__(self, base: Embedder, adapters: dict[str, Path], strategy: str = "grouped") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"adapter strategy {strategy!r} is not valid; choose one of: {', '.join(STRATEGIES)}.")
        self.base = base
        self.strategy = strategy
        self.names = list(adapters)
        self.peft = None
        self.embedder: Embedder | None = None
        if adapters:
            self._load(adapters)

    def _load(self, adapters: dict[str, Path]) -> None:
        from peft import PeftModel

        model = copy.deepcopy(self.base.model)
        first = True
        for name, path in adapters.items():
            if not (path / "adapter_config.json").exists():
                raise EmbedderError(f"Adapter {name!r}: {path} has no adapter_config.json; "
                                    "give a LoRA folder (e.g. a `rag finetune` output).")
            try:
                if first:
                    model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
                    first = False
                else:
                    model.load_adapter(str(path), adapter_name=name)
            except (RuntimeError, ValueError, KeyError) as exc:
                raise EmbedderError(f"Adapter {name!r} ({path}) does not fit the base model "
                                    f"{self.base.spec.name}: {str(exc)[:300]}") from exc
        self.peft = model.eval()
        self.embedder = Embedder(self.peft, self.base.tokenizer, self.base.spec, max_length=self.base.max_length,
                                 batch_tokens=self.base.batch_tokens, packing="off")
        log.info("loaded adapters %s on %s", ", ".join(adapters), self.base.spec.name)

    def check(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self.names:
            known = ", ".join(self.names) or "none are loaded (set RAG_LORA_ADAPTERS=name=path,...)"
            raise KeyError(f"unknown adapter {adapter!r}; loaded adapters: {known}")

    def encode(self, texts: list[str], adapters: Sequence[str | None]) -> np.ndarray:
        """Embed formatted ``texts``, text i through ``adapters[i]`` (None: the base model)."""
        if not texts:
            return np.zeros((0, self.base.dim), dtype=np.float32)
        if all(a is None for a in adapters):
            return self.base.encode(texts)
        for a in set(adapters):
            self.check(a)
        if self.strategy == "mixed":
            return self.encode_mixed(texts, adapters)
        return self.encode_grouped(texts, adapters)

    def encode_grouped(self, texts: list[str], adapters: Sequence[str | None]) -> np.ndarray:
        out = np.zeros((len(texts), self.base.dim), dtype=np.float32)
        for name in dict.fromkeys(adapters):
            rows = [i for i, a in enumerate(adapters) if a == name]
            group = [texts[i] for i in rows]
            if name is None:
                out[rows] = self.base.encode(group)
            else:
                self.peft.set_adapter(name)
                out[rows] = self.embedder.encode(group)
        return out

    @torch.inference_mode()
    def encode_mixed(self, texts: list[str], adapters: Sequence[str | None]) -> np.ndarray:
        emb = self.embedder
        ids = emb.tokenize(texts)
        out = np.zeros((len(texts), emb.dim), dtype=np.float32)
        for batch in plan_batches([len(r) for r in ids], emb.batch_tokens):
            enc = emb.tokenizer.pad({"input_ids": [ids[i] for i in batch]}, padding=True, return_tensors="pt")
            inputs = {k: enc[k].to(emb.device) for k in ("input_ids", "attention_mask")}
            names = [adapters[i] or BASE for i in batch]
            out[batch] = emb._forward_inputs(inputs, partial(self.peft, adapter_names=names)).cpu().numpy()
        return out
