"""Counter-based uniform numbers for kernels that sample once per output.

Stochastic pooling needs one U[0, 1) draw per window. Drawing them with
``Generator.random`` filled a buffer as large as the output and took about
40% of the layer's time; instead the layer draws a single 64-bit ``key`` from
its Generator per call, and the kernel derives the draw for output ``n``
(its flat C-order index) as

    u(key, n) = top 24 bits of splitmix64(key + (n + 1) * 0x9E3779B97F4A7C15) / 2**24

i.e. the n-th output of Steele, Lea & Flood's SplitMix64 generator (the one
behind Java's ``SplittableRandom`` and NumPy's seeding) started at ``key``.
Each draw is a pure function of (key, n): threads need no shared state, the
result does not depend on the thread count, and a seeded Generator still
reproduces every sample. The 24 bits make every value an exact float32 in
[0, 1), the resolution of ``Generator.random(dtype=float32)``.

``uniform_at`` is for numba code; ``uniform_numpy`` is its twin on an array of
counters (uint64 arithmetic wraps modulo 2**64 in both).
"""
from __future__ import annotations

import numpy as np

from ._jit import njit

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)
_ONE = np.uint64(1)
_SCALE = np.float32(1.0 / (1 << 24))


@njit(inline="always")
def uniform_at(key, n):
    """The draw for counter ``n`` (an integer >= 0) under ``key`` (a uint64)."""
    z = key + (np.uint64(n) + _ONE) * _GAMMA
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return np.float32(z >> _S40) * _SCALE


def uniform_numpy(key, counters):
    """``uniform_at`` for every entry of ``counters`` (any integer array), as float32."""
    n = np.asarray(counters).astype(np.uint64)
    z = np.uint64(key) + (n + _ONE) * _GAMMA
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return (z >> _S40).astype(np.float32) * _SCALE


def draw_key(rng):
    """One uint64 key from a ``numpy.random.Generator``."""
    return np.uint64(rng.integers(0, 2 ** 64, dtype=np.uint64))
