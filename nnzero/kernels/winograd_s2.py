"""Tile transforms of Winograd's F(4x4, 2x2) on the space-to-depth of a stride-2
convolution (3x3 or 4x4 kernels).

A stride-2 convolution is a stride-1 one over the input's four phases. With
xp the zero-padded input and u = 2a + p, v = 2b + q (a, b, p, q in {0, 1}):

    y[o, i, j] = sum_{c,u,v} W[o, c, u, v] xp[c, 2i + u, 2j + v]
               = sum_{c,p,q,a,b} W'[o, (c,p,q), a, b] z[(c,p,q), i + a, j + b]

    z[(c,p,q), r, s] = xp[c, 2r + p, 2s + q]       (4C channels: space-to-depth)
    W'[o, (c,p,q), a, b] = W[o, c, 2a + p, 2b + q]  (zero where 2a+p or 2b+q >= k)

a 2x2 stride-1 convolution over 4C channels. F(4x4, 2x2) computes each 4x4
output tile from a 5x5 tile of z with 25 multiplies per input channel, so a
3x3 kernel costs 25 * 4C / 16 = 6.25 C multiplies per output instead of 9 C
(1.44x fewer), a 4x4 kernel 6.25 C instead of 16 C (2.56x fewer). The
matrices are Toom-Cook's at the points 0, 1, -1, 2 and infinity:

    B^T = [[2,-1,-2, 1, 0],   G = [[ 1/2,  0  ],   A^T = [[1, 1, 1, 1, 0],
           [0,-2,-1, 1, 0],        [-1/2, -1/2 ],          [0, 1,-1, 2, 0],
           [0, 2,-3, 1, 0],        [-1/6,  1/6 ],          [0, 1, 1, 4, 0],
           [0,-1, 0, 1, 0],        [ 1/6,  1/3 ],          [0, 1,-1, 8, 1]]
           [0, 2,-1,-2, 1]]        [  0,    1  ]]

    y = A^T [(G g G^T) . (B^T d B)] A        (d: 5x5 tile of z, g: 2x2 filter)

The larger tile rounds more than F(2x2, 3x3): in float32, 128 channels,
outputs and gradients within ~5e-6 of their largest value of the exact
result (im2col and the 4x4-tile families ~5e-7); the choice of the fourth
point (2, -2, 1/2, -1/2, 2/3, 3/2) made no difference worth having.

Nothing forms z: the input transform reads each tile's 5x5 cells of a phase
straight from the padded plane at stride 2, and the input-gradient transform
adds them back there. Layouts are those of ``winograd.py`` with 25 positions
instead of 16, except that tiles are numbered batch-minor: V, M, dM, dV are
(25, channels, T), xi = 5*i + j, T = N*TH*TW (TH = ceil(OH/4)) with
t = (th*TW + tw)*N + n, and V's channels ordered (c, p, q) -> 4c + 2p + q.
Tiles start every 4 cells of z (8 of xp) and overlap by one cell. Every
kernel runs channel by channel over all the samples of its call (below).

Where it is used: Conv2d with a 4x4 kernel at stride 2 (the DCGAN / PatchGAN
downsampling layer), see ``functional/conv.py``'s rule; 3x3 kernels only when
Winograd is forced (their phases hold 9 taps in 16 places and it did not pay).
"""
from __future__ import annotations

import numpy as np

from ._jit import njit
from .winograd import (_pad_to, entry_points, output_grad_twin, output_twin,
                       tiles_grad_twin, tiles_twin, typed)
from .winograd_tiles import (_block_rows, _cell_offsets, _planes_in, _planes_out,
                             _tile_offsets, _tiles_in, _tiles_out)

BT = np.array([[2, -1, -2, 1, 0], [0, -2, -1, 1, 0], [0, 2, -3, 1, 0], [0, -1, 0, 1, 0],
               [0, 2, -1, -2, 1]], dtype=np.float64)
G = np.array([[1 / 2, 0], [-1 / 2, -1 / 2], [-1 / 6, 1 / 6], [1 / 6, 1 / 3], [0, 1]],
             dtype=np.float64)
AT = np.array([[1, 1, 1, 1, 0], [0, 1, -1, 2, 0], [0, 1, 1, 4, 0], [0, 1, -1, 8, 1]],
              dtype=np.float64)


def weight_to_phases(weight):
    """W' (O, 4C, 2, 2) of a (O, C, k, k) weight, k <= 4 (see the module docstring)."""
    o, c, k = weight.shape[:3]
    w4 = np.zeros((o, c, 4, 4), dtype=weight.dtype)
    w4[:, :, :k, :k] = weight
    # (o, c, a, p, b, q) -> (o, c, p, q, a, b)
    return w4.reshape(o, c, 2, 2, 2, 2).transpose(0, 1, 3, 5, 2, 4).reshape(o, 4 * c, 2, 2)


def weight_from_phases(dw, k):
    """The (O, C, k, k) gradient of a weight from that of its W' (O, 4C, 2, 2):
    weight_to_phases' adjoint (the zero taps' gradients are dropped)."""
    o, c4 = dw.shape[:2]
    w4 = dw.reshape(o, c4 // 4, 2, 2, 2, 2).transpose(0, 1, 4, 2, 5, 3).reshape(o, c4 // 4, 4, 4)
    return np.ascontiguousarray(w4[:, :, :k, :k])


# Tiles are numbered batch-minor within a call: t = (th*TW + tw)*n + b, so that
# every kernel runs its innermost loops over the samples, contiguous on both
# sides. The plane-by-plane form of ``winograd.py`` (tiles of one sample in a
# row) measured 2.7 ns per value of V here, against 1.1 there: each tile
# row holds only TW tiles (4 on a 16x16 output) and each of its cells is read
# at stride 2 from the plane, so no loop vectorised. The input transform and
# its gradient run channel by channel: each copies the channel's planes of all
# the samples into (or out of) one zero-padded batch-minor buffer
# (8*TH + 2 rows, 8*TW + 2 columns: every cell a tile reads), forms the rows
# of B^T d for each tile row and row phase p across the whole width, and takes
# each tile's five cells of each column phase q (at stride 2) for all the
# samples at once. The output transform and its gradient run channel by
# channel over every tile, as in ``winograd.py``. The steps shared with
# ``winograd_f43.py`` are in ``winograd_tiles.py``.


@njit
def _input_transform_range(x, pt, pl, th_n, tw_n, v, lo, hi):
    # units: input channels, each over every sample at once
    n = x.shape[0]
    c2, c3, c4, c5, c8 = typed(x)   # coefficients in its dtype
    rows, cols = 8 * th_n + 2, 8 * tw_n + 2
    rn = cols * n                                   # one padded row, batch-minor
    dk = np.zeros((rows, rn), dtype=x.dtype)
    tk = np.empty((2, 5, th_n, rn), dtype=x.dtype)  # the rows of B^T d, per (p, i, th)
    for ch in range(lo, hi):
        _planes_in(x, ch, pt, pl, dk)
        for th in range(th_n):
            for p in range(2):
                r0 = 8 * th + p
                d0, d1, d2, d3, d4 = dk[r0], dk[r0 + 2], dk[r0 + 4], dk[r0 + 6], dk[r0 + 8]
                t0, t1, t2 = tk[p, 0, th], tk[p, 1, th], tk[p, 2, th]
                t3, t4 = tk[p, 3, th], tk[p, 4, th]
                for k in range(rn):  # rows of B^T d, whole width and batch at once
                    t0[k] = c2 * (d0[k] - d2[k]) - d1[k] + d3[k]
                    t1[k] = d3[k] - c2 * d1[k] - d2[k]
                    t2[k] = c2 * d1[k] - c3 * d2[k] + d3[k]
                    t3[k] = d3[k] - d1[k]
                    t4[k] = c2 * (d1[k] - d3[k]) - d2[k] + d4[k]
        for p in range(2):
            for qq in range(2):
                zc = 4 * ch + 2 * p + qq
                for i in range(5):  # columns: (B^T d) B, every sample of a tile at once
                    v0, v1, v2 = v[5 * i, zc], v[5 * i + 1, zc], v[5 * i + 2, zc]
                    v3, v4 = v[5 * i + 3, zc], v[5 * i + 4, zc]
                    for th in range(th_n):
                        src = tk[p, i, th]
                        for tw in range(tw_n):
                            k = (8 * tw + qq) * n
                            a0, a1, a2 = src[k:], src[k + 2 * n:], src[k + 4 * n:]
                            a3, a4 = src[k + 6 * n:], src[k + 8 * n:]
                            t = (th * tw_n + tw) * n
                            for b in range(n):
                                e0, e1, e2, e3, e4 = a0[b], a1[b], a2[b], a3[b], a4[b]
                                v0[t + b] = c2 * (e0 - e2) - e1 + e3
                                v1[t + b] = e3 - c2 * e1 - e2
                                v2[t + b] = c2 * e1 - c3 * e2 + e3
                                v3[t + b] = e3 - e1
                                v4[t + b] = c2 * (e1 - e3) - e2 + e4


@njit
def _output_transform_range(m, oh, ow, y, lo, hi):
    # units: output channels, each over every tile of every sample at once
    n = y.shape[0]
    c2, c3, c4, c5, c8 = typed(y)   # coefficients in its dtype
    th_n, tw_n = (oh + 3) // 4, (ow + 3) // 4
    t_all = n * th_n * tw_n
    rk = np.empty((20, t_all), dtype=y.dtype)
    yk = np.empty((16, t_all), dtype=y.dtype)
    yf = yk.ravel()
    rowoff, coloff = _tile_offsets(n, th_n, tw_n, t_all)
    for oc in range(lo, hi):
        for j in range(5):   # r_a,j = (A^T M)_a,j, every tile at once
            m0, m1, m2 = m[j, oc], m[5 + j, oc], m[10 + j, oc]
            m3, m4 = m[15 + j, oc], m[20 + j, oc]
            ra, rb, rc, rd = rk[j], rk[5 + j], rk[10 + j], rk[15 + j]
            for t in range(t_all):
                s, d = m1[t] + m2[t], m1[t] - m2[t]
                ra[t] = m0[t] + s + m3[t]
                rb[t] = d + c2 * m3[t]
                rc[t] = s + c4 * m3[t]
                rd[t] = d + c8 * m3[t] + m4[t]
        for a in range(4):   # the tile's row a: r_a A
            s0, s1, s2 = rk[5 * a], rk[5 * a + 1], rk[5 * a + 2]
            s3, s4 = rk[5 * a + 3], rk[5 * a + 4]
            e0, e1, e2, e3 = yk[4 * a], yk[4 * a + 1], yk[4 * a + 2], yk[4 * a + 3]
            for t in range(t_all):
                s, d = s1[t] + s2[t], s1[t] - s2[t]
                e0[t] = s0[t] + s + s3[t]
                e1[t] = d + c2 * s3[t]
                e2[t] = s + c4 * s3[t]
                e3[t] = d + c8 * s3[t] + s4[t]
        _tiles_out(yf, rowoff, coloff, oc, y)


@njit(inline="always")
def _times_a(a0, a1, a2, a3, o0, o1, o2, o3, o4, count, c2, c4, c8):
    """(o0 ... o4)[t] = A (a0 ... a3)[t] for t < count: the output gradient's
    transform along one axis of its tiles (rows of A dY, then (A dY) A^T)."""
    for t in range(count):
        s, d = a0[t] + a2[t], a1[t] + a3[t]
        o0[t] = a0[t]
        o1[t] = s + d
        o2[t] = s - d
        o3[t] = a0[t] + c2 * a1[t] + c4 * a2[t] + c8 * a3[t]
        o4[t] = a3[t]


@njit
def _output_grad_range(dy, th_n, tw_n, dm, lo, hi):
    # units: output channels of dY, gathered into 4x4 tiles, then dM = A dY A^T
    n = dy.shape[0]
    c2, c3, c4, c5, c8 = typed(dy)   # coefficients in its dtype
    per_row = n * tw_n
    kr = _block_rows(n, th_n, tw_n)
    g = np.zeros((16, kr * per_row), dtype=dy.dtype)   # cells past the output stay zero
    e = np.empty((20, kr * per_row), dtype=dy.dtype)
    coloff = _cell_offsets(n, dy.shape[3], kr * per_row)
    for oc in range(lo, hi):
        for th0 in range(0, th_n, kr):   # a block of tile rows at a time (TILE_BLOCK)
            th1 = min(th_n, th0 + kr)
            tb, base = (th1 - th0) * per_row, th0 * per_row
            _tiles_in(dy, oc, th0, th1, g, coloff)
            for c in range(4):   # rows of A dY, every tile of the block at once
                _times_a(g[c], g[4 + c], g[8 + c], g[12 + c], e[c], e[4 + c], e[8 + c],
                         e[12 + c], e[16 + c], tb, c2, c4, c8)
            for i in range(5):   # columns: (A dY) A^T, written as rows of dM
                b0, b1 = base, base + tb
                _times_a(e[4 * i], e[4 * i + 1], e[4 * i + 2], e[4 * i + 3], dm[5 * i, oc, b0:b1],
                         dm[5 * i + 1, oc, b0:b1], dm[5 * i + 2, oc, b0:b1],
                         dm[5 * i + 3, oc, b0:b1], dm[5 * i + 4, oc, b0:b1], tb, c2, c4, c8)


@njit(inline="always")
def _times_b(a0, a1, a2, a3, a4, o0, o1, o2, o3, o4, t_all, c2, c3):
    """(o0 ... o4)[t] = B (a0 ... a4)[t] for every tile t: the input gradient's
    five-point transform along one axis of its tiles, as one loop."""
    for t in range(t_all):
        o0[t] = c2 * a0[t]
        o1[t] = c2 * (a2[t] - a1[t] + a4[t]) - a0[t] - a3[t]
        o2[t] = -c2 * a0[t] - a1[t] - c3 * a2[t] - a4[t]
        o3[t] = a0[t] + a1[t] + a2[t] + a3[t] - c2 * a4[t]
        o4[t] = a4[t]


@njit(inline="always")
def _times_b_rows(a0, a1, a2, a3, a4, o0, o1, o2, o3, o4, t_all, c2, c3):
    """``_times_b`` as one loop per output row, each vectorised, taken from 128
    tiles on (see ``winograd_f43._times_b_rows``). One thread, the
    input-gradient kernel: 16 samples of conv_k4s2 (256 tiles) 1.49-1.53
    against 1.95-2.03 ms; rows of 32 and 64 tiles keep the one loop (split,
    they took 1.4-2x as long)."""
    for t in range(t_all):
        o0[t] = c2 * a0[t]
    for t in range(t_all):
        o1[t] = c2 * (a2[t] - a1[t] + a4[t]) - a0[t] - a3[t]
    for t in range(t_all):
        o2[t] = -c2 * a0[t] - a1[t] - c3 * a2[t] - a4[t]
    for t in range(t_all):
        o3[t] = a0[t] + a1[t] + a2[t] + a3[t] - c2 * a4[t]
    for t in range(t_all):
        o4[t] = a4[t]


@njit(inline="always")
def _tile_grads(dv, zc, hh, ff, t_all, c2, c3, rows):
    """F = B dV_zc B^T for every tile: H = dV B^T, then F = B H (the tile's
    cell (k, l) in row 5k + l), by ``_times_b`` or, ``rows``, ``_times_b_rows``."""
    for i in range(5):
        if rows:
            _times_b_rows(dv[5 * i, zc], dv[5 * i + 1, zc], dv[5 * i + 2, zc],
                          dv[5 * i + 3, zc], dv[5 * i + 4, zc], hh[5 * i], hh[5 * i + 1],
                          hh[5 * i + 2], hh[5 * i + 3], hh[5 * i + 4], t_all, c2, c3)
        else:
            _times_b(dv[5 * i, zc], dv[5 * i + 1, zc], dv[5 * i + 2, zc], dv[5 * i + 3, zc],
                     dv[5 * i + 4, zc], hh[5 * i], hh[5 * i + 1], hh[5 * i + 2],
                     hh[5 * i + 3], hh[5 * i + 4], t_all, c2, c3)
    for l in range(5):
        if rows:
            _times_b_rows(hh[l], hh[5 + l], hh[10 + l], hh[15 + l], hh[20 + l], ff[l],
                          ff[5 + l], ff[10 + l], ff[15 + l], ff[20 + l], t_all, c2, c3)
        else:
            _times_b(hh[l], hh[5 + l], hh[10 + l], hh[15 + l], hh[20 + l], ff[l], ff[5 + l],
                     ff[10 + l], ff[15 + l], ff[20 + l], t_all, c2, c3)


@njit
def _input_grad_range(dv, pt, pl, th_n, tw_n, dx, lo, hi):
    # units: input channels; dd = B dV B^T over every tile at once, then added
    # back (tiles overlap by one cell) into a batch-minor padded buffer
    n = dx.shape[0]
    c2, c3, c4, c5, c8 = typed(dx)   # coefficients in its dtype
    rows, cols = 8 * th_n + 2, 8 * tw_n + 2
    t_all = n * th_n * tw_n
    acc = np.empty((rows, cols * n), dtype=dx.dtype)
    hh = np.empty((25, t_all), dtype=dx.dtype)
    ff = np.empty((25, t_all), dtype=dx.dtype)
    for ch in range(lo, hi):
        for r in range(rows):   # the sums start from 0 for every channel
            ar = acc[r]
            for k in range(cols * n):
                ar[k] = 0
        for p in range(2):
            for qq in range(2):
                zc = 4 * ch + 2 * p + qq
                _tile_grads(dv, zc, hh, ff, t_all, c2, c3, t_all >= 128)
                for th in range(th_n):
                    for k in range(5):
                        dst = acc[8 * th + p + 2 * k]
                        for l in range(5):
                            src = ff[5 * k + l]
                            for tw in range(tw_n):
                                o = (8 * tw + qq + 2 * l) * n
                                t = (th * tw_n + tw) * n
                                for b in range(n):
                                    dst[o + b] += src[t + b]
        _planes_out(acc, ch, pt, pl, dx)


# -- NumPy twins: space-to-depth, then the transforms as products on tile views -------
def _to_phases(xp):
    """z (N, 4C, R, Q) of a padded (N, C, 2R, 2Q) image: z[(c,p,q), r, s] = xp[c, 2r+p, 2s+q]."""
    n, c, rr, qq = xp.shape
    z = xp.reshape(n, c, rr // 2, 2, qq // 2, 2).transpose(0, 1, 3, 5, 2, 4)
    return z.reshape(n, 4 * c, rr // 2, qq // 2)


def input_transform_numpy(x, pt, pl, th_n, tw_n, v):
    z = _to_phases(_pad_to(x, pt, pl, 8 * th_n + 2, 8 * tw_n + 2))
    v[...] = tiles_twin(BT, z, th_n, tw_n, 4, batch_minor=True)


def output_transform_numpy(m, oh, ow, y):
    output_twin(AT, m, oh, ow, y, batch_minor=True)


def output_grad_numpy(dy, th_n, tw_n, dm):
    output_grad_twin(AT, dy, th_n, tw_n, dm, batch_minor=True)


def input_grad_numpy(dv, pt, pl, th_n, tw_n, dx):
    n, c, h, w = dx.shape
    dz = tiles_grad_twin(BT, dv, n, th_n, tw_n, 4, 4 * th_n + 1, 4 * tw_n + 1,
                         batch_minor=True)                          # (N, 4C, R, Q)
    rows, cols = max(8 * th_n + 2, pt + h), max(8 * tw_n + 2, pl + w)
    acc = np.zeros((n, c, rows, cols), dtype=dx.dtype)
    # back from the phases: the inverse of _to_phases
    acc[:, :, :8 * th_n + 2, :8 * tw_n + 2] = dz.reshape(
        n, c, 2, 2, 4 * th_n + 1, 4 * tw_n + 1).transpose(0, 1, 4, 2, 5, 3).reshape(
        n, c, 8 * th_n + 2, 8 * tw_n + 2)
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

