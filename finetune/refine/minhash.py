"""Near-duplicate search over shingle sets: MinHash-LSH candidates, verified with the exact Jaccard."""

from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from .text import jaccard

logger = logging.getLogger(__name__)

_MERSENNE = np.uint64((1 << 61) - 1)
_NUM_PERM = 128
_BANDS = 32  # 32 bands x 4 rows: a pair with Jaccard 0.7 becomes a candidate with p > 0.9998


def _minhash(sh: frozenset[str], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if not sh:
        return np.full(a.shape, np.iinfo(np.uint64).max, dtype=np.uint64)
    h = np.fromiter((zlib.crc32(s.encode()) for s in sh), dtype=np.uint64, count=len(sh))
    return ((np.outer(a, h) + b[:, None]) % _MERSENNE).min(axis=1)


def near_duplicate_groups(texts: Sequence[frozenset[str]], threshold: float, seed: int = 0) -> list[int]:
    """For each shingle set, the index of the earlier *kept* set it duplicates (Jaccard >= threshold), or -1.

    Greedy in input order: the first of a group is kept, later ones point at it. Candidate
    pairs come from MinHash LSH (recall > 0.999 for Jaccard >= 0.7; lower thresholds may miss
    pairs) and are verified with the exact Jaccard, so no false duplicates are reported.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 1 << 61, size=_NUM_PERM, dtype=np.uint64)
    b = rng.integers(0, 1 << 61, size=_NUM_PERM, dtype=np.uint64)
    rows = _NUM_PERM // _BANDS
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    owner = [-1] * len(texts)
    for i, sh in enumerate(texts):
        sig = _minhash(sh, a, b)
        keys = [(band, sig[band * rows:(band + 1) * rows].tobytes()) for band in range(_BANDS)]
        candidates = dict.fromkeys(j for key in keys for j in buckets.get(key, ()))
        match = next((j for j in sorted(candidates) if jaccard(sh, texts[j]) >= threshold), -1)
        owner[i] = match
        if match == -1:
            for key in keys:
                buckets[key].append(i)
    return owner
