"""Pooling kernels compiled for one window size (2x2 and 3x3).

With the kernel size known to the compiler the window loops unroll and the
argmax becomes a chain of selects (about 6x faster than runtime-sized loops
on 2x2 windows). Each kernel handles only the block of outputs whose window
lies wholly inside the image (``full_range``); the windows cut by padding go
to the general kernels of ``pooling.py``, which skip that block. When the
block is the whole output grid, a variant with the stride compiled in
computes the window starts by arithmetic the compiler sees
through and vectorises (see ``specialized``). The factories' closure
constants are part of numba's cache key, so each variant is compiled once
per machine, on first use. (No NumPy twins here: with ``NNZERO_JIT=0`` the
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


def _compiled(kernel, kind, kh, kw, sh, sw, whole):
    """njit(parallel=True) of ``kernel`` under a name that tells its constants apart."""
    kernel.__qualname__ = kernel.__name__ = (f"{kind}_{kh}x{kw}_s{sh}x{sw}"
                                             + ("_whole" if whole else ""))
    return njit(parallel=True)(kernel)


def _make_max(kh_const, kw_const, sh_const, sw_const, whole):
    def kernel(x, r0, c0, i0, i1, j0, j1, y, idx):
        """Whole windows only: outputs i0 <= i < i1, j0 <= j < j1."""
        w = x.shape[3]
        n, c = x.shape[:2]
        if whole:  # resolved at compile time; bounds from the shape let the loops vectorise
            i0, i1, j0, j1 = 0, y.shape[2], 0, y.shape[3]
        for nc in numba.prange(n * c):
            b = nc // c
            ch = nc - b * c
            for i in range(i0, i1):
                ri = i * sh_const if whole else r0[i]
                for j in range(j0, j1):
                    cj = j * sw_const if whole else c0[j]
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
    return _compiled(kernel, "max_forward", kh_const, kw_const, sh_const, sw_const, whole)


def _make_avg(kh_const, kw_const, sh_const, sw_const, whole):
    def kernel(x, r0, c0, i0, i1, j0, j1, div, y):
        """Whole windows only: outputs i0 <= i < i1, j0 <= j < j1."""
        n, c = x.shape[:2]
        if whole:
            i0, i1, j0, j1 = 0, y.shape[2], 0, y.shape[3]
        for nc in numba.prange(n * c):
            b = nc // c
            ch = nc - b * c
            for i in range(i0, i1):
                r = i * sh_const if whole else r0[i]
                for j in range(j0, j1):
                    q = j * sw_const if whole else c0[j]
                    s = x[b, ch, r, q]  # accumulate in x's dtype, so the loop vectorises
                    for u in range(kh_const):
                        for v in range(kw_const):
                            if u or v:  # resolved at compile time
                                s += x[b, ch, r + u, q + v]
                    y[b, ch, i, j] = s / div[i, j]
    return _compiled(kernel, "avg_forward", kh_const, kw_const, sh_const, sw_const, whole)


def _make_avg_backward(kh_const, kw_const, sh_const, sw_const, whole):
    def kernel(dy, r0, c0, i0, i1, j0, j1, div, dx):
        """Zero dx, then add the whole windows' shares (outputs of the block)."""
        n, c = dy.shape[:2]
        if whole:
            i0, i1, j0, j1 = 0, dy.shape[2], 0, dy.shape[3]
        for nc in numba.prange(n * c):
            b = nc // c
            ch = nc - b * c
            for r in range(dx.shape[2]):
                for q in range(dx.shape[3]):
                    dx[b, ch, r, q] = 0
            for i in range(i0, i1):
                r = i * sh_const if whole else r0[i]
                for j in range(j0, j1):
                    q = j * sw_const if whole else c0[j]
                    g = dy[b, ch, i, j] / div[i, j]
                    for u in range(kh_const):
                        for v in range(kw_const):
                            dx[b, ch, r + u, q + v] += g
    return _compiled(kernel, "avg_backward", kh_const, kw_const, sh_const, sw_const, whole)


def _make_avg_backward_tiled(kh_const, kw_const, sh_const, sw_const, whole):
    def kernel(dy, div, dx):
        """Windows that tile the plane exactly (stride = kernel, no padding,
        H = OH*KH, W = OW*KW): every dx cell gets one window's share, written
        once row by row, so no zero fill and no read-modify-write."""
        n, c, oh, ow = dy.shape
        w = dx.shape[3]
        for nc in numba.prange(n * c):
            b = nc // c
            ch = nc - b * c
            for i in range(oh):
                for u in range(kh_const):
                    r = i * kh_const + u
                    for q in range(w):
                        j = q // kw_const
                        dx[b, ch, r, q] = dy[b, ch, i, j] / div[i, j]
    return _compiled(kernel, "avg_backward_tiled", kh_const, kw_const, sh_const, sw_const,
                     whole)


def _make_stochastic(kh_const, kw_const, sh_const, sw_const, whole):
    def kernel(x, r0, c0, i0, i1, j0, j1, key, y, idx):
        """Whole windows only; the same sampling rule and draws, in x's dtype, as
        the general loop."""
        w = x.shape[3]
        n, c = x.shape[:2]
        oh, ow = y.shape[2], y.shape[3]
        if whole:
            i0, i1, j0, j1 = 0, oh, 0, ow
        for nc in numba.prange(n * c):
            b = nc // c
            ch = nc - b * c
            for i in range(i0, i1):
                r = i * sh_const if whole else r0[i]
                for j in range(j0, j1):
                    q = j * sw_const if whole else c0[j]
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
                    # the chosen value by selects over the (cached) window rather than a
                    # load at a computed address: the loop over j stays vectorised
                    val = x[b, ch, r, q]
                    for u in range(kh_const):
                        for v in range(kw_const):
                            if u or v:
                                cell = x[b, ch, r + u, q + v]
                                val = cell if k == u * kw_const + v else val
                    y[b, ch, i, j] = val
                    idx[b, ch, i, j] = (r + k // kw_const) * w + q + k % kw_const
    return _compiled(kernel, "stochastic_forward", kh_const, kw_const, sh_const, sw_const,
                     whole)


_FACTORIES = {"max": _make_max, "avg": _make_avg, "avg_backward": _make_avg_backward,
              "avg_backward_tiled": _make_avg_backward_tiled, "stochastic": _make_stochastic}


def specialized(kind, kh, kw, sh=0, sw=0, whole=False):
    """The compiled kernel for a ``kind`` ('max', 'avg', 'avg_backward',
    'avg_backward_tiled', 'stochastic') window of kh x kw.

    The kernels take the window starts r0/c0 (arrays) and a block of outputs.
    ``whole``: the block is the whole output grid (so no window touches the
    padding, and there is none); that variant ignores its block arguments and
    the arrays, taking its bounds from the output's shape and the window
    starts ``i*sh``, ``j*sw`` from the stride compiled in: with the loops known
    to start at 0 and the starts plain arithmetic, the loads over j vectorise
    (about 2x faster on 2x2/2 windows). For a partial block the stride is not
    used; there, the arrays measured faster (3x3/2 windows with padding 1:
    ~12 ms against ~18 ms with the starts computed). 'avg_backward_tiled' is
    always whole, with stride = window."""
    if kind == "avg_backward_tiled":
        sh, sw, whole = kh, kw, True
    if not whole:
        sh = sw = 0  # unused: one compilation per window size
    key = (kind,) + tuple(int(v) for v in (kh, kw, sh, sw, bool(whole)))
    if key not in _SPECIALIZED:
        _SPECIALIZED[key] = _FACTORIES[kind](*key[1:])
    return _SPECIALIZED[key]


SPECIALIZED_SIZES = ((2, 2), (3, 3))  # the sizes worth a compilation of their own
SPECIALIZED_MAX_STRIDE = 3            # larger strides take the general loops
