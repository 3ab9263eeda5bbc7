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
T = N*TH*TW tiles (t = (n*TH + th)*TW + tw). The input transform and its
gradient run over whole (n, channel) planes, the output transform and its
gradient over whole channels, split over the threads, so no two threads
write the same place.
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


@njit(inline="always")
def typed(a):
    """2, 3, 4, 5 and 8 in the dtype of a's elements, for the tile arithmetic.

    numba types ``2 * v`` for a float32 ``v`` as float64 (an integer times a
    float32 is a float64 in its rules), so tile sums written with integer
    coefficients ran in float64, 4 lanes to a vector, converting every value in
    and out. With the coefficients in a's dtype they run in float32, 8 lanes
    to a vector: F(4x4, 3x3)'s transforms on one thread, 16 samples of 64
    channels on 32x32, input 0.65-0.77 of their time, output 0.50-0.58, output
    gradient 0.72-0.88 (8 samples of 16 channels on 16x16: 0.56-0.68, 0.49-0.53,
    0.72-0.79 and 0.58-0.65 with the input gradient); the layers, interleaved,
    7 rounds: conv_tiny 0.82, conv_mid 0.91, 256 channels on 16x16 0.95,
    conv_k4s2 1.01. The sums then round as float32 arithmetic does (as
    PyTorch's do), and the layers' float32 errors against float64 stayed
    where the float32 products put them: outputs and gradients within
    1.6-5.5e-6 of their largest value by F(4x4, 3x3) (64 channels on 32x32,
    256 on 16x16; 1.6-6.2e-6 before), 1.7-6.2e-6 by F(4x4, 2x2) over the
    phases (1.6-5.4e-6). F(2x2, 3x3) and F(3x3, 2x2) have only 0 and +-1
    in their transforms and never needed it."""
    t = a.dtype.type
    return t(2), t(3), t(4), t(5), t(8)


# The numba kernels copy each (n, channel) plane into a zero-padded buffer
# first, so the tile loops carry no bounds tests and the innermost loops (over
# a whole row, or over tile columns writing 16 contiguous streams) vectorise.
# Each is a compiled loop over a range of planes (``*_range``) with one set of
# scratch buffers per call, reused plane after plane so it stays small and in
# cache; ``_pool.split_kernel`` makes the entry points that split the planes
# over the threads (``*_numba``) or run them all on the calling one
# (``*_serial``).
#
# The input transform indexes row views by the loop counter only
# (``v0[tw] = a0[2 * tw] - a2[2 * tw]``, each view taken once per tile row),
# which spares numba's wraparound test on every computed index: measured on
# one thread, conv_mid's shapes, interleaved, 9 rounds, 1.15x faster, results
# bit for bit the same. It and the input-gradient transform take their planes
# channel by channel (all samples of one channel, then the next), so that V's
# 16 rows are written, and dV's read, in order: one thread, 16 samples,
# 1.06-1.2x faster for each (64 channels on 32x32, 128 on 16x16).
#
# The output transform and its gradient run channel by channel over every
# tile of every sample at once (units: channels, not planes): each of the 16
# rows of M or dM is one contiguous run, so the tile arithmetic is a few long
# vector loops over (4 or 8, T) scratch rows, and only the interleaving with
# y's (or dY's) rows touches single cells. One thread, 16 samples, conv_mid's
# shapes: the output transform 1.6 against 3.6-3.9 ms plane by plane (after
# the row-view rewrite above), its gradient 1.7 against 3.5, bit for bit the
# same; on 16x16 outputs with 128 channels 2.7x and 2.6x. The input-gradient
# transform, written the same way, gained ~15% and was left as it is.


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
    for nc in range(lo, hi):   # planes channel by channel: V's rows fill in order
        ch = nc // n
        b = nc - ch * n
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
    # units: output channels, each over every tile of every sample at once
    n, o = y.shape[0], y.shape[1]
    th_n = (oh + 1) // 2
    tw_n = (ow + 1) // 2
    t_all = n * th_n * tw_n
    rk = np.empty((8, t_all), dtype=y.dtype)
    yk = np.empty((4, t_all), dtype=y.dtype)
    for oc in range(lo, hi):
        for j in range(4):   # r_a,j = (A^T M)_a,j, every tile at once
            m0, m1, m2, m3 = m[j, oc], m[4 + j, oc], m[8 + j, oc], m[12 + j, oc]
            ra, rb = rk[j], rk[4 + j]
            for t in range(t_all):
                ra[t] = m0[t] + m1[t] + m2[t]
                rb[t] = m1[t] - m2[t] - m3[t]
        for a in range(2):   # the tile's row a: r_a A
            s0, s1, s2, s3 = rk[4 * a], rk[4 * a + 1], rk[4 * a + 2], rk[4 * a + 3]
            e0, e1 = yk[2 * a], yk[2 * a + 1]
            for t in range(t_all):
                e0[t] = s0[t] + s1[t] + s2[t]
                e1[t] = s1[t] - s2[t] - s3[t]
        for b in range(n):   # interleave the tiles' columns into y's rows
            for r in range(oh):
                th = r // 2
                a = r - 2 * th
                dst = y[b, oc, r]
                base = (b * th_n + th) * tw_n
                s0 = yk[2 * a, base:base + tw_n]
                s1 = yk[2 * a + 1, base:base + tw_n]
                for tw in range(ow // 2):
                    dst[2 * tw] = s0[tw]
                    dst[2 * tw + 1] = s1[tw]
                if ow % 2:
                    dst[ow - 1] = s0[ow // 2]


@njit
def _output_grad_range(dy, th_n, tw_n, dm, lo, hi):
    # units: output channels, each over every tile of every sample at once
    n, o, oh, ow = dy.shape
    t_all = n * th_n * tw_n
    g = np.zeros((4, t_all), dtype=dy.dtype)   # cells past an odd edge stay zero
    e = np.empty((8, t_all), dtype=dy.dtype)
    for oc in range(lo, hi):
        for b in range(n):   # de-interleave dY into the tiles' four cells
            for r in range(oh):
                th = r // 2
                a = r - 2 * th
                src = dy[b, oc, r]
                base = (b * th_n + th) * tw_n
                d0 = g[2 * a, base:base + tw_n]
                d1 = g[2 * a + 1, base:base + tw_n]
                for tw in range(ow // 2):
                    d0[tw] = src[2 * tw]
                    d1[tw] = src[2 * tw + 1]
                if ow % 2:
                    d0[ow // 2] = src[ow - 1]
        for c in range(2):   # rows of A dY
            g0, g1 = g[c], g[2 + c]
            e0, e1, e2, e3 = e[c], e[2 + c], e[4 + c], e[6 + c]
            for t in range(t_all):
                e0[t] = g0[t]
                e1[t] = g0[t] + g1[t]
                e2[t] = g0[t] - g1[t]
                e3[t] = -g1[t]
        for i in range(4):   # columns: (A dY) A^T, written as whole rows of dM
            f0, f1 = e[2 * i], e[2 * i + 1]
            d0, d1, d2, d3 = dm[4 * i, oc], dm[4 * i + 1, oc], dm[4 * i + 2, oc], dm[4 * i + 3, oc]
            for t in range(t_all):
                d0[t] = f0[t]
                d1[t] = f0[t] + f1[t]
                d2[t] = f0[t] - f1[t]
                d3[t] = -f1[t]


@njit
def _input_grad_range(dv, pt, pl, th_n, tw_n, dx, lo, hi):
    n, c, h, w = dx.shape
    rows, cols = 2 * th_n + 2, 2 * tw_n + 2
    acc = np.empty((rows, cols), dtype=dx.dtype)
    zero = dx.dtype.type(0)   # a literal 0 would make the select below a float64
    hh = np.empty((4, cols), dtype=dx.dtype)
    for nc in range(lo, hi):   # planes channel by channel: dV's rows are read in order
        ch = nc // n
        b = nc - ch * n
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
                dx[b, ch, r, q] = acc[rr, qq] if (rr < rows and qq < cols) else zero


# -- NumPy twins: the same transforms as matrix products on strided tile views --------
def _tiles(a, th_n, tw_n, size, step):
    """(N, C, TH, TW, size, size) windows every ``step`` cells of a padded image."""
    win = np.lib.stride_tricks.sliding_window_view(a, (size, size), axis=(2, 3))
    return win[:, :, ::step, ::step][:, :, :th_n, :tw_n]


def _sandwich(spec, left, a, right):
    """``np.einsum(spec, left, a, right)`` with the small matrices in a's dtype,
    contracted pairwise (BLAS) rather than in one nested loop: the twins'
    conv_mid step 1229 ms the other way."""
    return np.einsum(spec, left.astype(a.dtype), a, right.astype(a.dtype), optimize=True)


def _pad_to(a, top, left, rows, cols):
    n, c, h, w = a.shape
    out = np.zeros((n, c, rows, cols), dtype=a.dtype)
    r1, c1 = min(h, rows - top), min(w, cols - left)
    out[:, :, top:top + r1, left:left + c1] = a[:, :, :r1, :c1]
    return out


def tiles_twin(bt, xp, th_n, tw_n, step, batch_minor=False):
    """V = B^T d B of every (p x p) tile of a padded image xp (N, C, rows, cols),
    tiles every ``step`` cells, as products: (p*p, C, T), T sample-major or,
    with ``batch_minor``, t = (th*TW + tw)*N + n."""
    n, c = xp.shape[:2]
    p = bt.shape[0]
    d = _tiles(xp, th_n, tw_n, p, step)                               # (N, C, TH, TW, p, p)
    out = _sandwich("ik,nctwkl,jl->ij" + ("ctwn" if batch_minor else "cntw"), bt, d, bt)
    return out.reshape(p * p, c, n * th_n * tw_n)


def tiles_grad_twin(bt, dv, n, th_n, tw_n, step, rows, cols, batch_minor=False):
    """The adjoint of ``tiles_twin``: B dV B^T of every tile added back where
    it sits, into a zero (N, C, rows, cols) image."""
    p, c = bt.shape[0], dv.shape[1]
    order = (th_n, tw_n, n) if batch_minor else (n, th_n, tw_n)
    spec = "ik,ij" + ("ctwn" if batch_minor else "cntw") + ",jl->nctwkl"
    f = _sandwich(spec, bt, dv.reshape((p, p, c) + order), bt)
    acc = np.zeros((n, c, rows, cols), dtype=dv.dtype)
    for k in range(p):
        for l in range(p):  # one offset at a time: no position repeats within a slice
            acc[:, :, k:k + step * th_n:step, l:l + step * tw_n:step] += f[..., k, l]
    return acc


def input_transform_numpy(x, pt, pl, th_n, tw_n, v):
    v[...] = tiles_twin(BT, _pad_to(x, pt, pl, 2 * th_n + 2, 2 * tw_n + 2), th_n, tw_n, 2)


def output_twin(at, m, oh, ow, y, batch_minor=False):
    """The output transform Y = A^T M A of every tile as products, for any tile
    family (``at``: its A^T, r x p): M (p*p, O, T), tiles numbered sample-major
    (t = (n*TH + th)*TW + tw) or, with ``batch_minor``, t = (th*TW + tw)*N + n."""
    n, o = y.shape[:2]
    r, p = at.shape
    th_n, tw_n = -(-oh // r), -(-ow // r)
    if batch_minor:
        tiles = _sandwich("ai,ijotwn,bj->notawb", at, m.reshape(p, p, o, th_n, tw_n, n), at)
    else:
        tiles = _sandwich("ai,ijontw,bj->notawb", at, m.reshape(p, p, o, n, th_n, tw_n), at)
    y[...] = tiles.reshape(n, o, r * th_n, r * tw_n)[:, :, :oh, :ow]   # (N, O, TH, r, TW, r)


def output_grad_twin(at, dy, th_n, tw_n, dm, batch_minor=False):
    """dM = A dY A^T of every tile as products (see ``output_twin``)."""
    n, o = dy.shape[:2]
    r, p = at.shape
    g = _pad_to(dy, 0, 0, r * th_n, r * tw_n).reshape(n, o, th_n, r, tw_n, r)
    out = _sandwich("ai,notawb,bj->" + ("ijotwn" if batch_minor else "ijontw"), at, g, at)
    dm[...] = out.reshape(p * p, o, n * th_n * tw_n)


def output_transform_numpy(m, oh, ow, y):
    output_twin(AT, m, oh, ow, y)


def output_grad_numpy(dy, th_n, tw_n, dm):
    output_grad_twin(AT, dy, th_n, tw_n, dm)


def input_grad_numpy(dv, pt, pl, th_n, tw_n, dx):
    n, c, h, wd = dx.shape
    rows, cols = max(2 * th_n + 2, pt + h), max(2 * tw_n + 2, pl + wd)
    dx[...] = tiles_grad_twin(BT, dv, n, th_n, tw_n, 2, rows, cols)[:, :, pt:pt + h, pl:pl + wd]


# the Python entry points: the planes split over the threads, or all on this one
# (for callers that split the batch over threads themselves)
def _planes(a):
    """The (n, channel) planes of a kernel's image argument: its units."""
    return a.shape[0] * a.shape[1]


def entry_points(range_kernel, numpy_twin, units):
    """A tile kernel's four entry points, as every family's module binds them:
    ``name_numba`` (the units split over the threads) and ``name_serial`` (all
    on this thread) from ``split_kernel``, then ``name`` and
    ``name_one_thread``, each that one or the NumPy twin under ``NNZERO_JIT=0``."""
    run, run_serial = split_kernel(range_kernel, units)
    return run, run_serial, choose(run, numpy_twin), choose(run_serial, numpy_twin)


(input_transform_numba, input_transform_serial, input_transform,
 input_transform_one_thread) = entry_points(
    _input_transform_range, input_transform_numpy, lambda x, *rest: _planes(x))
(output_transform_numba, output_transform_serial, output_transform,
 output_transform_one_thread) = entry_points(
    _output_transform_range, output_transform_numpy, lambda m, oh, ow, y: y.shape[1])
(output_grad_numba, output_grad_serial, output_grad,
 output_grad_one_thread) = entry_points(
    _output_grad_range, output_grad_numpy, lambda dy, *rest: dy.shape[1])
(input_grad_numba, input_grad_serial, input_grad,
 input_grad_one_thread) = entry_points(
    _input_grad_range, input_grad_numpy, lambda dv, pt, pl, th_n, tw_n, dx: _planes(dx))

