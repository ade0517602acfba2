"""A 7B decoder as embedder on a GPU: bf16 / 8-bit / 4-bit NF4 throughput, MFU, memory; QLoRA step.

The model is a full-size Mistral-7B (``MistralConfig()`` defaults) with RANDOM weights, built
directly on the GPU in bf16: speed and memory do not depend on the weights' values. Texts are
512 tokens each (python-docs text, or synthetic words where the docs are missing) under a
byte-level BPE tokenizer trained in-process. Each precision runs through our ``Embedder``
(bf16: the constructor; 8-bit / 4-bit: ``Embedder.from_pretrained(folder, quantization=...)`` on
the model saved to a local folder), and bf16 also through sentence-transformers (baseline).
The QLoRA step uses the project's own fine-tuning pieces (``finetune.train._lora``,
``finetune.losses.info_nce``, ``Embedder.embed_with_grad``): 4-bit base, LoRA r=16 on
q,k,v,o, gradient checkpointing, 8 sequences x 512 tokens (4 query/passage pairs), InfoNCE on
last-token embeddings, AdamW.

MFU = 2 x non-embedding parameters x tokens/s / the GPU's dense bf16 peak (attention FLOPs
excluded; quantized weights are dequantized to bf16, so the same peak applies).

    .venv/bin/python bench/gpu_embed.py            # needs CUDA (and bitsandbytes for 8/4-bit)
    .venv/bin/python bench/gpu_embed.py --tiny     # tiny Mistral, fp32, on CPU: checks the code path
"""

from __future__ import annotations

import argparse
import gc
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import common

#: Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by a substring of the device name (first match).
PEAK_BF16_TFLOPS = [
    ("H100 NVL", 835), ("H100 PCIe", 756), ("H100", 989), ("H200", 989), ("H800", 989), ("H20", 148),
    ("B200", 2250), ("A100", 312), ("A800", 312), ("L40S", 362), ("L40", 181), ("L4", 121),
    ("A10G", 70), ("A10", 125), ("RTX 4090", 165), ("RTX 6000 Ada", 364), ("A6000", 155),
]


def peak_tflops(name: str) -> float | None:
    return next((float(p) for key, p in PEAK_BF16_TFLOPS if key in name), None)


def corpus(n: int) -> list[str]:
    """``n`` texts of 512+ tokens: 3 joined python-docs chunks each, or synthetic words."""
    try:
        chunks = common.doc_chunks(3 * n)
        return ["\n\n".join(chunks[3 * i:3 * i + 3]) for i in range(n)]
    except (SystemExit, Exception):  # no docs, or no packaged model to chunk them with
        import random

        rng = random.Random(0)
        words = [w for w in open(__file__).read().split() if w.isalpha()] or ["token"]
        return [" ".join(rng.choice(words) for _ in range(700)) for _ in range(n)]


def build_tokenizer(texts: list[str], vocab: int):
    """A byte-level BPE tokenizer trained in-process (BOS added, EOS = pad), as tests/conftest.py."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>", padding_side="left")


def mistral_config(tiny: bool):
    from transformers import MistralConfig

    extra = dict(bos_token_id=1, eos_token_id=2, pad_token_id=2, attn_implementation="sdpa")
    if tiny:
        return MistralConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, head_dim=32, vocab_size=4096, **extra)
    return MistralConfig(**extra)  # Mistral-7B: 4096 hidden, 32 layers, 14336 FFN, 32k vocab


class Probe:
    """Wall time and peak GPU memory of one phase (peak RSS on CPU)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda

    def __enter__(self):
        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            self.mem_gib = torch.cuda.max_memory_allocated() / 2**30
        else:
            self.mem_gib = float("nan")
        self.seconds = time.perf_counter() - self.t


def free() -> None:
    """Release what the caller has dropped its references to."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny MistralConfig in fp32 on CPU (code-path check)")
    ap.add_argument("--quick", action="store_true", help="fewer texts (with --tiny: < 2 min on CPU)")
    ap.add_argument("--texts", type=int, default=256, help="512-token texts per measurement")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-tokens", type=int, default=16384, help="our Embedder's token budget per batch")
    ap.add_argument("--st-batch", type=int, default=32, help="sentence-transformers batch size")
    ap.add_argument("--precisions", default="bf16,8bit,4bit")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--train-seqs", type=int, default=8)
    ap.add_argument("--workdir", help="where to save the random model (default: a temp folder, removed after)")
    ap.add_argument("--save-only", action="store_true",
                    help="save the random model and its tokenizer to WORKDIR/mistral-random and stop "
                         "(a model folder for index_pipeline.py --model)")
    args = ap.parse_args()
    if args.save_only and not args.workdir:
        ap.error("--save-only needs --workdir")

    import torch

    warnings.filterwarnings("ignore", message=".*(deprecated|use_reentrant).*")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # "MatMul8bitLt: inputs will be cast" (fp32 CPU)
    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        raise SystemExit("gpu_embed.py needs a CUDA GPU (torch.cuda.is_available() is False here: torch "
                         f"{torch.__version__}). Run it on a GPU machine, or check the code path on CPU with "
                         "--tiny (a tiny Mistral in fp32).")
    if args.tiny:
        args.texts = min(args.texts, 16 if args.quick else 64)
        torch.set_num_threads(1)
    elif args.quick:
        args.texts, args.repeat, args.train_steps = 64, 1, 2
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    gpu = torch.cuda.get_device_name() if cuda else "cpu"
    peak = peak_tflops(gpu) if cuda else None
    common.quiet_transformers()
    start = common.header("gpu_embed", device=gpu, peak_bf16_tflops=peak, tiny=args.tiny, texts=args.texts,
                          max_length=args.max_length, batch_tokens=args.batch_tokens)

    from transformers import MistralModel

    from embedder import Embedder
    from embedder.spec import ModelSpec

    texts = corpus(args.texts)
    config = mistral_config(args.tiny)
    tokenizer = build_tokenizer(texts, min(8000, config.vocab_size))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="rag-bench-gpu-"))
    folder = work / "mistral-random"
    rows: list[dict] = []
    try:
        torch.manual_seed(0)
        with Probe(cuda) as p:
            previous = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            with torch.device(device):
                model = MistralModel(config).eval()  # random init, directly on the device
            torch.set_default_dtype(previous)
        n_params = sum(t.numel() for t in model.parameters())
        n_matmul = n_params - model.embed_tokens.weight.numel()
        print(f"# model: {n_params / 1e9:.3f}B parameters ({n_matmul / 1e9:.3f}B non-embedding), built in "
              f"{p.seconds:.1f}s, {p.mem_gib:.1f} GiB")
        spec = ModelSpec(name="mistral-7b-random" if not args.tiny else "tiny-mistral", decoder=True,
                         pooling="lasttoken", instructed=True, append_eos=True, max_length=config.max_position_embeddings)
        ours = Embedder(model, tokenizer, spec, max_length=args.max_length, batch_tokens=args.batch_tokens)
        tokens = sum(len(ids) for ids in ours.tokenize([ours.format_document(t) for t in texts]))
        print(f"# {len(texts)} texts, {tokens} tokens ({tokens / len(texts):.0f}/text)")

        def measure(label: str, fn, baseline: float | None = None) -> float:
            fn(texts[:4])  # warm-up (kernels, allocator)
            best, mem = float("inf"), float("nan")
            for _ in range(args.repeat):
                with Probe(cuda) as probe:
                    fn(texts)
                best, mem = min(best, probe.seconds), probe.mem_gib
            tps = tokens / best
            rows.append({"run": label, "tokens/s": tps, "texts/s": len(texts) / best,
                         "MFU %": 100 * 2 * n_matmul * tps / (peak * 1e12) if peak else float("nan"),
                         "peak GPU GiB": mem, "vs ST": tps / baseline if baseline else float("nan")})
            print(f"# {label}: {tps:,.0f} tokens/s, {mem:.1f} GiB, loadavg {common.loadavg()}", flush=True)
            return tps

        t, _ = common.timed(lambda: (model.save_pretrained(folder), tokenizer.save_pretrained(folder)))
        print(f"# saved the random model to {folder} in {t:.0f}s")
        if args.save_only:
            return
        ours_bf16 = measure(f"ours {'bf16' if cuda else 'fp32'} (constructor)", ours.embed_documents)
        ours.model = model = None
        free()

        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

        st = SentenceTransformer(modules=[
            Transformer(str(folder), max_seq_length=args.max_length,
                        model_kwargs={"dtype": dtype, "attn_implementation": "sdpa"}),
            Pooling(config.hidden_size, pooling_mode="lasttoken")], device=device)
        base = measure(f"sentence-transformers {'bf16' if cuda else 'fp32'} batch={args.st_batch} (baseline)",
                       lambda xs: st.encode(xs, batch_size=args.st_batch, normalize_embeddings=True))
        rows[0]["vs ST"] = ours_bf16 / base
        st = None
        free()

        quantized = None
        for q in [q for q in args.precisions.split(",") if q in ("8bit", "4bit")]:
            try:
                emb = Embedder.from_pretrained(str(folder), quantization=q, device=device, compile=False,
                                               max_length=args.max_length, batch_tokens=args.batch_tokens)
            except Exception as exc:  # noqa: BLE001 - e.g. no bitsandbytes backend on CPU
                print(f"# {q}: skipped ({type(exc).__name__}: {str(exc)[:160]})")
                continue
            measure(f"ours {q}" + (" NF4" if q == "4bit" else ""), emb.embed_documents, base)
            if q == "4bit":
                quantized = emb
            else:
                emb.model = emb = None
                free()
        if quantized is None:  # tiny / CPU: the same step on an unquantized base
            quantized = Embedder.from_pretrained(str(folder), device=device, max_length=args.max_length,
                                                 batch_tokens=args.batch_tokens, compile=False)
        train_row = qlora_step(quantized, texts, args, cuda)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    common.table(rows)
    common.table([train_row])
    common.footer(start)


def qlora_step(embedder, texts: list[str], args: argparse.Namespace, cuda: bool) -> dict:
    """Mean time and peak memory of LoRA training steps (after one warm-up step)."""
    import torch

    from finetune.losses import info_nce
    from finetune.train import TrainConfig, _lora

    base = "4-bit NF4" if getattr(embedder.model, "is_loaded_in_4bit", False) else str(embedder.model.dtype)
    config = TrainConfig(lora_r=16, lora_alpha=32, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"),
                         gradient_checkpointing=True)
    embedder.model = _lora(embedder, config)
    embedder.model.train()
    trainable = sum(p.numel() for p in embedder.model.parameters() if p.requires_grad)
    params = [p for p in embedder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    half = args.train_seqs // 2
    batch = [embedder.format_query(t[:2000]) for t in texts[:half]], texts[half:args.train_seqs]
    tokens = sum(len(x) for x in embedder.tokenize(batch[0] + batch[1]))

    def step() -> float:
        loss = info_nce(embedder.embed_with_grad(batch[0]), embedder.embed_with_grad(batch[1]), 0.02)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    step()  # warm-up
    with Probe(cuda) as p:
        losses = [step() for _ in range(args.train_steps)]
    seconds = p.seconds / args.train_steps
    print(f"# QLoRA: base {base}, {trainable / 1e6:.2f}M trainable, losses {[round(x, 3) for x in losses]}, "
          f"loadavg {common.loadavg()}")
    return {"run": f"LoRA r=16 q,k,v,o step, base {base}, grad ckpt", "batch": f"{args.train_seqs}x{args.max_length}",
            "tokens": tokens, "s/step": seconds, "tokens/s": tokens / seconds, "peak GPU GiB": p.mem_gib,
            "peak RSS MB": common.peak_rss_mb()}


if __name__ == "__main__":
    main()
