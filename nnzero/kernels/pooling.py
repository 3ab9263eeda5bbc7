"""Window loops of pooling, directly on NCHW planes (no im2col copy).

Every kernel receives the window geometry precomputed by the caller as small
integer arrays (see ``functional/pooling.py``): for output row i the window
rows are ``r0[i] + u*dh`` for ``u`` in ``[ulo[i], uhi[i])`` (only rows inside
the image; padding is never read), likewise ``c0[j]``, ``vlo[j]``, ``vhi[j]``
for columns. The numba kernels run the N*C planes in parallel (each thread
owns whole planes, so the backward scatters never race); the NumPy twins
loop over the KH*KW kernel offsets with strided views of a padded copy.

Index convention: flat positions ``r*W + q`` within a plane, as PyTorch's
``return_indices``. Max: a value replaces the running maximum when it is
greater or NaN, so ties go to the first maximum in row-major window order and
a NaN wins (the last one), exactly as ATen.
"""
from __future__ import annotations

import numba
import numpy as np

from ._jit import JIT_ENABLED, choose, njit
from .pooling_fixed import SPECIALIZED_MAX_STRIDE, SPECIALIZED_SIZES, full_range, specialized  # noqa: F401,E501
from .random import uniform_at, uniform_numpy


# The numba kernels walk one output row at a time and, inside it, the window
# offsets (u, v) in row-major order, each offset a simple loop over the output
# columns j: no per-element bound tests, and the loops vectorise. Processing
# offsets in row-major order keeps the tie rule (first maximum wins).
@njit(inline="always")
def _border_columns(inner, j0, j1, ow, part):
    """Columns of a row outside the block [j0, j1) (all of them for a border row)."""
    if part == 0:
        return 0, (j0 if inner else ow)
    return (j1 if inner else ow), ow


# -- max ------------------------------------------------------------------------------
@njit(parallel=True)
def max_forward_numba(x, r0, ulo, uhi, dh, c0, vlo, vhi, dw, y, idx, skip=(0, 0, 0, 0)):
    """Any window; ``skip`` = (i0, i1, j0, j1) is a block of outputs that a
    kernel compiled for the window size has already computed."""
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    i0, i1, j0, j1 = skip
    for nc in numba.prange(n * c):
        b = nc // c
        ch = nc - b * c
        for i in range(oh):
            inner = i0 <= i < i1
            for part in range(2):
                lo, hi = _border_columns(inner, j0, j1, ow, part)
                for j in range(lo, hi):
                    r = r0[i] + ulo[i] * dh
                    q = c0[j] + vlo[j] * dw
                    best = x[b, ch, r, q]  # the first real cell; keeps x's dtype
                    at = r * w + q
                    for u in range(ulo[i], uhi[i]):
                        r = r0[i] + u * dh
                        for v in range(vlo[j], vhi[j]):
                            q = c0[j] + v * dw
                            val = x[b, ch, r, q]
                            if val > best or val != val:
                                best = val
                                at = r * w + q
                    y[b, ch, i, j] = best
                    idx[b, ch, i, j] = at


@njit(parallel=True)
def index_backward_numba(dy, idx, dx):
    """dx[p, idx[p, k]] += dy[p, k] for each plane p (max and stochastic pooling).

    Arrays come flattened per plane: dy, idx (N*C, OH*OW), dx (N*C, H*W), so
    the flat index needs no division.
    """
    for p in numba.prange(dx.shape[0]):
        for k in range(dx.shape[1]):
            dx[p, k] = 0
        for k in range(dy.shape[1]):
            dx[p, idx[p, k]] += dy[p, k]


def _padded(x, r0, uhi, dh, c0, vhi, dw, fill):
    """x inside a frame of ``fill`` wide enough for every window; returns it and the offsets."""
    n, c, h, w = x.shape
    top, left = max(0, -int(r0.min())), max(0, -int(c0.min()))
    bottom = max(0, int((r0 + (uhi.max() - 1) * dh).max()) + 1 - h) if len(r0) else 0
    right = max(0, int((c0 + (vhi.max() - 1) * dw).max()) + 1 - w) if len(c0) else 0
    xp = np.full((n, c, top + h + bottom, left + w + right), fill, dtype=x.dtype)
    xp[:, :, top:top + h, left:left + w] = x
    return xp, top, left


def _offset_view(xp, top, left, r0, c0, u, v, dh, dw):
    rows = r0 + u * dh + top
    cols = c0 + v * dw + left
    return xp[:, :, rows[:, None], cols[None, :]], rows - top, cols - left


def max_forward_numpy(x, r0, ulo, uhi, dh, c0, vlo, vhi, dw, y, idx, skip=(0, 0, 0, 0)):
    """(Computes every output; ``skip`` only matters to the compiled kernel.)"""
    n, c, h, w = x.shape
    kh, kw = int(uhi.max()), int(vhi.max())
    xp, top, left = _padded(x, r0, np.full_like(uhi, kh), dh, c0, np.full_like(vhi, kw), dw,
                            -np.inf)
    best = np.full(y.shape, -np.inf, dtype=x.dtype)
    at = np.broadcast_to(((r0 + ulo * dh) * w)[:, None] + (c0 + vlo * dw)[None, :],
                         y.shape).copy()
    for u in range(kh):
        for v in range(kw):
            vals, rows, cols = _offset_view(xp, top, left, r0, c0, u, v, dh, dw)
            inside = ((u >= ulo) & (u < uhi))[:, None] & ((v >= vlo) & (v < vhi))[None, :]
            take = inside & ((vals > best) | np.isnan(vals))
            best = np.where(take, vals, best)
            at = np.where(take, rows[:, None] * w + cols[None, :], at)
    y[...] = best
    idx[...] = at


def index_backward_numpy(dy, idx, dx):
    planes, size = dx.shape
    target = np.arange(planes)[:, None] * size + idx       # position in the flattened dx
    sums = np.bincount(target.reshape(-1), weights=dy.reshape(-1).astype(np.float64),
                       minlength=dx.size)
    dx[...] = sums.reshape(dx.shape)


# -- average --------------------------------------------------------------------------
@njit(parallel=True)
def avg_forward_numba(x, rlo, rhi, clo, chi, div, y, skip=(0, 0, 0, 0)):
    n, c = x.shape[:2]
    oh, ow = y.shape[2], y.shape[3]
    i0, i1, j0, j1 = skip
    for nc in numba.prange(n * c):
        b = nc // c
        ch = nc - b * c
        for i in range(oh):
            inner = i0 <= i < i1
            for part in range(2):
                lo, hi = _border_columns(inner, j0, j1, ow, part)
                for j in range(lo, hi):
                    s = x[b, ch, rlo[i], clo[j]]  # in x's dtype
                    first = True
                    for r in range(rlo[i], rhi[i]):
                        for q in range(clo[j], chi[j]):
                            if not first:
                                s += x[b, ch, r, q]
                            first = False
                    y[b, ch, i, j] = s / div[i, j]


@njit(parallel=True)
def avg_backward_numba(dy, rlo, rhi, clo, chi, div, dx, skip=(0, 0, 0, 0)):
    """Adds dy/div to every real cell of each window; with a ``skip`` block the
    caller has zeroed dx and added that block's share already."""
    n, c, oh, ow = dy.shape
    i0, i1, j0, j1 = skip
    for nc in numba.prange(n * c):
        b = nc // c
        ch = nc - b * c
        if i1 == 0:
            for r in range(dx.shape[2]):
                for q in range(dx.shape[3]):
                    dx[b, ch, r, q] = 0
        for i in range(oh):
            inner = i0 <= i < i1
            for part in range(2):
                lo, hi = _border_columns(inner, j0, j1, ow, part)
                for j in range(lo, hi):
                    g = dy[b, ch, i, j] / div[i, j]
                    for r in range(rlo[i], rhi[i]):
                        for q in range(clo[j], chi[j]):
                            dx[b, ch, r, q] += g


def avg_forward_numpy(x, rlo, rhi, clo, chi, div, y, skip=(0, 0, 0, 0)):
    """(Computes every output; ``skip`` only matters to the compiled kernel.)"""
    n, c, h, w = x.shape
    kh, kw = int((rhi - rlo).max()), int((chi - clo).max())
    s = np.zeros(y.shape, dtype=np.float64)
    for u in range(kh):  # window offsets in row-major order, as the loops add them
        rows = np.minimum(rlo + u, h - 1)
        for v in range(kw):
            cols = np.minimum(clo + v, w - 1)
            inside = ((rlo + u) < rhi)[:, None] & ((clo + v) < chi)[None, :]
            s += np.where(inside, x[:, :, rows[:, None], cols[None, :]], 0)
    y[...] = s / div


def avg_backward_numpy(dy, rlo, rhi, clo, chi, div, dx, skip=(0, 0, 0, 0)):
    """(Computes all of dx; ``skip`` only matters to the compiled kernels.)"""
    n, c, h, w = dx.shape
    g = (dy / div).reshape(n * c, -1).astype(np.float64)
    kh, kw = int((rhi - rlo).max()), int((chi - clo).max())
    plane = np.arange(n * c)[:, None] * (h * w)
    targets, weights = [], []
    for u in range(kh):  # every (window, offset) pair sends g to one cell
        for v in range(kw):
            inside = (((rlo + u) < rhi)[:, None] & ((clo + v) < chi)[None, :]).reshape(-1)
            cell = ((rlo + u)[:, None] * w + (clo + v)[None, :]).reshape(-1)
            targets.append((plane + cell[None, :])[:, inside].reshape(-1))
            weights.append(g[:, inside].reshape(-1))
    sums = np.bincount(np.concatenate(targets), weights=np.concatenate(weights),
                       minlength=dx.size)
    dx[...] = sums.reshape(dx.shape)


# -- stochastic (Zeiler & Fergus 2013) -----------------------------------------------
@njit(parallel=True)
def stochastic_forward_numba(x, rlo, rhi, clo, chi, key, y, idx, skip=(0, 0, 0, 0)):
    """Pick the first cell whose running sum exceeds u*S (S the window sum, u the
    draw ``uniform_at(key, flat output index)``); an all-zero window picks its
    first cell (value 0)."""
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    i0, i1, j0, j1 = skip
    for nc in numba.prange(n * c):
        b = nc // c
        ch = nc - b * c
        plane = x[b, ch]
        for i in range(oh):
            for j in range(ow):
                if i0 <= i < i1 and j0 <= j < j1:
                    continue
                s = plane[rlo[i], clo[j]] * 0  # sums in x's dtype, as the twin's cumsum
                for r in range(rlo[i], rhi[i]):
                    for q in range(clo[j], chi[j]):
                        s += plane[r, q]
                target = uniform_at(key, (nc * oh + i) * ow + j) * s
                at = rlo[i] * w + clo[j]
                val = plane[rlo[i], clo[j]]
                run = s * 0
                found = False
                for r in range(rlo[i], rhi[i]):
                    for q in range(clo[j], chi[j]):
                        run += plane[r, q]
                        if run > target and not found:
                            at = r * w + q
                            val = plane[r, q]
                            found = True
                y[b, ch, i, j] = val
                idx[b, ch, i, j] = at


def stochastic_forward_numpy(x, rlo, rhi, clo, chi, key, y, idx, skip=(0, 0, 0, 0)):
    n, c, h, w = x.shape
    oh, ow = len(rlo), len(clo)
    planes = np.arange(n * c, dtype=np.int64).reshape(n, c) * (oh * ow)
    for i in range(oh):
        for j in range(ow):
            u = uniform_numpy(key, planes + (i * ow + j))
            flat = x[:, :, rlo[i]:rhi[i], clo[j]:chi[j]].reshape(n, c, -1)
            run = np.cumsum(flat, axis=2)  # in x's dtype, summed in window order
            s = run[:, :, -1]
            hit = run > (u * s)[..., None]
            k = np.where(hit.any(axis=2), np.argmax(hit, axis=2), 0)
            width = chi[j] - clo[j]
            idx[:, :, i, j] = (rlo[i] + k // width) * w + clo[j] + k % width
            y[:, :, i, j] = np.take_along_axis(flat, k[..., None], axis=2)[..., 0]


@njit(parallel=True)
def stochastic_eval_forward_numba(x, rlo, rhi, clo, chi, y, s_out):
    """y = sum(a^2) / S (probability-weighted average), 0 for an all-zero window."""
    n, c = x.shape[:2]
    oh, ow = y.shape[2], y.shape[3]
    for nc in numba.prange(n * c):
        b = nc // c
        ch = nc - b * c
        plane = x[b, ch]
        for i in range(oh):
            for j in range(ow):
                s = 0.0
                s2 = 0.0
                for r in range(rlo[i], rhi[i]):
                    for q in range(clo[j], chi[j]):
                        a = plane[r, q]
                        s += a
                        s2 += a * a
                y[b, ch, i, j] = s2 / s if s > 0 else 0.0
                s_out[b, ch, i, j] = s


@njit(parallel=True)
def stochastic_eval_backward_numba(x, dy, y, s_in, rlo, rhi, clo, chi, dx):
    """dy/da_k = (2 a_k - y) / S over the window; nothing for an all-zero window."""
    n, c, oh, ow = dy.shape
    for nc in numba.prange(n * c):
        b = nc // c
        ch = nc - b * c
        plane = dx[b, ch]
        plane[:, :] = 0
        for i in range(oh):
            for j in range(ow):
                s = s_in[b, ch, i, j]
                if s > 0:
                    g = dy[b, ch, i, j] / s
                    yy = y[b, ch, i, j]
                    for r in range(rlo[i], rhi[i]):
                        for q in range(clo[j], chi[j]):
                            plane[r, q] += g * (2 * x[b, ch, r, q] - yy)


def stochastic_eval_forward_numpy(x, rlo, rhi, clo, chi, y, s_out):
    div = np.ones((len(rlo), len(clo)), dtype=np.float64)
    s = np.empty(y.shape, dtype=np.float64)
    s2 = np.empty(y.shape, dtype=np.float64)
    avg_forward_numpy(x, rlo, rhi, clo, chi, div, s)
    avg_forward_numpy(x.astype(np.float64) ** 2, rlo, rhi, clo, chi, div, s2)
    safe = np.where(s > 0, s, 1)
    y[...] = np.where(s > 0, s2 / safe, 0)
    s_out[...] = s


def stochastic_eval_backward_numpy(x, dy, y, s_in, rlo, rhi, clo, chi, dx):
    safe = np.where(s_in > 0, s_in, 1)
    g = np.where(s_in > 0, dy / safe, 0)
    ones = np.ones((len(rlo), len(clo)), dtype=np.float64)
    spread_g = np.empty(dx.shape, dtype=np.float64)
    spread_gy = np.empty(dx.shape, dtype=np.float64)
    avg_backward_numpy(g, rlo, rhi, clo, chi, ones, spread_g)
    avg_backward_numpy(g * y, rlo, rhi, clo, chi, ones, spread_gy)
    dx[...] = 2 * x * spread_g - spread_gy


max_forward = choose(max_forward_numba, max_forward_numpy)
index_backward = choose(index_backward_numba, index_backward_numpy)
avg_forward = choose(avg_forward_numba, avg_forward_numpy)
avg_backward = choose(avg_backward_numba, avg_backward_numpy)
stochastic_forward = choose(stochastic_forward_numba, stochastic_forward_numpy)
stochastic_eval_forward = choose(stochastic_eval_forward_numba, stochastic_eval_forward_numpy)
stochastic_eval_backward = choose(stochastic_eval_backward_numba, stochastic_eval_backward_numpy)
