"""Packed (unpadded) vs padded batches on the CPU: all-MiniLM-L6-v2 and a small random Mistral.

The same texts of real, mixed lengths (python-docs chunks cut at 254 / 128 / 64 tokens plus
search queries, ``common.mixed_texts``) are embedded by two ``Embedder`` instances of the same
model, ``packing="off"`` and ``packing="on"``, in alternating rounds; the best round of each is
kept (the machine is shared). Prints tokens/s, CPU seconds (one torch thread: the work itself),
tokens computed, the packed/padded ratio and the smallest cosine between the two paths' vectors.

    .venv/bin/python bench/packed_cpu.py                 # ~3 min on 2 cores
    .venv/bin/python bench/packed_cpu.py --quick         # ~30 s
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common


def small_mistral(folder: Path, texts: list[str]) -> Path:
    """A random Mistral (4 layers, 256 hidden) with an in-process BPE tokenizer, saved to ``folder``."""
    import torch
    from transformers import MistralConfig, MistralModel

    from gpu_embed import build_tokenizer

    torch.manual_seed(0)
    config = MistralConfig(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8,
                           num_key_value_heads=2, vocab_size=4096, bos_token_id=1, eos_token_id=2,
                           pad_token_id=2)
    MistralModel(config).save_pretrained(folder)
    build_tokenizer(texts, 4000).save_pretrained(folder)
    return folder


def compare(name: str, model: str, docs: list[str], queries: list[str], repeat: int,
            batch_tokens: int | None) -> dict:
    from embedder import Embedder

    settings = {"batch_tokens": batch_tokens} if batch_tokens else {}
    padded = Embedder.from_pretrained(model, packing="off", **settings)
    packed = Embedder.from_pretrained(model, packing="on", **settings)
    texts = [padded.format_document(d) for d in docs] + [padded.format_query(q) for q in queries]
    lengths = [len(ids) for ids in padded.tokenize(texts)]
    vectors = {}
    best = {"padded": (float("inf"), 0.0, 0), "packed": (float("inf"), 0.0, 0)}
    for _ in range(repeat):
        for label, emb in (("padded", padded), ("packed", packed)):
            cpu, wall = time.process_time(), time.perf_counter()
            vectors[label] = emb.encode(texts)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if wall < best[label][0]:
                best[label] = (wall, cpu, emb.last_stats.padded_tokens)
    cos = float((vectors["padded"] * vectors["packed"]).sum(1).min())
    tokens = sum(lengths)
    print(f"# {name}: {len(texts)} texts, {tokens} tokens, lengths {min(lengths)}-{max(lengths)} "
          f"(mean {tokens / len(texts):.0f}), budget {padded.batch_tokens}; min cosine packed vs padded {cos:.6f}; "
          f"loadavg {common.loadavg()}", flush=True)
    (pw, pc, pt), (kw, kc, kt) = best["padded"], best["packed"]
    return {"model": name, "padded tok/s": tokens / pw, "packed tok/s": tokens / kw, "packed/padded": pw / kw,
            "padded CPU s": pc, "packed CPU s": kc, "CPU ratio": pc / kc, "tokens computed padded": pt,
            "packed": kt, "min cos": cos}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="48 texts, 1 round")
    ap.add_argument("--texts", type=int, default=160)
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds per path (best kept)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--batch-tokens", type=int, default=0, help="token budget (0: the CPU default, 2048)")
    args = ap.parse_args()
    if args.quick:
        args.texts, args.repeat = 48, 1

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    common.quiet_transformers()
    start = common.header("packed_cpu", texts=args.texts, repeat=args.repeat, batch_tokens=args.batch_tokens or "default")
    docs, queries = common.mixed_texts(args.texts)
    rows = [compare("all-MiniLM-L6-v2 (default)", "default", docs, queries, args.repeat, args.batch_tokens)]
    with tempfile.TemporaryDirectory(prefix="rag-bench-packed-") as tmp:
        folder = small_mistral(Path(tmp) / "mistral-small", docs + queries)
        rows.append(compare("random Mistral 4x256 (fp32)", str(folder), docs, queries, args.repeat,
                            args.batch_tokens))
    common.table(rows)
    common.footer(start)


if __name__ == "__main__":
    main()
