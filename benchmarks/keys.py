"""Which users a request asks for: uniform, or Zipf-skewed like real popularity.

Pure Python (numpy is not a dependency): Zipf draws invert a precomputed CDF with
``bisect``, O(log N) per draw. Zipf ranks are scattered over the key space by a
multiplicative bijection so the popular users are not all neighbours in a sorted store,
which would flatter caches and block reads.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from array import array
from collections.abc import Callable
from functools import lru_cache

KeySampler = Callable[[], int]

UNIFORM = "uniform"
ZIPF = "zipf"
DISTRIBUTIONS = (UNIFORM, ZIPF)
ZIPF_EXPONENT = 1.0

# An odd constant near 2**32 / golden ratio (Knuth): a good multiplicative scatter.
_SCATTER = 2_654_435_761


@lru_cache(maxsize=4)
def zipf_cdf(n: int, exponent: float = ZIPF_EXPONENT) -> array[float]:
    """Cumulative probabilities of ranks 1..n, normalised so the last is exactly 1.0.

    Cached per process: one generator process reuses it for every point of a run
    (8 bytes per user: 8 MB for a million).
    """
    if n < 1:
        raise ValueError("zipf: need at least one key")
    weights = (1.0 / math.pow(rank, exponent) for rank in range(1, n + 1))
    cdf = array("d", itertools.accumulate(weights))
    total = cdf[-1]
    for index in range(n):
        cdf[index] /= total
    cdf[-1] = 1.0
    return cdf


@lru_cache(maxsize=16)
def scatter_factor(n: int) -> int:
    """A multiplier coprime to ``n``, so ``rank * factor % n`` is a permutation of 0..n-1."""
    factor = _SCATTER % n or 1
    while math.gcd(factor, n) != 1:
        factor += 1
    return factor


def make_sampler(
    distribution: str, n: int, rng: random.Random, exponent: float = ZIPF_EXPONENT
) -> KeySampler:
    """A function drawing one user index in ``range(n)``."""
    if distribution == UNIFORM:
        randrange = rng.randrange
        return lambda: randrange(n)
    if distribution == ZIPF:
        cdf = zipf_cdf(n, exponent)
        factor = scatter_factor(n)
        uniform = rng.random
        find = bisect.bisect_left

        def zipf() -> int:
            rank = find(cdf, uniform())  # 0 = most popular
            return rank * factor % n

        return zipf
    raise ValueError(f"key distribution {distribution!r}: expected one of {DISTRIBUTIONS}")
