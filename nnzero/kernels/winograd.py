"""Tile transforms of Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2015).

A 3x3 stride-1 convolution computes each 2x2 output tile from a 4x4 input
tile d (tiles start every 2 rows/columns) with 16 multiplies instead of 36:

    V = B^T d B          (input transform, 4x4 per tile and channel)
    U = G g G^T          (filter transform, 4x4 per (o, c), done in NumPy)
    M = sum_c U . V      (per position xi of the 4x4: a GEMM over channels)
    Y = A^T M A          (output transform, the 2x2 tile)

    B^T = [[1, 0,-1, 0],   G = [[ 1,   0,   0 ],   A^T = [[1, 1, 1, 0],
           [0, 1, 1, 0],        [1/2, 1/2, 1/2],          [0, 1,-1,-1]]
           [0,-1, 1, 0],        [1/2,-1/2, 1/2],
           [0, 1, 0,-1]]        [ 0,   0,   1 ]]

The backward pass uses the transposed transforms: dM = A dY A^T and
dd = B dV B^T, the latter scattered back (tiles overlap by 2) with ``+=``.

Layouts: V, M, dM, dV are (16, channels, T) with xi = 4*i + j and
T = N*TH*TW tiles (t = (n*TH + th)*TW + tw). Every kernel runs over whole
(n, channel) planes, split over the threads, so no two threads write the same place.
Tiles reaching past the image read zeros (that is the padding) and drop
what they would write there.
"""
from __future__ import annotations

import numpy as np

from ._jit import choose, njit
from ._pool import split_kernel

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


# The numba kernels copy each (n, channel) plane into a zero-padded buffer
# first, so the tile loops carry no bounds tests and the innermost loops (over
# a whole row, or over tile columns writing 16 contiguous streams) vectorise.
# Each is a compiled loop over a range of planes (``*_range``) with one set of
# scratch buffers per call, reused plane after plane so it stays small and in
# cache; ``_pool.split_kernel`` makes the entry points that split the planes
# over the threads (``*_numba``) or run them all on the calling one
# (``*_serial``).
#
# The input and output transforms index row views by the loop counter only
# (``v0[tw] = a0[2 * tw] - a2[2 * tw]``, each view taken once per tile row),
# which spares numba's wraparound test on every computed index: measured on
# one thread, conv_mid's shapes, interleaved, 9 rounds, the input transform
# 1.15x and the output transform 1.7x faster, results bit for bit the same.
# The same rewrite of the two gradient transforms measured no faster (they
# are bound by their 16 scattered output streams) and was left out.


@njit
def _input_transform_range(x, pt, pl, th_n, tw_n, v, lo, hi):
    n, c, h, w = x.shape
    rows, cols = 2 * th_n + 2, 2 * tw_n + 2
    dk = np.zeros((rows, cols), dtype=x.dtype)
    tk = np.empty((4, cols), dtype=x.dtype)
    r_lo, r_hi = max(0, -pt), min(h, rows - pt)
    q_lo, q_hi = max(0, -pl), min(w, cols - pl)
    wq = q_hi - q_lo
    t0, t1, t2, t3 = tk[0], tk[1], tk[2], tk[3]
    for nc in range(lo, hi):
        b = nc // c
        ch = nc - b * c
        for r in range(r_lo, r_hi):
            src = x[b, ch, r, q_lo:q_hi]
            dst = dk[r + pt, q_lo + pl:q_hi + pl]
            for q in range(wq):
                dst[q] = src[q]
        for th in range(th_n):
            d0, d1, d2, d3 = dk[2 * th], dk[2 * th + 1], dk[2 * th + 2], dk[2 * th + 3]
            for q in range(cols):  # rows of B^T d, whole image width at once
                t0[q] = d0[q] - d2[q]
                t1[q] = d1[q] + d2[q]
                t2[q] = d2[q] - d1[q]
                t3[q] = d1[q] - d3[q]
            base = (b * th_n + th) * tw_n
            for i in range(4):  # columns: (B^T d) B, tile by tile
                ti = tk[i]
                a0, a1, a2, a3 = ti[0:], ti[1:], ti[2:], ti[3:]
                v0 = v[4 * i, ch, base:base + tw_n]
                v1 = v[4 * i + 1, ch, base:base + tw_n]
                v2 = v[4 * i + 2, ch, base:base + tw_n]
                v3 = v[4 * i + 3, ch, base:base + tw_n]
                for tw in range(tw_n):
                    v0[tw] = a0[2 * tw] - a2[2 * tw]
                    v1[tw] = a1[2 * tw] + a2[2 * tw]
                    v2[tw] = a2[2 * tw] - a1[2 * tw]
                    v3[tw] = a1[2 * tw] - a3[2 * tw]


@njit
def _output_transform_range(m, oh, ow, y, lo, hi):
    o = y.shape[1]
    th_n = (oh + 1) // 2
    tw_n = (ow + 1) // 2
    ok = np.empty((2 * th_n, 2 * tw_n), dtype=y.dtype)
    rk = np.empty((8, tw_n), dtype=y.dtype)
    for no in range(lo, hi):
        b = no // o
        oc = no - b * o
        for th in range(th_n):
            base = (b * th_n + th) * tw_n
            for j in range(4):   # r_a,j = (A^T M)_a,j over the tile row
                m0 = m[j, oc, base:base + tw_n]
                m1 = m[4 + j, oc, base:base + tw_n]
                m2 = m[8 + j, oc, base:base + tw_n]
                m3 = m[12 + j, oc, base:base + tw_n]
                ra = rk[j]
                rb = rk[4 + j]
                for tw in range(tw_n):
                    ra[tw] = m0[tw] + m1[tw] + m2[tw]
                    rb[tw] = m1[tw] - m2[tw] - m3[tw]
            o0 = ok[2 * th]
            o1 = ok[2 * th + 1]
            e0 = o0[0:]
            e1 = o0[1:]
            f0 = o1[0:]
            f1 = o1[1:]
            r00, r01, r02, r03 = rk[0], rk[1], rk[2], rk[3]
            r10, r11, r12, r13 = rk[4], rk[5], rk[6], rk[7]
            for tw in range(tw_n):
                e0[2 * tw] = r00[tw] + r01[tw] + r02[tw]
                e1[2 * tw] = r01[tw] - r02[tw] - r03[tw]
                f0[2 * tw] = r10[tw] + r11[tw] + r12[tw]
                f1[2 * tw] = r11[tw] - r12[tw] - r13[tw]
        for rr in range(oh):
            src = ok[rr, :ow]
            dst = y[b, oc, rr]
            for q in range(ow):
                dst[q] = src[q]


@njit
def _output_grad_range(dy, th_n, tw_n, dm, lo, hi):
    n, o, oh, ow = dy.shape
    cols = 2 * tw_n
    g = np.zeros((2 * th_n, cols), dtype=dy.dtype)
    e = np.empty((4, cols), dtype=dy.dtype)
    for no in range(lo, hi):
        b = no // o
        oc = no - b * o
        for r in range(oh):
            for q in range(ow):
                g[r, q] = dy[b, oc, r, q]
        for th in range(th_n):
            r0 = 2 * th
            for q in range(cols):  # rows of A dY
                e[0, q] = g[r0, q]
                e[1, q] = g[r0, q] + g[r0 + 1, q]
                e[2, q] = g[r0, q] - g[r0 + 1, q]
                e[3, q] = -g[r0 + 1, q]
            base = (b * th_n + th) * tw_n
            for i in range(4):  # columns: (A dY) A^T
                for tw in range(tw_n):
                    q = 2 * tw
                    dm[4 * i, oc, base + tw] = e[i, q]
                    dm[4 * i + 1, oc, base + tw] = e[i, q] + e[i, q + 1]
                    dm[4 * i + 2, oc, base + tw] = e[i, q] - e[i, q + 1]
                    dm[4 * i + 3, oc, base + tw] = -e[i, q + 1]


@njit
def _input_grad_range(dv, pt, pl, th_n, tw_n, dx, lo, hi):
    n, c, h, w = dx.shape
    rows, cols = 2 * th_n + 2, 2 * tw_n + 2
    acc = np.empty((rows, cols), dtype=dx.dtype)
    hh = np.empty((4, cols), dtype=dx.dtype)
    for nc in range(lo, hi):
        b = nc // c
        ch = nc - b * c
        for r in range(rows):   # the sums start from 0 for every plane
            for q in range(cols):
                acc[r, q] = 0
        for th in range(th_n):
            base = (b * th_n + th) * tw_n
            for i in range(4):
                for q in range(cols):
                    hh[i, q] = 0
            for i in range(4):  # H = dV B^T, tiles overlapping by two columns
                for tw in range(tw_n):
                    q = 2 * tw
                    v0 = dv[4 * i, ch, base + tw]
                    v1 = dv[4 * i + 1, ch, base + tw]
                    v2 = dv[4 * i + 2, ch, base + tw]
                    v3 = dv[4 * i + 3, ch, base + tw]
                    hh[i, q] += v0
                    hh[i, q + 1] += v1 - v2 + v3
                    hh[i, q + 2] += v1 + v2 - v0
                    hh[i, q + 3] -= v3
            r0 = 2 * th
            for q in range(cols):  # rows: B H, added where the tile sits
                acc[r0, q] += hh[0, q]
                acc[r0 + 1, q] += hh[1, q] - hh[2, q] + hh[3, q]
                acc[r0 + 2, q] += hh[1, q] + hh[2, q] - hh[0, q]
                acc[r0 + 3, q] -= hh[3, q]
        for r in range(h):
            for q in range(w):
                rr, qq = r + pt, q + pl
                dx[b, ch, r, q] = acc[rr, qq] if (rr < rows and qq < cols) else 0


# -- NumPy twins: the same transforms as matrix products on strided tile views --------
def _tiles(a, th_n, tw_n, size, step):
    """(N, C, TH, TW, size, size) windows every ``step`` cells of a padded image."""
    win = np.lib.stride_tricks.sliding_window_view(a, (size, size), axis=(2, 3))
    return win[:, :, ::step, ::step][:, :, :th_n, :tw_n]


def _pad_to(a, top, left, rows, cols):
    n, c, h, w = a.shape
    out = np.zeros((n, c, rows, cols), dtype=a.dtype)
    r1, c1 = min(h, rows - top), min(w, cols - left)
    out[:, :, top:top + r1, left:left + c1] = a[:, :, :r1, :c1]
    return out


def input_transform_numpy(x, pt, pl, th_n, tw_n, v):
    n, c = x.shape[:2]
    xp = _pad_to(x, pt, pl, 2 * th_n + 2, 2 * tw_n + 2)
    d = _tiles(xp, th_n, tw_n, 4, 2)                                  # (N, C, TH, TW, 4, 4)
    out = np.einsum("ik,nctwkl,jl->ijcntw", BT, d, BT)
    v[...] = out.reshape(16, c, n * th_n * tw_n)


def output_transform_numpy(m, oh, ow, y):
    n, o = y.shape[:2]
    th_n, tw_n = (oh + 1) // 2, (ow + 1) // 2
    mm = m.reshape(4, 4, o, n, th_n, tw_n)
    tiles = np.einsum("ai,ijontw,bj->notawb", AT, mm, AT)             # (N, O, TH, 2, TW, 2)
    y[...] = tiles.reshape(n, o, 2 * th_n, 2 * tw_n)[:, :, :oh, :ow]


def output_grad_numpy(dy, th_n, tw_n, dm):
    n, o = dy.shape[:2]
    dyp = _pad_to(dy, 0, 0, 2 * th_n, 2 * tw_n)
    g = dyp.reshape(n, o, th_n, 2, tw_n, 2)
    out = np.einsum("ai,notawb,bj->ijontw", AT, g, AT)
    dm[...] = out.reshape(16, o, n * th_n * tw_n)


def input_grad_numpy(dv, pt, pl, th_n, tw_n, dx):
    n, c, h, w = dx.shape
    f = np.einsum("ik,ijcntw,jl->nctwkl", BT, dv.reshape(4, 4, c, n, th_n, tw_n), BT)
    rows, cols = max(2 * th_n + 2, pt + h), max(2 * tw_n + 2, pl + w)
    acc = np.zeros((n, c, rows, cols), dtype=dx.dtype)
    for k in range(4):
        for l in range(4):  # one offset at a time: no position repeats within a slice
            acc[:, :, k:k + 2 * th_n:2, l:l + 2 * tw_n:2] += f[..., k, l]
    dx[...] = acc[:, :, pt:pt + h, pl:pl + w]


# the Python entry points: the planes split over the threads, or all on this one
# (for callers that split the batch over threads themselves)
def _planes(a):
    """The (n, channel) planes of a kernel's image argument: its units."""
    return a.shape[0] * a.shape[1]


input_transform_numba, input_transform_serial = split_kernel(
    _input_transform_range, lambda x, *rest: _planes(x))
output_transform_numba, output_transform_serial = split_kernel(
    _output_transform_range, lambda m, oh, ow, y: _planes(y))
output_grad_numba, output_grad_serial = split_kernel(
    _output_grad_range, lambda dy, *rest: _planes(dy))
input_grad_numba, input_grad_serial = split_kernel(
    _input_grad_range, lambda dv, pt, pl, th_n, tw_n, dx: _planes(dx))

input_transform = choose(input_transform_numba, input_transform_numpy)
output_transform = choose(output_transform_numba, output_transform_numpy)
output_grad = choose(output_grad_numba, output_grad_numpy)
input_grad = choose(input_grad_numba, input_grad_numpy)
input_transform_one_thread = choose(input_transform_serial, input_transform_numpy)
output_transform_one_thread = choose(output_transform_serial, output_transform_numpy)
output_grad_one_thread = choose(output_grad_serial, output_grad_numpy)
input_grad_one_thread = choose(input_grad_serial, input_grad_numpy)
