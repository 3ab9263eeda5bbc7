"""Tile transforms of Winograd's F(4x4, 3x3) (Lavin & Gray 2015), for 3x3 kernels
at stride 1 on large outputs.

The larger sibling of ``winograd.py``'s F(2x2, 3x3): each 4x4 output tile
comes from a 6x6 input tile (tiles every 4 rows/columns, overlapping by 2)
with 36 multiplies instead of 144, 2.25 per output against F(2x2, 3x3)'s 4
(1.78x fewer). The matrices are Toom-Cook's at the points 0, 1, -1, 1/2, -2
and infinity, rows of B^T and columns of A^T scaled to integers (G takes the
factors):

    B^T = [[2,-3,-4, 3, 2, 0],   G = [[ 1/2,    0,     0  ],   A^T = [[1, 1, 1, 8, 1, 0],
           [0,-2, 1, 5, 2, 0],        [ 1/6,   1/6,   1/6 ],          [0, 1,-1, 4,-2, 0],
           [0, 2,-5, 1, 2, 0],        [-1/6,   1/6,  -1/6 ],          [0, 1, 1, 2, 4, 0],
           [0,-2,-1, 2, 1, 0],        [-2/15, -1/15, -1/30],          [0, 1,-1, 1,-8, 1]]
           [0, 1,-2,-1, 2, 0],        [ 1/30, -1/15,  2/15],
           [0, 2,-3,-4, 3, 2]]        [   0,     0,   1/2 ]]

    y = A^T [(G g G^T) . (B^T d B)] A        (d: 6x6 input tile, g: 3x3 filter)

It rounds more than F(2x2, 3x3). With Lavin's points 0, +-1, +-2 the float32
outputs and gradients of a layer (64 channels on 32x32, 256 on 16x16) came
within 4e-6 to 1.1e-5 of their largest value of the exact result, against
~5e-7 for F(2x2, 3x3); with 1/2 and -2 in place of 2 and -2 (the pair
Barabasz et al. 2020 found best), 1.7e-6 to 4.3e-6, so those are used here.

Layouts are those of ``winograd_s2.py``: V, M, dM, dV are (36, channels, T),
xi = 6*i + j, tiles numbered batch-minor, t = (th*TW + tw)*N + n, and every
kernel runs channel by channel over all the samples of its call, its
innermost loops over the samples.
"""
from __future__ import annotations

import numpy as np

from ._jit import njit
from .winograd import (_pad_to, entry_points, output_grad_twin, output_twin,
                       tiles_grad_twin, tiles_twin, typed)
from .winograd_tiles import (_block_rows, _cell_offsets, _planes_in, _planes_out,
                             _tile_offsets, _tiles_in, _tiles_out)

BT = np.array([[2, -3, -4, 3, 2, 0], [0, -2, 1, 5, 2, 0], [0, 2, -5, 1, 2, 0],
               [0, -2, -1, 2, 1, 0], [0, 1, -2, -1, 2, 0], [0, 2, -3, -4, 3, 2]],
              dtype=np.float64)
G = np.array([[1 / 2, 0, 0], [1 / 6, 1 / 6, 1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [-2 / 15, -1 / 15, -1 / 30], [1 / 30, -1 / 15, 2 / 15], [0, 0, 1 / 2]],
             dtype=np.float64)
AT = np.array([[1, 1, 1, 8, 1, 0], [0, 1, -1, 4, -2, 0], [0, 1, 1, 2, 4, 0],
               [0, 1, -1, 1, -8, 1]], dtype=np.float64)


@njit
def _input_transform_range(x, pt, pl, th_n, tw_n, v, lo, hi):
    # units: input channels, each over every sample at once; the channel's
    # planes go into one zero-padded batch-minor buffer (4*TH + 2 rows and
    # 4*TW + 2 columns: every cell a tile reads), read plane by plane in order
    n = x.shape[0]
    c2, c3, c4, c5, c8 = typed(x)   # coefficients in its dtype
    rows, cols = 4 * th_n + 2, 4 * tw_n + 2
    rn = cols * n
    dk = np.zeros((rows, rn), dtype=x.dtype)
    tk = np.empty((6, th_n, rn), dtype=x.dtype)   # the rows of B^T d, per (i, th)
    for ch in range(lo, hi):
        _planes_in(x, ch, pt, pl, dk)
        for th in range(th_n):
            r0 = 4 * th
            d0, d1, d2 = dk[r0], dk[r0 + 1], dk[r0 + 2]
            d3, d4, d5 = dk[r0 + 3], dk[r0 + 4], dk[r0 + 5]
            t0, t1, t2 = tk[0, th], tk[1, th], tk[2, th]
            t3, t4, t5 = tk[3, th], tk[4, th], tk[5, th]
            for k in range(rn):  # rows of B^T d, whole width and batch at once
                t0[k] = c2 * (d0[k] - c2 * d2[k] + d4[k]) + c3 * (d3[k] - d1[k])
                t1[k] = c2 * (d4[k] - d1[k]) + d2[k] + c5 * d3[k]
                t2[k] = c2 * (d1[k] + d4[k]) - c5 * d2[k] + d3[k]
                t3[k] = c2 * (d3[k] - d1[k]) + d4[k] - d2[k]
                t4[k] = c2 * (d4[k] - d2[k]) + d1[k] - d3[k]
                t5[k] = c2 * (d1[k] - c2 * d3[k] + d5[k]) + c3 * (d4[k] - d2[k])
        for i in range(6):  # columns: (B^T d) B, every sample of a tile at once
            v0, v1, v2 = v[6 * i, ch], v[6 * i + 1, ch], v[6 * i + 2, ch]
            v3, v4, v5 = v[6 * i + 3, ch], v[6 * i + 4, ch], v[6 * i + 5, ch]
            for th in range(th_n):
                src = tk[i, th]
                for tw in range(tw_n):
                    k = 4 * tw * n
                    a0, a1, a2 = src[k:], src[k + n:], src[k + 2 * n:]
                    a3, a4, a5 = src[k + 3 * n:], src[k + 4 * n:], src[k + 5 * n:]
                    t = (th * tw_n + tw) * n
                    for b in range(n):
                        e0, e1, e2, e3, e4, e5 = a0[b], a1[b], a2[b], a3[b], a4[b], a5[b]
                        v0[t + b] = c2 * (e0 - c2 * e2 + e4) + c3 * (e3 - e1)
                        v1[t + b] = c2 * (e4 - e1) + e2 + c5 * e3
                        v2[t + b] = c2 * (e1 + e4) - c5 * e2 + e3
                        v3[t + b] = c2 * (e3 - e1) + e4 - e2
                        v4[t + b] = c2 * (e4 - e2) + e1 - e3
                        v5[t + b] = c2 * (e1 - c2 * e3 + e5) + c3 * (e4 - e2)


@njit
def _output_transform_range(m, oh, ow, y, lo, hi):
    # units: output channels, each over every tile of every sample at once
    n = y.shape[0]
    c2, c3, c4, c5, c8 = typed(y)   # coefficients in its dtype
    th_n, tw_n = (oh + 3) // 4, (ow + 3) // 4
    t_all = n * th_n * tw_n
    rk = np.empty((24, t_all), dtype=y.dtype)
    yk = np.empty((16, t_all), dtype=y.dtype)
    yf = yk.ravel()
    rowoff, coloff = _tile_offsets(n, th_n, tw_n, t_all)
    for oc in range(lo, hi):
        for j in range(6):   # r_a,j = (A^T M)_a,j, every tile at once
            m0, m1, m2 = m[j, oc], m[6 + j, oc], m[12 + j, oc]
            m3, m4, m5 = m[18 + j, oc], m[24 + j, oc], m[30 + j, oc]
            ra, rb, rc, rd = rk[j], rk[6 + j], rk[12 + j], rk[18 + j]
            for t in range(t_all):
                s, d = m1[t] + m2[t], m1[t] - m2[t]
                ra[t] = m0[t] + s + c8 * m3[t] + m4[t]
                rb[t] = d + c4 * m3[t] - c2 * m4[t]
                rc[t] = s + c2 * m3[t] + c4 * m4[t]
                rd[t] = d + m3[t] - c8 * m4[t] + m5[t]
        for a in range(4):   # the tile's row a: r_a A
            q0, q1, q2 = rk[6 * a], rk[6 * a + 1], rk[6 * a + 2]
            q3, q4, q5 = rk[6 * a + 3], rk[6 * a + 4], rk[6 * a + 5]
            e0, e1, e2, e3 = yk[4 * a], yk[4 * a + 1], yk[4 * a + 2], yk[4 * a + 3]
            for t in range(t_all):
                s, d = q1[t] + q2[t], q1[t] - q2[t]
                e0[t] = q0[t] + s + c8 * q3[t] + q4[t]
                e1[t] = d + c4 * q3[t] - c2 * q4[t]
                e2[t] = s + c2 * q3[t] + c4 * q4[t]
                e3[t] = d + q3[t] - c8 * q4[t] + q5[t]
        _tiles_out(yf, rowoff, coloff, oc, y)


@njit(inline="always")
def _times_a(a0, a1, a2, a3, o0, o1, o2, o3, o4, o5, count, c2, c4, c8):
    """(o0 ... o5)[t] = A (a0 ... a3)[t] for t < count: the output gradient's
    transform along one axis of its tiles (rows of A dY, then (A dY) A^T)."""
    for t in range(count):
        s, d = a0[t] + a2[t], a1[t] + a3[t]
        o0[t] = a0[t]
        o1[t] = s + d
        o2[t] = s - d
        o3[t] = c8 * a0[t] + c4 * a1[t] + c2 * a2[t] + a3[t]
        o4[t] = a0[t] - c2 * a1[t] + c4 * a2[t] - c8 * a3[t]
        o5[t] = a3[t]


@njit
def _output_grad_range(dy, th_n, tw_n, dm, lo, hi):
    # units: output channels of dY, gathered into 4x4 tiles, then dM = A dY A^T
    n = dy.shape[0]
    c2, c3, c4, c5, c8 = typed(dy)   # coefficients in its dtype
    per_row = n * tw_n
    kr = _block_rows(n, th_n, tw_n)
    g = np.zeros((16, kr * per_row), dtype=dy.dtype)   # cells past the output stay zero
    e = np.empty((24, kr * per_row), dtype=dy.dtype)
    coloff = _cell_offsets(n, dy.shape[3], kr * per_row)
    for oc in range(lo, hi):
        for th0 in range(0, th_n, kr):   # a block of tile rows at a time (see
            th1 = min(th_n, th0 + kr)    # winograd_tiles.TILE_BLOCK)
            tb, base = (th1 - th0) * per_row, th0 * per_row
            _tiles_in(dy, oc, th0, th1, g, coloff)
            for c in range(4):   # rows of A dY, every tile of the block at once
                _times_a(g[c], g[4 + c], g[8 + c], g[12 + c], e[c], e[4 + c], e[8 + c],
                         e[12 + c], e[16 + c], e[20 + c], tb, c2, c4, c8)
            for i in range(6):   # columns: (A dY) A^T, written as rows of dM
                b0, b1 = base, base + tb
                _times_a(e[4 * i], e[4 * i + 1], e[4 * i + 2], e[4 * i + 3], dm[6 * i, oc, b0:b1],
                         dm[6 * i + 1, oc, b0:b1], dm[6 * i + 2, oc, b0:b1],
                         dm[6 * i + 3, oc, b0:b1], dm[6 * i + 4, oc, b0:b1],
                         dm[6 * i + 5, oc, b0:b1], tb, c2, c4, c8)


@njit(inline="always")
def _times_b(a0, a1, a2, a3, a4, a5, o0, o1, o2, o3, o4, o5, t_all, c2, c3, c4, c5):
    """(o0 ... o5)[t] = B (a0 ... a5)[t] for every tile t: the input gradient's
    six-point transform along one axis of its tiles (H = dV B^T along a tile
    row's cells, then F = B H along a column's), as one loop."""
    for t in range(t_all):
        o0[t] = c2 * a0[t]
        o1[t] = c2 * (a2[t] - a1[t] - a3[t] + a5[t]) - c3 * a0[t] + a4[t]
        o2[t] = a1[t] - a3[t] - c4 * a0[t] - c5 * a2[t] - c2 * a4[t] - c3 * a5[t]
        o3[t] = c3 * a0[t] + c5 * a1[t] + a2[t] + c2 * a3[t] - a4[t] - c4 * a5[t]
        o4[t] = c2 * (a0[t] + a1[t] + a2[t] + a4[t]) + a3[t] + c3 * a5[t]
        o5[t] = c2 * a5[t]


@njit(inline="always")
def _times_b_rows(a0, a1, a2, a3, a4, a5, o0, o1, o2, o3, o4, o5, t_all, c2, c3, c4, c5):
    """``_times_b`` as one loop per output row.

    As one loop storing all six rows, LLVM cannot rule out that a store to
    one row changes another it reads, and (with more pointer pairs to test
    than it will before a loop) leaves the loop scalar; one row per loop is
    vectorised. A vectorised loop takes 64 values a pass (four 16-lane
    vectors), so on rows shorter than ~128 tiles most of it falls to the
    scalar remainder, where six loops cost more than one: the kernels take
    this form from 128 tiles on (``_tile_grads``). Measured on one thread,
    the input-gradient kernel: conv_mid's 16 samples (1024 tiles) 2.1-2.3
    against 3.3 ms, 8 samples of 16 channels on 16x16 (128 tiles) 82-94
    against 104 us, 16 samples on 8x8 (64 tiles) 62-66 against 56 (the one
    loop kept there); the sums bit for bit the same. The other transforms'
    loops, split alike, ran no faster (the output transform's 1.1-1.9x
    slower: they were vectorised already)."""
    for t in range(t_all):
        o0[t] = c2 * a0[t]
    for t in range(t_all):
        o1[t] = c2 * (a2[t] - a1[t] - a3[t] + a5[t]) - c3 * a0[t] + a4[t]
    for t in range(t_all):
        o2[t] = a1[t] - a3[t] - c4 * a0[t] - c5 * a2[t] - c2 * a4[t] - c3 * a5[t]
    for t in range(t_all):
        o3[t] = c3 * a0[t] + c5 * a1[t] + a2[t] + c2 * a3[t] - a4[t] - c4 * a5[t]
    for t in range(t_all):
        o4[t] = c2 * (a0[t] + a1[t] + a2[t] + a4[t]) + a3[t] + c3 * a5[t]
    for t in range(t_all):
        o5[t] = c2 * a5[t]


@njit(inline="always")
def _tile_grads(dv, ch, hh, ff, t_all, c2, c3, c4, c5, rows):
    """F = B dV_ch B^T for every tile: H = dV B^T, then F = B H (the tile's
    cell (k, l) in row 6k + l), by ``_times_b`` or, ``rows``, ``_times_b_rows``."""
    for i in range(6):
        if rows:
            _times_b_rows(dv[6 * i, ch], dv[6 * i + 1, ch], dv[6 * i + 2, ch],
                          dv[6 * i + 3, ch], dv[6 * i + 4, ch], dv[6 * i + 5, ch], hh[6 * i],
                          hh[6 * i + 1], hh[6 * i + 2], hh[6 * i + 3], hh[6 * i + 4],
                          hh[6 * i + 5], t_all, c2, c3, c4, c5)
        else:
            _times_b(dv[6 * i, ch], dv[6 * i + 1, ch], dv[6 * i + 2, ch], dv[6 * i + 3, ch],
                     dv[6 * i + 4, ch], dv[6 * i + 5, ch], hh[6 * i], hh[6 * i + 1],
                     hh[6 * i + 2], hh[6 * i + 3], hh[6 * i + 4], hh[6 * i + 5], t_all,
                     c2, c3, c4, c5)
    for l in range(6):
        if rows:
            _times_b_rows(hh[l], hh[6 + l], hh[12 + l], hh[18 + l], hh[24 + l], hh[30 + l],
                          ff[l], ff[6 + l], ff[12 + l], ff[18 + l], ff[24 + l], ff[30 + l],
                          t_all, c2, c3, c4, c5)
        else:
            _times_b(hh[l], hh[6 + l], hh[12 + l], hh[18 + l], hh[24 + l], hh[30 + l], ff[l],
                     ff[6 + l], ff[12 + l], ff[18 + l], ff[24 + l], ff[30 + l], t_all,
                     c2, c3, c4, c5)


@njit
def _input_grad_range(dv, pt, pl, th_n, tw_n, dx, lo, hi):
    # units: input channels; dd = B dV B^T over every tile at once, then added
    # back (tiles overlap by two cells) into a batch-minor padded buffer
    n = dx.shape[0]
    c2, c3, c4, c5, c8 = typed(dx)   # coefficients in its dtype
    rows, cols = 4 * th_n + 2, 4 * tw_n + 2
    t_all = n * th_n * tw_n
    acc = np.empty((rows, cols * n), dtype=dx.dtype)
    hh = np.empty((36, t_all), dtype=dx.dtype)
    ff = np.empty((36, t_all), dtype=dx.dtype)
    for ch in range(lo, hi):
        for r in range(rows):   # the sums start from 0 for every channel
            ar = acc[r]
            for k in range(cols * n):
                ar[k] = 0
        _tile_grads(dv, ch, hh, ff, t_all, c2, c3, c4, c5, t_all >= 128)
        for th in range(th_n):
            for k in range(6):
                dst = acc[4 * th + k]
                for l in range(6):
                    src = ff[6 * k + l]
                    for tw in range(tw_n):
                        o = (4 * tw + l) * n
                        t = (th * tw_n + tw) * n
                        for b in range(n):
                            dst[o + b] += src[t + b]
        _planes_out(acc, ch, pt, pl, dx)


# -- NumPy twins: the same transforms as matrix products on strided tile views --------
def input_transform_numpy(x, pt, pl, th_n, tw_n, v):
    xp = _pad_to(x, pt, pl, 4 * th_n + 2, 4 * tw_n + 2)
    v[...] = tiles_twin(BT, xp, th_n, tw_n, 4, batch_minor=True)


def output_transform_numpy(m, oh, ow, y):
    output_twin(AT, m, oh, ow, y, batch_minor=True)


def output_grad_numpy(dy, th_n, tw_n, dm):
    output_grad_twin(AT, dy, th_n, tw_n, dm, batch_minor=True)


def input_grad_numpy(dv, pt, pl, th_n, tw_n, dx):
    n, c, h, w = dx.shape
    rows, cols = max(4 * th_n + 2, pt + h), max(4 * tw_n + 2, pl + w)
    acc = tiles_grad_twin(BT, dv, n, th_n, tw_n, 4, rows, cols, batch_minor=True)
    dx[...] = acc[:, :, pt:pt + h, pl:pl + w]


(input_transform_numba, input_transform_serial, input_transform,
 input_transform_one_thread) = entry_points(
    _input_transform_range, input_transform_numpy, lambda x, *rest: x.shape[1])
(output_transform_numba, output_transform_serial, output_transform,
 output_transform_one_thread) = entry_points(
    _output_transform_range, output_transform_numpy, lambda m, oh, ow, y: y.shape[1])
(output_grad_numba, output_grad_serial, output_grad,
 output_grad_one_thread) = entry_points(
    _output_grad_range, output_grad_numpy, lambda dy, *rest: dy.shape[1])
(input_grad_numba, input_grad_serial, input_grad,
 input_grad_one_thread) = entry_points(
    _input_grad_range, input_grad_numpy, lambda dv, pt, pl, th_n, tw_n, dx: dx.shape[1])

