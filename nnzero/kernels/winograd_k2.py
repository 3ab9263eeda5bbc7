"""Tile transforms of Winograd's minimal filtering F(3x3, 2x2), for 2x2 kernels.

The sibling of ``winograd.py`` (F(2x2, 3x3)), with the same 4x4 tiles and
the same 16 GEMMs over the channels, but each tile now yields a 3x3 output
of a 2x2 kernel: 16 multiplies instead of 36 (2.25x fewer). Tiles start
every 3 rows/columns and overlap by one. The matrices come from Toom-Cook
at the points 0, 1, -1 and infinity (G evaluates the 2-tap filter there, A^T
is the transposed evaluation of the 3-term output, B^T the transposed
interpolation, its halves moved into G):

    B^T = [[1, 0,-1, 0],   G = [[ 1,   0  ],   A^T = [[1, 1, 1, 0],
           [0, 1, 1, 0],        [1/2, 1/2 ],          [0, 1,-1, 0],
           [0,-1, 1, 0],        [1/2,-1/2 ],          [0, 1, 1, 1]]
           [0,-1, 0, 1]]        [ 0,   1  ]]

    y = A^T [(G g G^T) . (B^T d B)] A        (d: 4x4 input tile, g: 2x2 filter)

The backward pass uses the transposed transforms, dM = A dY A^T and
dd = B dV B^T, the latter added back where the tile sits (``+=``: tiles
overlap). Layouts, threading and padding are those of ``winograd.py``:
V, M, dM, dV are (16, channels, T) with xi = 4*i + j and T = N*TH*TW tiles;
the input transform and its gradient run over whole (n, channel) planes, the
output transform and its gradient over whole channels; tiles reaching past
the image read zeros and drop what they would write there.

Where it is used: a 2x2 stride-1 convolution, which is what a transposed
convolution with kernel 4 and stride 2 becomes after the sub-pixel
rearrangement of ``functional/subpixel.py`` (the DCGAN / U-Net upsampling
layer).
"""
from __future__ import annotations

import numpy as np

from ._jit import njit
from .winograd import (_pad_to, _planes, entry_points, output_grad_twin, output_twin,
                       tiles_grad_twin, tiles_twin)

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]], dtype=np.float64)
G = np.array([[1, 0], [0.5, 0.5], [0.5, -0.5], [0, 1]], dtype=np.float64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, 0], [0, 1, 1, 1]], dtype=np.float64)


# As in ``winograd.py``: the input transform and its gradient copy each plane
# into (or sum it in) a zero-padded buffer, so the tile loops carry no bounds
# tests, and index row views by the loop counter; one set of scratch buffers
# per call. The output transform and its gradient run channel by channel
# (below).


@njit
def _input_transform_range(x, pt, pl, th_n, tw_n, v, lo, hi):
    n, c, h, w = x.shape
    rows, cols = 3 * th_n + 1, 3 * tw_n + 1
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
            d0, d1, d2, d3 = dk[3 * th], dk[3 * th + 1], dk[3 * th + 2], dk[3 * th + 3]
            for q in range(cols):  # rows of B^T d, whole image width at once
                t0[q] = d0[q] - d2[q]
                t1[q] = d1[q] + d2[q]
                t2[q] = d2[q] - d1[q]
                t3[q] = d3[q] - d1[q]
            base = (b * th_n + th) * tw_n
            for i in range(4):  # columns: (B^T d) B, tile by tile
                ti = tk[i]
                a0, a1, a2, a3 = ti[0:], ti[1:], ti[2:], ti[3:]
                v0 = v[4 * i, ch, base:base + tw_n]
                v1 = v[4 * i + 1, ch, base:base + tw_n]
                v2 = v[4 * i + 2, ch, base:base + tw_n]
                v3 = v[4 * i + 3, ch, base:base + tw_n]
                for tw in range(tw_n):
                    v0[tw] = a0[3 * tw] - a2[3 * tw]
                    v1[tw] = a1[3 * tw] + a2[3 * tw]
                    v2[tw] = a2[3 * tw] - a1[3 * tw]
                    v3[tw] = a3[3 * tw] - a1[3 * tw]


# The output transform and its gradient run channel by channel over all the
# call's samples (units: z's channels), not plane by plane: for one channel, each of the 16
# rows of M (or dM) is one contiguous run over every tile of every sample,
# so the tile arithmetic is a handful of long vector loops over (9 or 12, T)
# scratch rows, and only the scatter into y's phases (or the gather from dy's)
# touches single cells. On convT_up's 17x17 window grids (6x6 tiles) the
# output-gradient transform took 1.4-1.9 ms against 2.4-3.5 plane by plane
# (one thread, 16 samples).


@njit
def _tile_offsets(th_n, tw_n, t_all):
    """Where cell (r, q) of the z grid sits in a (9, T) row block: row
    (r%3)*3 + q%3, column tile (r//3)*TW + q//3 (plus the sample's base)."""
    rowoff = np.empty(3 * th_n, dtype=np.int64)
    coloff = np.empty(3 * tw_n, dtype=np.int64)
    for r in range(3 * th_n):
        rowoff[r] = (r % 3) * 3 * t_all + (r // 3) * tw_n
    for q in range(3 * tw_n):
        coloff[q] = (q % 3) * t_all + q // 3
    return rowoff, coloff


@njit
def _phase(zc, o, ph, pw):
    """z channel zc = (a_h*Sw + a_w)*O + o: o and its phase's (first output,
    first window, count) for rows and for columns."""
    a = zc // o
    ah, aw = a // pw.shape[0], a % pw.shape[0]
    return zc - a * o, ph[ah, 0], ph[ah, 1], ph[ah, 2], pw[aw, 0], pw[aw, 1], pw[aw, 2]


@njit
def _output_transform_shuffle_range(m, oh, ow, ph, pw, bias, y, lo, hi):
    # units: the channels zc of z (N, Sh*Sw*O, OH, OW), zc = (a_h*Sw + a_w)*O + o
    n, o = y.shape[0], y.shape[1]
    sh, sw = ph.shape[0], pw.shape[0]
    th_n = (oh + 2) // 3
    tw_n = (ow + 2) // 3
    tiles = th_n * tw_n
    t_all = n * tiles
    rk = np.empty((12, t_all), dtype=y.dtype)
    yk = np.empty((9, t_all), dtype=y.dtype)
    yf = yk.ravel()
    rowoff, coloff = _tile_offsets(th_n, tw_n, t_all)
    for zc in range(lo, hi):
        oc, first_h, t_h, count_h, first_w, t_w, count_w = _phase(zc, o, ph, pw)
        for j in range(4):   # r_a,j = (A^T M)_a,j, every tile at once
            m0, m1, m2, m3 = m[j, zc], m[4 + j, zc], m[8 + j, zc], m[12 + j, zc]
            ra, rb, rc = rk[j], rk[4 + j], rk[8 + j]
            for t in range(t_all):
                ra[t] = m0[t] + m1[t] + m2[t]
                rb[t] = m1[t] - m2[t]
                rc[t] = m1[t] + m2[t] + m3[t]
        for a in range(3):   # the tile's row a: r_a A
            s0, s1, s2, s3 = rk[4 * a], rk[4 * a + 1], rk[4 * a + 2], rk[4 * a + 3]
            e0, e1, e2 = yk[3 * a], yk[3 * a + 1], yk[3 * a + 2]
            for t in range(t_all):
                e0[t] = s0[t] + s1[t] + s2[t]
                e1[t] = s1[t] - s2[t]
                e2[t] = s1[t] + s2[t] + s3[t]
        bo = bias[oc]
        for b in range(n):
            base = b * tiles
            for i in range(count_h):
                dst = y[b, oc, first_h + sh * i, first_w:]
                ro = rowoff[t_h + i] + base
                for j in range(count_w):
                    dst[sw * j] = yf[ro + coloff[t_w + j]] + bo


@njit
def _output_grad_shuffle_range(dy, th_n, tw_n, ph, pw, dm, lo, hi):
    # units: the channels zc of dz, gathered from dy as the forward scattered z
    n, o = dy.shape[0], dy.shape[1]
    sh, sw = ph.shape[0], pw.shape[0]
    tiles = th_n * tw_n
    t_all = n * tiles
    g = np.empty((9, t_all), dtype=dy.dtype)
    e = np.empty((12, t_all), dtype=dy.dtype)
    gf = g.ravel()
    rowoff, coloff = _tile_offsets(th_n, tw_n, t_all)
    for zc in range(lo, hi):
        oc, first_h, t_h, count_h, first_w, t_w, count_w = _phase(zc, o, ph, pw)
        for k in range(9 * t_all):   # windows no output position lands in stay zero
            gf[k] = 0
        for b in range(n):
            base = b * tiles
            for i in range(count_h):
                src = dy[b, oc, first_h + sh * i, first_w:]
                ro = rowoff[t_h + i] + base
                for j in range(count_w):
                    gf[ro + coloff[t_w + j]] = src[sw * j]
        for c in range(3):   # rows of A dY, every tile at once
            g0, g1, g2 = g[c], g[3 + c], g[6 + c]
            e0, e1, e2, e3 = e[c], e[3 + c], e[6 + c], e[9 + c]
            for t in range(t_all):
                e0[t] = g0[t]
                e1[t] = g0[t] + g1[t] + g2[t]
                e2[t] = g0[t] - g1[t] + g2[t]
                e3[t] = g2[t]
        for i in range(4):   # columns: (A dY) A^T, written as whole rows of dM
            f0, f1, f2 = e[3 * i], e[3 * i + 1], e[3 * i + 2]
            d0, d1 = dm[4 * i, zc], dm[4 * i + 1, zc]
            d2, d3 = dm[4 * i + 2, zc], dm[4 * i + 3, zc]
            for t in range(t_all):
                d0[t] = f0[t]
                d1[t] = f0[t] + f1[t] + f2[t]
                d2[t] = f0[t] - f1[t] + f2[t]
                d3[t] = f2[t]


@njit
def _identity_phase(size):
    """The phase table of an axis without a shuffle: one phase, every cell in place."""
    table = np.zeros((1, 3), dtype=np.int64)
    table[0, 2] = size
    return table


@njit
def _output_transform_range(m, oh, ow, y, lo, hi):
    # the plain output transform (a 2x2 Conv2d): the shuffled one with nothing to shuffle
    _output_transform_shuffle_range(m, oh, ow, _identity_phase(oh), _identity_phase(ow),
                                    np.zeros(y.shape[1], dtype=y.dtype), y, lo, hi)


@njit
def _output_grad_range(dy, th_n, tw_n, dm, lo, hi):
    _output_grad_shuffle_range(dy, th_n, tw_n, _identity_phase(dy.shape[2]),
                               _identity_phase(dy.shape[3]), dm, lo, hi)


@njit
def _input_grad_range(dv, pt, pl, th_n, tw_n, dx, lo, hi):
    n, c, h, w = dx.shape
    rows, cols = 3 * th_n + 1, 3 * tw_n + 1
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
            for i in range(4):  # H = dV B^T, tiles overlapping by one column
                for tw in range(tw_n):
                    q = 3 * tw
                    v0 = dv[4 * i, ch, base + tw]
                    v1 = dv[4 * i + 1, ch, base + tw]
                    v2 = dv[4 * i + 2, ch, base + tw]
                    v3 = dv[4 * i + 3, ch, base + tw]
                    hh[i, q] += v0
                    hh[i, q + 1] += v1 - v2 - v3
                    hh[i, q + 2] += v1 + v2 - v0
                    hh[i, q + 3] += v3
            r0 = 3 * th
            for q in range(cols):  # rows: B H, added where the tile sits
                acc[r0, q] += hh[0, q]
                acc[r0 + 1, q] += hh[1, q] - hh[2, q] - hh[3, q]
                acc[r0 + 2, q] += hh[1, q] + hh[2, q] - hh[0, q]
                acc[r0 + 3, q] += hh[3, q]
        for r in range(h):
            for q in range(w):
                rr, qq = r + pt, q + pl
                dx[b, ch, r, q] = acc[rr, qq] if (rr < rows and qq < cols) else zero


# -- NumPy twins: the same transforms as matrix products on strided tile views --------
def input_transform_numpy(x, pt, pl, th_n, tw_n, v):
    v[...] = tiles_twin(BT, _pad_to(x, pt, pl, 3 * th_n + 1, 3 * tw_n + 1), th_n, tw_n, 3)


def output_transform_numpy(m, oh, ow, y):
    output_twin(AT, m, oh, ow, y)


def _shuffled(z, ph, pw):
    """The views pairing each phase of y (N, O, H, W) with z's (N, Sh*Sw*O, T, T) windows."""
    n, zrows = z.shape[:2]
    sh, sw = len(ph), len(pw)
    zv = z.reshape(n, sh, sw, zrows // (sh * sw), z.shape[2], z.shape[3])
    for i, (first_h, t_h, count_h) in enumerate(ph):
        for j, (first_w, t_w, count_w) in enumerate(pw):
            if count_h and count_w:
                yield (np.s_[:, :, first_h:first_h + sh * count_h:sh,
                             first_w:first_w + sw * count_w:sw],
                       zv[:, i, j, :, t_h:t_h + count_h, t_w:t_w + count_w])


def output_transform_shuffle_numpy(m, oh, ow, ph, pw, bias, y):
    n = y.shape[0]
    z = np.empty((n, m.shape[1], oh, ow), dtype=y.dtype)
    output_transform_numpy(m, oh, ow, z)
    for where, zv in _shuffled(z, ph, pw):
        y[where] = zv + bias.reshape(1, -1, 1, 1)


def output_grad_shuffle_numpy(dy, th_n, tw_n, ph, pw, dm):
    n = dy.shape[0]
    dz = np.zeros((n, dm.shape[1], 3 * th_n, 3 * tw_n), dtype=dy.dtype)
    for where, zv in _shuffled(dz, ph, pw):
        zv[...] = dy[where]
    output_grad_numpy(dz, th_n, tw_n, dm)


def output_grad_numpy(dy, th_n, tw_n, dm):
    output_grad_twin(AT, dy, th_n, tw_n, dm)


def input_grad_numpy(dv, pt, pl, th_n, tw_n, dx):
    n, c, h, w = dx.shape
    rows, cols = max(3 * th_n + 1, pt + h), max(3 * tw_n + 1, pl + w)
    dx[...] = tiles_grad_twin(BT, dv, n, th_n, tw_n, 3, rows, cols)[:, :, pt:pt + h, pl:pl + w]


(input_transform_numba, input_transform_serial, input_transform,
 input_transform_one_thread) = entry_points(
    _input_transform_range, input_transform_numpy, lambda x, *rest: _planes(x))
(output_transform_numba, output_transform_serial, output_transform,
 output_transform_one_thread) = entry_points(
    _output_transform_range, output_transform_numpy, lambda m, oh, ow, y: y.shape[1])
(output_transform_shuffle_numba, output_transform_shuffle_serial, output_transform_shuffle,
 output_transform_shuffle_one_thread) = entry_points(
    _output_transform_shuffle_range, output_transform_shuffle_numpy,
    lambda m, oh, ow, ph, pw, bias, y: m.shape[1])
(output_grad_shuffle_numba, output_grad_shuffle_serial, output_grad_shuffle,
 output_grad_shuffle_one_thread) = entry_points(
    _output_grad_shuffle_range, output_grad_shuffle_numpy,
    lambda dy, th_n, tw_n, ph, pw, dm: dm.shape[1])
(output_grad_numba, output_grad_serial, output_grad,
 output_grad_one_thread) = entry_points(
    _output_grad_range, output_grad_numpy, lambda dy, *rest: dy.shape[1])
(input_grad_numba, input_grad_serial, input_grad,
 input_grad_one_thread) = entry_points(
    _input_grad_range, input_grad_numpy, lambda dv, pt, pl, th_n, tw_n, dx: _planes(dx))

