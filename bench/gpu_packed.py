"""A 7B decoder on a GPU, texts of real mixed lengths: ours padded vs packed vs sentence-transformers,
bf16 / 8-bit / 4-bit; then `rag index` vs embedding alone. One command for a lent GPU.

The model is a full-size Mistral-7B (``MistralConfig()``, RANDOM weights, built on the GPU in bf16;
speed and memory do not depend on the weights) saved to ``--workdir`` with a byte-level BPE tokenizer
trained on the docs (``gpu_embed.py``'s). Texts (``common.mixed_texts``): python-docs chunks cut at
254 / 128 / 64 tokens in equal shares, plus search queries with the E5-Mistral instruction
(10-40 tokens), about a quarter. ``--sets mixed,512`` adds the earlier 512-token texts.

Rows per precision: ours with ``packing="off"`` (padded, length-sorted token budget) and
``packing="on"`` (one packed row per batch, FlashAttention varlen), sharing one loaded model;
bf16 also sentence-transformers (baseline, batch 32, last-token pooling) and, with ``--compile``,
ours packed under ``torch.compile``. tokens/s counts real tokens; MFU = 2 x non-embedding params x
tokens/s / the GPU's dense bf16 peak; peak = ``torch.cuda.max_memory_allocated``. The vectors of the
padded and packed paths are compared (min cosine). Then ``index_pipeline.py`` runs on the saved
model (``--index-files`` pages; default packing and embed batch): ``Indexer.run`` vs embedding the
same chunks alone, with parsing in processes (the default on a GPU) and in threads (packed runs).

    python bench/gpu_packed.py --workdir /tmp/gp                 # H100/H200: about 6-8 min
    python bench/gpu_packed.py --workdir /tmp/gp --precisions bf16 --index-files 0   # embedding only
    python bench/gpu_packed.py --workdir /tmp/gp --precisions bf16,4bit --compile --compile-budgets 16384,32768
    .venv/bin/python bench/gpu_packed.py --tiny                  # tiny Mistral, fp32, CPU: the code path
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import common
from gpu_embed import Probe, build_tokenizer, free, mistral_config, peak_tflops


def texts_for(name: str, n: int, embedder) -> list[str]:
    """Formatted texts of set ``name``: ``mixed`` (chunks + instructed queries) or ``512``."""
    if name == "512":
        from gpu_embed import corpus

        return [embedder.format_document(t) for t in corpus(n)]
    docs, queries = common.mixed_texts(n)
    return [embedder.format_document(d) for d in docs] + [embedder.format_query(q) for q in queries]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny MistralConfig in fp32 on CPU (code-path check)")
    ap.add_argument("--texts", type=int, default=512, help="texts per set")
    ap.add_argument("--sets", default="mixed", help="comma list of: mixed, 512")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-tokens", type=int, default=16384, help="our token budget per batch")
    ap.add_argument("--st-batch", type=int, default=32, help="sentence-transformers batch size")
    ap.add_argument("--precisions", default="bf16,8bit,4bit")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs per row (best kept)")
    ap.add_argument("--compile", action="store_true",
                    help="also time ours packed with RAG_COMPILE (the repeated blocks under torch.compile)")
    ap.add_argument("--compile-budgets", default="",
                    help="comma-separated token budgets of the compiled rows (default: --batch-tokens); "
                         "e.g. 16384,32768 times each precision at both (a larger budget spreads 4-bit's "
                         "weight dequantization over more tokens)")
    ap.add_argument("--profile", action="store_true",
                    help="GPU time by kernel kind (matmul / attention / other) of one packed bf16 call, "
                         "and the GPU's own bf16 matmul ceiling on the model's shapes")
    ap.add_argument("--index-files", type=int, default=100,
                    help="python-docs pages for the `rag index` vs embedding-alone phase (0: skip it)")
    ap.add_argument("--index-padded", action="store_true", help="also run the index phase with packing off")
    ap.add_argument("--workdir", help="where the random model is saved (default: a temp folder, removed after)")
    args = ap.parse_args()

    import torch

    warnings.filterwarnings("ignore", message=".*(deprecated|use_reentrant).*")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        raise SystemExit("gpu_packed.py needs a CUDA GPU (torch.cuda.is_available() is False here: torch "
                         f"{torch.__version__}). Run it on a GPU machine, or check the code path on CPU with --tiny.")
    if args.tiny:
        args.texts, args.repeat = min(args.texts, 24), 1
        args.index_files = min(args.index_files, 4)
        torch.set_num_threads(1)
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    gpu = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_tflops(gpu) if cuda else None
    common.quiet_transformers()
    from transformers import MistralModel

    from embedder import Embedder
    from embedder.compiled import uncompile_blocks
    from embedder.packing import _varlen_kernel
    from embedder.spec import ModelSpec

    start = common.header("gpu_packed", device=gpu, peak_bf16_tflops=peak, tiny=args.tiny, texts=args.texts,
                          sets=args.sets, batch_tokens=args.batch_tokens, precisions=args.precisions,
                          compile_budgets=args.compile_budgets or args.batch_tokens,
                          varlen_kernel=_varlen_kernel() is not None)

    config = mistral_config(args.tiny)
    docs, queries = common.mixed_texts(max(args.texts, 64))
    tokenizer = build_tokenizer(docs + queries, min(8000, config.vocab_size))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rag-bench-gpu-packed-"))
    folder = work / "mistral-random"
    rows: list[dict] = []
    try:
        torch.manual_seed(0)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        with torch.device(device):
            model = MistralModel(config).eval()
        torch.set_default_dtype(previous)
        n_matmul = sum(t.numel() for t in model.parameters()) - model.embed_tokens.weight.numel()
        if not (folder / "config.json").exists():
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
        spec = ModelSpec(name="mistral-7b-random", decoder=True, pooling="lasttoken", instructed=True,
                         append_eos=True, max_length=config.max_position_embeddings)
        settings = dict(max_length=args.max_length, batch_tokens=args.batch_tokens)
        budgets = [int(b) for b in args.compile_budgets.split(",") if b] or [args.batch_tokens]
        plain = Embedder(model, tokenizer, spec, packing="off", **settings)
        sets = {name: texts_for(name, args.texts, plain) for name in args.sets.split(",")}
        set_tokens: dict[str, int] = {}
        for name, texts in sets.items():
            lengths = [len(x) for x in plain.tokenize(texts)]
            set_tokens[name] = sum(lengths)
            print(f"# set {name}: {len(texts)} texts, {sum(lengths)} tokens, {min(lengths)}-{max(lengths)} per "
                  f"text (mean {sum(lengths) / len(lengths):.0f})")
        plain = None

        def measure(label: str, set_name: str, fn, baseline: float | None = None) -> tuple[float, object]:
            texts, tokens = sets[set_name], set_tokens[set_name]
            fn(texts[:8])  # warm-up
            best, mem, vectors = float("inf"), float("nan"), None
            for _ in range(args.repeat):
                with Probe(cuda) as probe:
                    vectors = fn(texts)
                best, mem = min(best, probe.seconds), probe.mem_gib
            tps = tokens / best
            rows.append({"set": set_name, "run": label, "tokens/s": tps,
                         "MFU %": 100 * 2 * n_matmul * tps / (peak * 1e12) if peak else float("nan"),
                         "peak GPU GiB": mem, "vs ST": tps / baseline if baseline else float("nan")})
            print(f"# {set_name} {label}: {tps:,.0f} tokens/s, {mem:.1f} GiB, loadavg {common.loadavg()}", flush=True)
            return tps, vectors

        def ours(base, label: str, baseline: dict[str, float], compile_too: bool = False,
                 profile: bool = False) -> None:
            padded = Embedder(base, tokenizer, spec, packing="off", **settings)
            packed = Embedder(base, tokenizer, spec, packing="on", **settings)
            for set_name in sets:
                _, a = measure(f"ours {label} padded", set_name, padded.encode, baseline.get(set_name))
                _, b = measure(f"ours {label} packed", set_name, packed.encode, baseline.get(set_name))
                cos = float((a * b).sum(1).min())
                rows[-1]["min cos vs padded"] = cos
                if profile and cuda:
                    kernel_profile(packed, sets[set_name], n_matmul, peak)
            if compile_too:
                compiled = Embedder(base, tokenizer, spec, packing="on", compile=True, **settings)
                t = time.perf_counter()
                compiled.encode(sets[next(iter(sets))][:8])
                print(f"# torch.compile warm-up {time.perf_counter() - t:.0f}s", flush=True)
                fell_back = "" if compiled.compiled else " (compile failed: ran eager)"
                if profile and cuda:
                    kernel_profile(compiled, sets[next(iter(sets))], n_matmul, peak)
                for budget in budgets:
                    compiled.batch_tokens = budget  # the same compiled blocks: shapes are dynamic
                    tag = "" if budget == args.batch_tokens else f", budget {budget}"
                    for set_name in sets:
                        _, c = measure(f"ours {label} packed + compile{tag}{fell_back}", set_name, compiled.encode,
                                       baseline.get(set_name))
                        rows[-1]["min cos vs padded"] = float((c * padded.encode(sets[set_name])).sum(1).min())
                compiled = None
                uncompile_blocks(base)  # compiled in place: the next rows on this model run eagerly
                torch._dynamo.reset()

        baseline: dict[str, float] = {}
        first = "bf16" if cuda else "fp32"
        if "bf16" in args.precisions.split(","):
            from sentence_transformers import SentenceTransformer
            from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

            st = SentenceTransformer(modules=[
                Transformer(str(folder), max_seq_length=args.max_length,
                            model_kwargs={"dtype": dtype, "attn_implementation": "sdpa"}),
                Pooling(config.hidden_size, pooling_mode="lasttoken")], device=device)
            for set_name in sets:
                baseline[set_name], _ = measure(f"sentence-transformers {first} batch={args.st_batch} (baseline)",
                                                set_name, lambda xs: st.encode(xs, batch_size=args.st_batch,
                                                                               normalize_embeddings=True))
            st = None
            free()
            ours(model, first, baseline, compile_too=args.compile, profile=args.profile)
        model = None
        free()
        for q in [q for q in args.precisions.split(",") if q in ("8bit", "4bit")]:
            try:
                # compile=False: the rows compile a copy of their own (--compile); a compiled base
                # would run every row compiled
                emb = Embedder.from_pretrained(str(folder), quantization=q, device=device, compile=False, **settings)
            except Exception as exc:  # noqa: BLE001 - e.g. no bitsandbytes backend
                print(f"# {q}: skipped ({type(exc).__name__}: {str(exc)[:160]})")
                continue
            ours(emb.model, q + (" NF4" if q == "4bit" else ""), baseline, compile_too=args.compile)
            emb.model = emb = None
            free()
        common.table(rows)
        if args.index_files:
            index_phase(args, folder, device)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    common.footer(start)


def kernel_profile(embedder, texts: list[str], n_matmul: int, peak: float | None) -> None:
    """Where one packed call's GPU time goes (torch.profiler, by kernel kind), next to what the
    GPU's cuBLAS reaches on a bare matmul of the model's largest shape."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    embedder.encode(texts[:64])
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        embedder.encode(texts)
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    kinds: dict[str, float] = {}
    top: list[tuple[float, str]] = []
    for event in prof.key_averages():  # the GPU's own events (kernels, copies), not the CPU ops that launch them
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0)
        name = event.key.lower()
        kind = ("attention" if any(k in name for k in ("flash", "fmha", "attention")) else
                "matmul" if any(k in name for k in ("gemm", "cutlass", "sm90", "nvjet", "matmul")) else
                "copy" if "memcpy" in name else "other (norms, rotary, activations, adds, casts)")
        kinds[kind] = kinds.get(kind, 0.0) + us
        top.append((us, event.key[:90]))
    total = sum(kinds.values())
    print(f"# kernel time of one packed call{' (compiled)' if embedder.compiled else ''}: {total / 1e3:.0f} ms "
          f"on the GPU, {wall * 1e3:.0f} ms wall (profiled): the GPU idles {100 * (1 - total / 1e6 / wall):.0f} %")
    for kind, us in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"#   {kind}: {us / 1e3:.0f} ms ({100 * us / total:.0f} %)")
    for us, key in sorted(top, reverse=True)[:12]:
        print(f"#   {us / 1e3:8.1f} ms  {key}")
    m, k, n = 16384, 4096, 14336  # a full budget of tokens through the MLP's largest projection
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    tflops = 2 * m * k * n * 20 / (time.perf_counter() - t) / 1e12
    print(f"# bare bf16 matmul {m}x{k}x{n}: {tflops:.0f} TFLOP/s"
          + (f" = {100 * tflops / peak:.1f} % of the {peak:.0f} TFLOP/s peak (the MFU ceiling)" if peak else ""),
          flush=True)


def index_phase(args: argparse.Namespace, folder: Path, device: str) -> None:
    """``Indexer.run`` vs embedding the same chunks alone (``index_pipeline.py``), packed and padded."""
    script = Path(__file__).with_name("index_pipeline.py")
    for packing in ("auto",) if args.tiny or not args.index_padded else ("auto", "off"):
        cmd = [sys.executable, str(script), "--model", str(folder), "--device", device, "--files",
               str(args.index_files), "--phases", "embed,index,reindex", "--packing", packing,
               # the default (parse processes on a GPU) and the old path (parse threads), alternately
               "--parse-workers", "auto,0" if packing == "auto" else "auto"]
        print(f"# rag index vs embedding alone, packing={packing}: {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        print(proc.stdout, end="")
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"index_pipeline.py failed with exit code {proc.returncode}")


if __name__ == "__main__":
    main()
