"""Grouped convolution at stride 1 with few channels per group, computed directly.

Notation as in ``im2col.py``; G groups, Cg = C/G input and Og = O/G output
channels per group. With Cg*KH*KW small (8 channels of a 3x3 kernel: 72),
im2col's products are a few rows deep and wait on memory: the column matrix
is written, read by the product, and in the backward pass written and read
again, KH*KW times the input's size each time. Here every (sample, group)
unit stays in cache: its Cg input planes are copied once into zero-padded
scratch planes, and each output plane is summed from them in place.

At stride 1 output row i and the input rows of kernel offset (u, v) are one
stretch apart when a plane is laid out at the padded width WP, so each
offset is one loop over the whole plane rather than OH short loops (small
planes of deep layers made those mostly overhead). The WP - OW columns past
each output row are computed too and thrown away. With off(u, v) =
u*DH*WP + v*DW and img_c the flat padded plane of input channel c:

    line_o[q]       = b[o] + sum_{c,u,v} w[o, c, u, v] * img_c[off(u, v) + q]
    y[n, o, i, j]   = line_o[i*WP + j]                      (j < OW; the rest is dropped)

Backward, with dyl_o the upstream gradient laid out the same way (zero past
column OW of each row and outside the rows):

    dw[o, c, u, v]  = sum_q dyl_o[q] * img_c[off(u, v) + q]
    dimg_c[p]       = sum_{o,u,v} w[o, c, u, v] * dyl_o[p - off(u, v)]

dx is the inside of dimg. The second line is written as a gather (every p
sums its own terms, none is added twice), so dyl is kept after LEAD =
off(KH-1, KW-1) zeros. For 3x3 kernels the nine terms of a plane pair are
added in one loop (``_taps3x3``): each pass over a line then loads it and
stores it once for nine products instead of once per product (measured 1.4x
faster than one loop per offset).

Each kernel is a compiled loop over a range of (sample, group) units with
one set of scratch planes per call (``*_range``); ``*_numba`` splits the
units over the threads, ``*_serial`` runs them all on the calling thread
(``functional/direct.py`` gives each thread its own samples; see
``_pool.split_kernel``). Each unit writes its share of dw to its own slot of
an (N, G, Og, Cg, KH, KW) array, summed over N by the caller, so no two
threads write the same place; likewise, when asked, the sum of each of its
dy planes (the bias gradient's share) to db_units[b, o], summed while the
plane is copied into dyl. ``*_numpy`` is the twin: one strided view of
the padded input per kernel offset, one product per offset. The public wrappers check every shape, so a wrong call
raises instead of reading or writing out of bounds.
"""
from __future__ import annotations

import numpy as np

from ._jit import choose, njit
from ._pool import split_kernel
from .depthwise import check_output
from .im2col import offset_views, padded_copy
from .windows import copy_inside, copy_into_padded, padded_size


@njit(inline="always")
def _taps(src, start, sign, wk, rstep, cstep, out):
    """out[q] += sum_{u,v} wk[u, v] * src[start + sign*(u*rstep + v*cstep) + q]."""
    kh, kw = wk.shape
    m = out.shape[0]
    if kh == 3 and kw == 3:
        _taps3x3(src, start, sign, wk, rstep, cstep, out)
        return
    for u in range(kh):
        for v in range(kw):
            wt = wk[u, v]
            off = start + sign * (u * rstep + v * cstep)
            s = src[off:off + m]
            for q in range(m):
                out[q] += wt * s[q]


@njit(inline="always")
def _taps3x3(src, start, sign, wk, rstep, cstep, out):
    m = out.shape[0]
    r, c = sign * rstep, sign * cstep
    a0 = src[start:start + m]
    a1 = src[start + c:start + c + m]
    a2 = src[start + 2 * c:start + 2 * c + m]
    b0 = src[start + r:start + r + m]
    b1 = src[start + r + c:start + r + c + m]
    b2 = src[start + r + 2 * c:start + r + 2 * c + m]
    c0 = src[start + 2 * r:start + 2 * r + m]
    c1 = src[start + 2 * r + c:start + 2 * r + c + m]
    c2 = src[start + 2 * r + 2 * c:start + 2 * r + 2 * c + m]
    w00, w01, w02 = wk[0, 0], wk[0, 1], wk[0, 2]
    w10, w11, w12 = wk[1, 0], wk[1, 1], wk[1, 2]
    w20, w21, w22 = wk[2, 0], wk[2, 1], wk[2, 2]
    for q in range(m):
        out[q] += ((w00 * a0[q] + w01 * a1[q] + w02 * a2[q])
                   + (w10 * b0[q] + w11 * b1[q] + w12 * b2[q])
                   + (w20 * c0[q] + w21 * c1[q] + w22 * c2[q]))


# Reassociation lets LLVM split each sum over several vector registers
# instead of adding one element at a time (the whole backward pass measured
# 47 ms with eight hand-split sums per offset, 15 ms this way, on a
# 64-channel, 8-group 3x3 layer). Not inlined, so the flags stay with this
# function.
@njit(fastmath={"reassoc", "contract"})
def _tap_dots(e, src, rstep, cstep, part):
    """part[u, v] = sum_q e[q] * src[u*rstep + v*cstep + q].

    Each offset is a slice, indexed by the loop counter only: an index like
    ``src[off + q]`` may be negative as far as numba knows, and its wraparound
    check kept the loop from vectorising (measured 3x slower).
    """
    kh, kw = part.shape
    m = e.shape[0]
    zero = e.dtype.type(0)    # sums in the data's type (float64 sums of float32
    if kh == 3 and kw == 3:   # data measured 2x slower): one pass for nine sums
        r, c = rstep, cstep
        a0, a1, a2 = src[:m], src[c:c + m], src[2 * c:2 * c + m]
        b0, b1, b2 = src[r:r + m], src[r + c:r + c + m], src[r + 2 * c:r + 2 * c + m]
        c0, c1 = src[2 * r:2 * r + m], src[2 * r + c:2 * r + c + m]
        c2 = src[2 * r + 2 * c:2 * r + 2 * c + m]
        s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = zero
        for q in range(m):
            d = e[q]
            s00 += d * a0[q]
            s01 += d * a1[q]
            s02 += d * a2[q]
            s10 += d * b0[q]
            s11 += d * b1[q]
            s12 += d * b2[q]
            s20 += d * c0[q]
            s21 += d * c1[q]
            s22 += d * c2[q]
        part[0, 0], part[0, 1], part[0, 2] = s00, s01, s02
        part[1, 0], part[1, 1], part[1, 2] = s10, s11, s12
        part[2, 0], part[2, 1], part[2, 2] = s20, s21, s22
        return
    for u in range(kh):
        for v in range(kw):
            off = u * rstep + v * cstep
            a = src[off:off + m]
            s = zero
            for q in range(m):
                s += e[q] * a[q]
            part[u, v] = s


@njit(inline="always")
def _layout(x, w, groups, ph, pw, dh, dw, oh, ow):
    """Og, the padded plane (HP, WP) and the flat length of an output line."""
    h, wd = x.shape[2], x.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    hp, wp = padded_size(h, wd, kh, kw, 1, 1, ph, pw, dh, dw, oh, ow)
    return w.shape[0] // groups, hp, wp, (oh - 1) * wp + ow


@njit(inline="always")
def _load_unit(x, unit, groups, ph, pw, img):
    """Copy unit (sample b, group g)'s input planes into the padded planes img;
    return (b, g)."""
    cg = img.shape[0]
    b = unit // groups
    g = unit - b * groups
    for ci in range(cg):
        copy_into_padded(x[b, g * cg + ci], img[ci], ph, pw)
    return b, g


@njit
def _grouped_forward_range(x, w, bias, groups, ph, pw, dh, dw, y, lo, hi):
    cg = w.shape[1]
    oh, ow = y.shape[2], y.shape[3]
    og, hp, wp, span = _layout(x, w, groups, ph, pw, dh, dw, oh, ow)
    img = np.zeros((cg, hp, wp), dtype=x.dtype)   # borders stay 0
    line = np.empty(span, dtype=y.dtype)
    for unit in range(lo, hi):
        b, g = _load_unit(x, unit, groups, ph, pw, img)
        for oi in range(og):
            oc = g * og + oi
            for q in range(span):
                line[q] = bias[oc]
            for ci in range(cg):
                _taps(img[ci].reshape(hp * wp), 0, 1, w[oc, ci], dh * wp, dw, line)
            for i in range(oh):
                row = line[i * wp:i * wp + ow]
                dst = y[b, oc, i]
                for q in range(ow):
                    dst[q] = row[q]


@njit
def _grouped_backward_range(x, w, dy, groups, ph, pw, dh, dw, dx, dw_units, db_units, lo, hi):
    h = x.shape[2]
    cg, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    oh, ow = dy.shape[2], dy.shape[3]
    og, hp, wp, span = _layout(x, w, groups, ph, pw, dh, dw, oh, ow)
    lead = (kh - 1) * dh * wp + (kw - 1) * dw
    img = np.zeros((cg, hp, wp), dtype=x.dtype)        # borders stay 0
    dyl = np.zeros((og, lead + hp * wp), dtype=dx.dtype)  # only dy's cells are written
    grad = np.empty(hp * wp, dtype=dx.dtype)
    cells = np.empty(ow, dtype=dx.dtype)   # a plane's column sums, for db_units
    r_lo, r_hi = ph * wp, (ph + h) * wp          # the padded rows that hold the image
    for unit in range(lo, hi):
        b, g = _load_unit(x, unit, groups, ph, pw, img)
        for oi in range(og):
            e = dyl[oi]
            src = dy[b, g * og + oi]
            cells[:] = 0
            for i in range(oh):
                row = e[lead + i * wp:lead + i * wp + ow]
                line = src[i]
                for q in range(ow):
                    v = line[q]
                    row[q] = v
                    cells[q] += v
            if db_units.shape[0]:
                db_units[b, g * og + oi] = cells.sum()
            e_span = e[lead:lead + span]
            for ci in range(cg):
                _tap_dots(e_span, img[ci].reshape(hp * wp), dh * wp, dw,
                          dw_units[b, g, oi, ci])
        for ci in range(cg):
            for q in range(r_lo, r_hi):
                grad[q] = 0
            for oi in range(og):
                _taps(dyl[oi], lead + r_lo, -1, w[g * og + oi, ci], dh * wp, dw,
                      grad[r_lo:r_hi])
            copy_inside(grad.reshape(hp, wp), ph, pw, dx[b, g * cg + ci])


def grouped_forward_numpy(x, w, bias, groups, ph, pw, dh, dw, y):
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    oh, ow = y.shape[2:]
    xp = padded_copy(x, kh, kw, 1, 1, ph, pw, dh, dw, oh, ow)
    acc = np.zeros((n, groups, o // groups, oh * ow), dtype=y.dtype)
    acc += bias.reshape(1, groups, o // groups, 1)
    for u, v, view in offset_views(xp, kh, kw, 1, 1, dh, dw, oh, ow):
        acc += np.matmul(w[:, :, u, v].reshape(groups, o // groups, cg),
                         view.reshape(n, groups, cg, oh * ow))
    y[...] = acc.reshape(y.shape)


def grouped_backward_numpy(x, w, dy, groups, ph, pw, dh, dw, dx, dw_units, db_units):
    if db_units.shape[0]:
        db_units[...] = dy.sum(axis=(2, 3))
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = dy.shape[2:]
    xp = padded_copy(x, kh, kw, 1, 1, ph, pw, dh, dw, oh, ow)
    dxp = np.zeros_like(xp, dtype=dx.dtype)
    dyg = dy.reshape(n, groups, o // groups, oh * ow)
    for (u, v, view), (_, _, dview) in zip(offset_views(xp, kh, kw, 1, 1, dh, dw, oh, ow),
                                           offset_views(dxp, kh, kw, 1, 1, dh, dw, oh, ow)):
        cols = view.reshape(n, groups, cg, oh * ow)
        dw_units[..., u, v] = np.matmul(dyg, cols.transpose(0, 1, 3, 2))
        w_uv = w[:, :, u, v].reshape(groups, o // groups, cg)
        dview += np.matmul(w_uv.transpose(0, 2, 1), dyg).reshape(n, c, oh, ow)
    dx[...] = dxp[:, :, ph:ph + h, pw:pw + wd]


# the entry points: the (sample, group) units split over the threads, or all on this one
grouped_forward_numba, grouped_forward_serial = split_kernel(
    _grouped_forward_range, lambda x, w, bias, groups, *rest: x.shape[0] * groups)
grouped_backward_numba, grouped_backward_serial = split_kernel(
    _grouped_backward_range, lambda x, w, dy, groups, *rest: x.shape[0] * groups)
_forward = choose(grouped_forward_numba, grouped_forward_numpy)
_backward = choose(grouped_backward_numba, grouped_backward_numpy)
_forward_1 = choose(grouped_forward_serial, grouped_forward_numpy)
_backward_1 = choose(grouped_backward_serial, grouped_backward_numpy)


def _check(x, w, out, groups, padding, dilation):
    """x (N, C, H, W), w (O, C/G, KH, KW), out (N, O, OH, OW) at stride 1."""
    ok = x.ndim == 4 and w.ndim == 4 and out.ndim == 4 and groups >= 1
    if ok:
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        ok = (c == groups * cg and o % groups == 0 and out.shape[:2] == (n, o)
              and min(kh, kw) >= 1 and min(dilation) >= 1 and min(padding) >= 0)
    if not ok:
        raise ValueError(f"grouped: inconsistent shapes x={x.shape}, weight={w.shape}, "
                         f"out={out.shape}, groups={groups}, padding={padding}, "
                         f"dilation={dilation}")


def grouped_forward(x, w, bias, groups, padding, dilation, y, serial=False):
    """Fill y (N, O, OH, OW) with the stride-1 grouped convolution of x
    (N, C, H, W) by w (O, C/groups, KH, KW) plus bias (O,); ``padding`` (the
    padding before the first row/column) and ``dilation`` are (H, W) pairs.
    ``serial``: run on the calling thread only (the caller splits the batch
    over the threads). Returns y."""
    _check(x, w, y, groups, padding, dilation)
    check_output("grouped", y, bias, w.shape[0])
    if y.size:
        kernel = _forward_1 if serial else _forward
        kernel(np.ascontiguousarray(x), np.ascontiguousarray(w), np.ascontiguousarray(bias),
               groups, *padding, *dilation, y)
    return y


def grouped_backward(x, w, dy, groups, padding, dilation, dx, serial=False, db=None):
    """Fill dx (x's shape) with the input gradient and return the weight
    gradient (O, C/groups, KH, KW) of ``grouped_forward`` for upstream dy;
    ``serial`` as there. ``db`` (O,), if given, gets the bias gradient (dy
    summed over all but the channels), summed from each plane of dy while
    the loops copy it (in place of another pass over dy)."""
    _check(x, w, dy, groups, padding, dilation)
    if dx.shape != x.shape or not dx.flags.c_contiguous:
        raise ValueError(f"grouped: dx must be C-contiguous of shape {x.shape}, got {dx.shape}")
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    dw_units = np.zeros((n, groups, o // groups, cg, kh, kw), dtype=dx.dtype)
    if db is not None and db.shape != (o,):
        raise ValueError(f"grouped: db must have shape {(o,)}, got {db.shape}")
    db_units = np.zeros((n, o) if db is not None else (0, 0), dtype=dx.dtype)
    if dx.size and dy.size:
        kernel = _backward_1 if serial else _backward
        kernel(np.ascontiguousarray(x), np.ascontiguousarray(w), np.ascontiguousarray(dy),
               groups, *padding, *dilation, dx, dw_units, db_units)
    else:
        dx[...] = 0
    if db is not None:
        db[...] = db_units.sum(axis=0)
    return dw_units.sum(axis=0).reshape(w.shape)
