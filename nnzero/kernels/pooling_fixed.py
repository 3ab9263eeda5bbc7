"""Pooling kernels compiled for one window size (2x2 and 3x3).

With the kernel size known to the compiler the window loops unroll and the
argmax becomes a chain of selects (about 6x faster than runtime-sized loops
on 2x2 windows). Each kernel handles only the block of outputs whose window
lies wholly inside the image (``full_range``); the windows cut by padding go
to the general kernels of ``pooling.py``, which skip that block. The
factories' closure constants are part of numba's cache key, so each size is
compiled once per machine. (No NumPy twins here: with ``NNZERO_JIT=0`` the
general twins compute every output.)
"""
from __future__ import annotations

import numba
import numpy as np

from ._jit import njit
from .random import uniform_at

_SPECIALIZED = {}


def full_range(lo, hi, k):
    """[first, last+1) of the positions whose window is whole (lo == 0, hi == k);
    those form one contiguous run, since windows slide monotonically."""
    full = np.flatnonzero((lo == 0) & (hi == k))
    return (int(full[0]), int(full[-1]) + 1) if full.size else (0, 0)


def _make_max(kh_const, kw_const):
    def kernel(x, r0, c0, i0, i1, j0, j1, y, idx):
        """Whole windows only: outputs i0 <= i < i1, j0 <= j < j1."""
        w = x.shape[3]
        n, c = x.shape[:2]
        for nc in numba.prange(n * c):
            b = nc // c
            ch = nc - b * c
            for i in range(i0, i1):
                ri = r0[i]
                for j in range(j0, j1):
                    cj = c0[j]
                    best = x[b, ch, ri, cj]
                    at = ri * w + cj
                    for u in range(kh_const):
                        for v in range(kw_const):
                            val = x[b, ch, ri + u, cj + v]
                            take = (val > best) | (val != val)
                            best = val if take else best
                            at = (ri + u) * w + cj + v if take else at
                    y[b, ch, i, j] = best
                    idx[b, ch, i, j] = at
    kernel.__qualname__ = kernel.__name__ = f"max_forward_{kh_const}x{kw_const}"
    return njit(parallel=True)(kernel)


def _make_avg(kh_const, kw_const):
    def kernel(x, rlo, clo, i0, i1, j0, j1, div, y):
        """Whole windows only: outputs i0 <= i < i1, j0 <= j < j1."""
        n, c = x.shape[:2]
        for nc in numba.prange(n * c):
            b = nc // c
            ch = nc - b * c
            for i in range(i0, i1):
                r = rlo[i]
                for j in range(j0, j1):
                    q = clo[j]
                    s = x[b, ch, r, q]  # accumulate in x's dtype, so the loop vectorises
                    for u in range(kh_const):
                        for v in range(kw_const):
                            if u or v:  # resolved at compile time
                                s += x[b, ch, r + u, q + v]
                    y[b, ch, i, j] = s / div[i, j]
    kernel.__qualname__ = kernel.__name__ = f"avg_forward_{kh_const}x{kw_const}"
    return njit(parallel=True)(kernel)


def _make_avg_backward(kh_const, kw_const):
    def kernel(dy, rlo, clo, i0, i1, j0, j1, div, dx):
        """Zero dx, then add the whole windows' shares (outputs of the block)."""
        n, c = dy.shape[:2]
        for nc in numba.prange(n * c):
            b = nc // c
            ch = nc - b * c
            for r in range(dx.shape[2]):
                for q in range(dx.shape[3]):
                    dx[b, ch, r, q] = 0
            for i in range(i0, i1):
                r = rlo[i]
                for j in range(j0, j1):
                    q = clo[j]
                    g = dy[b, ch, i, j] / div[i, j]
                    for u in range(kh_const):
                        for v in range(kw_const):
                            dx[b, ch, r + u, q + v] += g
    kernel.__qualname__ = kernel.__name__ = f"avg_backward_{kh_const}x{kw_const}"
    return njit(parallel=True)(kernel)


def _make_stochastic(kh_const, kw_const):
    def kernel(x, rlo, clo, i0, i1, j0, j1, key, y, idx):
        """Whole windows only; the same sampling rule and draws, in x's dtype, as
        the general loop."""
        w = x.shape[3]
        n, c = x.shape[:2]
        oh, ow = y.shape[2], y.shape[3]
        for nc in numba.prange(n * c):
            b = nc // c
            ch = nc - b * c
            for i in range(i0, i1):
                r = rlo[i]
                for j in range(j0, j1):
                    q = clo[j]
                    s = x[b, ch, r, q]
                    for u in range(kh_const):
                        for v in range(kw_const):
                            if u or v:
                                s += x[b, ch, r + u, q + v]
                    target = uniform_at(key, (nc * oh + i) * ow + j) * s
                    # the running sum never decreases (a >= 0), so the first cell
                    # where it passes the target is the count of cells where it has not
                    run = s - s  # a zero of x's dtype (inputs are checked finite-or-inf >= 0)
                    k = 0
                    for u in range(kh_const):
                        for v in range(kw_const):
                            run += x[b, ch, r + u, q + v]
                            k += run <= target
                    if k == kh_const * kw_const:  # nothing passed (all-zero window): first cell
                        k = 0
                    ru = r + k // kw_const
                    qv = q + k % kw_const
                    y[b, ch, i, j] = x[b, ch, ru, qv]
                    idx[b, ch, i, j] = ru * w + qv
    kernel.__qualname__ = kernel.__name__ = f"stochastic_forward_{kh_const}x{kw_const}"
    return njit(parallel=True)(kernel)


_FACTORIES = {"max": _make_max, "avg": _make_avg, "avg_backward": _make_avg_backward,
              "stochastic": _make_stochastic}


def specialized(kind, kh, kw):
    """The compiled kernel for a ``kind`` ('max', 'avg', 'avg_backward') window of kh x kw."""
    key = (kind, kh, kw)
    if key not in _SPECIALIZED:
        _SPECIALIZED[key] = _FACTORIES[kind](kh, kw)
    return _SPECIALIZED[key]


SPECIALIZED_SIZES = ((2, 2), (3, 3))  # the sizes worth a compilation of their own
