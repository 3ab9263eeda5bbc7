"""im2col and col2im: the loops behind convolution and transposed convolution.

Notation
--------
N batch, C channels, H x W image, KH x KW kernel, SH/SW stride,
PH/PW padding before the first row/column (the padding after is implicit:
window cells past the image read as 0), DH/DW dilation, OH x OW the grid of
window positions, L = OH*OW, K = C*KH*KW.

    cols[n, (c*KH + u)*KW + v, i*OW + j] = x[n, c, i*SH - PH + u*DH, j*SW - PW + v*DW]

(0 where the index falls outside the image). The layout (N, K, L) is chosen
so that a convolution is ``W (O, K) @ cols[n] (K, L) -> (O, L)``: already
NCHW, no transpose after the matmul. col2im is the adjoint: it scatters
every column entry back and ADDS it (windows overlap when stride < kernel).

In the (N, K, L) layout each sample's block may have rows past K
(``im2col(..., extra_rows=1)``): the kernels index rows by (c, u, v) and never
touch those; convolution puts a row of ones there, so that the bias rides in
the products (see ``functional/conv.py``).

``kmajor=True`` selects the layout (K, N, L) instead: row k of every sample
side by side, so the whole batch is one (K, N*L) matrix and one big matmul
replaces N small ones (transposed convolution uses it: there the per-sample
products are small and the reordering it costs falls on the smaller side;
so do convolutions with small output planes). There the kernels take one
channel of a block of samples at a time, so that each kernel offset writes
(or reads) a long stretch of its row (see ``windows.py``).

Each kernel comes as ``*_numba`` (a compiled loop over a range of units,
the N*C planes or the (channel, sample block) units, the units split over
the threads by ``_pool.split_kernel``, so no two threads ever write the same
plane), ``*_serial`` (all units on the calling thread, for callers that split
the batch themselves) and ``*_numpy`` (a loop over the KH*KW kernel offsets,
each a strided block copy, as Chainer does it); the public ``im2col``/``col2im``
pick one (see ``_jit.py``) and check shapes, so a wrong call raises instead of
reading or writing out of bounds.
"""
from __future__ import annotations

import numpy as np

from ._jit import choose, njit
from ._pool import split_kernel
from .windows import (add_block, block_unit, copy_from_phases, copy_inside,
                      copy_into_padded, copy_into_phases, gather_block, gather_window,
                      padded_size, phased, sample_block)


# Each kernel is a compiled loop over a range of units, the (n, c) planes or,
# batch-minor, the (channel, sample block) units, with its own scratch; the
# units are split over the threads by ``_pool.split_kernel``.
@njit
def _im2col_range(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, cols, kmajor, lo, hi):
    n, c, h, w = x.shape
    hp, wp = padded_size(h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    if kmajor:   # one channel of a block of samples at a time (see windows.py)
        sb = sample_block(n, hp, wp)
        blocks = (n + sb - 1) // sb
        padded = np.zeros((sb, hp, wp), dtype=x.dtype)
        for unit in range(lo, hi):
            ch, b0, b1 = block_unit(unit, blocks, sb, n)
            img = padded[:b1 - b0]
            for j in range(b1 - b0):
                copy_into_padded(x[b0 + j, ch], img[j], ph, pw)
            for u in range(kh):
                for v in range(kw):
                    out = cols[(ch * kh + u) * kw + v, b0:b1].reshape(b1 - b0, oh, ow)
                    gather_block(img, u * dh, v * dw, sh, sw, out)
        return
    # the padded plane, or at column stride 2 its two column phases (see
    # windows.py); the borders stay 0, the insides are rewritten
    in_phases = phased(kw, sw, dw)
    img = np.zeros((0, 0) if in_phases else (hp, wp), dtype=x.dtype)
    phases = np.zeros((2, hp, (wp + 1) // 2) if in_phases else (0, 0, 0), dtype=x.dtype)
    for nc in range(lo, hi):
        b = nc // c
        ch = nc - b * c
        if in_phases:
            copy_into_phases(x[b, ch], phases, ph, pw)
        else:
            copy_into_padded(x[b, ch], img, ph, pw)
        for u in range(kh):
            for v in range(kw):
                out = cols[b, (ch * kh + u) * kw + v].reshape(oh, ow)
                if in_phases:
                    c0 = v * dw
                    gather_window(phases[c0 % 2], u * dh, c0 // 2, sh, 1, out)
                else:
                    gather_window(img, u * dh, v * dw, sh, sw, out)


@njit
def _col2im_range(cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, x, kmajor, lo, hi):
    n, c, h, w = x.shape
    hp, wp = padded_size(h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    if kmajor:   # one channel of a block of samples at a time, summed in padded planes
        sb = sample_block(n, hp, wp)
        blocks = (n + sb - 1) // sb
        padded = np.empty((sb, hp, wp), dtype=x.dtype)
        for unit in range(lo, hi):
            ch, b0, b1 = block_unit(unit, blocks, sb, n)
            img = padded[:b1 - b0]
            img[:, :, :] = 0
            for u in range(kh):
                for v in range(kw):
                    col = cols[(ch * kh + u) * kw + v, b0:b1].reshape(b1 - b0, oh, ow)
                    add_block(col, u * dh, v * dw, sh, sw, img)
            for j in range(b1 - b0):
                copy_inside(img[j], ph, pw, x[b0 + j, ch])
        return
    img = np.empty((hp, wp) if sw == 1 else (0, 0), dtype=x.dtype)
    in_phases = phased(kw, sw, dw)
    phases = np.empty((2, hp, (wp + 1) // 2) if in_phases else (0, 0, 0), dtype=x.dtype)
    for nc in range(lo, hi):
        b = nc // c
        ch = nc - b * c
        if in_phases:
            _col2im_plane_phases(cols, b, ch, kh, kw, sh, ph, pw, dh, dw, oh, ow, phases,
                                 x[b, ch])
        elif sw == 1:
            _col2im_plane_padded(cols, b, ch, kh, kw, sh, ph, pw, dh, dw, oh, ow, img, x[b, ch])
        else:
            _col2im_plane_clipped(cols, b, ch, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow,
                                  x[b, ch])


def _units(n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, kmajor):
    """How many units the kernels split over the threads (see ``_im2col_range``)."""
    if not kmajor:
        return n * c
    hp, wp = padded_size.py_func(h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    sb = sample_block.py_func(n, hp, wp)
    return c * ((n + sb - 1) // sb)


im2col_numba, im2col_serial = split_kernel(
    _im2col_range, lambda x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, cols, kmajor:
    _units(*x.shape, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, kmajor))
col2im_numba, col2im_serial = split_kernel(
    _col2im_range, lambda cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, x, kmajor:
    _units(*x.shape, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, kmajor))


@njit(inline="always")
def _col2im_plane_padded(cols, b, ch, kh, kw, sh, ph, pw, dh, dw, oh, ow, img, plane):
    """One plane of col2im at column stride 1, summed in the zero-padded ``img``."""
    hp, wp = img.shape
    flat = img.reshape(hp * wp)
    for q in range(hp * wp):
        flat[q] = 0
    for u in range(kh):
        for v in range(kw):
            row = (ch * kh + u) * kw + v
            col = cols[b, row].reshape(oh, ow)
            dst = img[u * dh:u * dh + (oh - 1) * sh + 1:sh, v * dw:v * dw + ow]
            for i in range(oh):
                for q in range(ow):
                    dst[i, q] += col[i, q]
    copy_inside(img, ph, pw, plane)


@njit(inline="always")
def _col2im_plane_phases(cols, b, ch, kh, kw, sh, ph, pw, dh, dw, oh, ow, phases, plane):
    """One plane of col2im at column stride 2, summed in the padded plane's two
    column phases (see ``windows.py``): every window row adds into one
    contiguous run."""
    flat = phases.reshape(phases.size)
    for q in range(phases.size):
        flat[q] = 0
    for u in range(kh):
        for v in range(kw):
            c0 = v * dw
            col = cols[b, (ch * kh + u) * kw + v].reshape(oh, ow)
            dst = phases[c0 % 2, u * dh:u * dh + (oh - 1) * sh + 1:sh, c0 // 2:c0 // 2 + ow]
            for i in range(oh):
                for q in range(ow):
                    dst[i, q] += col[i, q]
    copy_from_phases(phases, ph, pw, plane)


@njit(inline="always")
def _valid_range(n_out, stride, offset, size):
    """Positions j in [0, n_out) with 0 <= j*stride + offset < size, as [lo, hi),
    with 0 <= lo <= hi <= n_out (callers loop over [0, lo) and [hi, n_out) too)."""
    lo = -(offset // stride)  # ceil(-offset / stride)
    if lo < 0:
        lo = 0
    if lo > n_out:
        lo = n_out
    hi = (size - 1 - offset) // stride + 1
    if hi > n_out:
        hi = n_out
    if hi < lo:
        hi = lo
    return lo, hi


@njit(inline="always")
def _col2im_plane_clipped(cols, b, ch, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, plane):
    """One plane of col2im at column stride 2 or more (unless ``phased``), each
    window row clipped to the image."""
    h, w = plane.shape
    plane[:, :] = 0
    for u in range(kh):
        i_lo, i_hi = _valid_range(oh, sh, u * dh - ph, h)
        rows = i_hi - i_lo
        if rows <= 0:
            continue
        r0 = i_lo * sh - ph + u * dh       # the first row written
        for v in range(kw):
            row = (ch * kh + u) * kw + v
            col = cols[b, row].reshape(oh, ow)
            off_w = v * dw - pw
            j_lo, j_hi = _valid_range(ow, sw, off_w, w)
            m = j_hi - j_lo
            if m <= 0:
                continue
            a = j_lo * sw + off_w          # the first column written
            src = col[i_lo:i_hi, j_lo:j_hi]
            if sw == 2:
                dst = plane[r0:r0 + (rows - 1) * sh + 1:sh, a:a + 2 * m - 1]
                for i in range(rows):
                    for q in range(m):
                        dst[i, 2 * q] += src[i, q]
            else:
                dst = plane[r0:r0 + (rows - 1) * sh + 1:sh, a:a + (m - 1) * sw + 1:sw]
                for i in range(rows):
                    for q in range(m):
                        dst[i, q] += src[i, q]


def zero_padded(x_shape, dtype, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """Zeros (N, C, HP, WP): room for the image at (PH, PW) and every window of
    the OH x OW grid (the NumPy twins' ``padded_size``)."""
    n, c, h, w = x_shape
    return np.zeros((n, c) + padded_size.py_func(h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow),
                    dtype=dtype)


def padded_copy(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """x inside ``zero_padded`` at (PH, PW)."""
    h, w = x.shape[2:]
    xp = zero_padded(x.shape, x.dtype, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


def offset_views(a, kh, kw, sh, sw, dh, dw, oh, ow):
    """(u, v, the (N, C, OH, OW) view of padded ``a`` that kernel offset (u, v)
    reads), for every offset. Within one view no cell repeats, so ``+=`` on it
    is a plain addition."""
    for u in range(kh):
        for v in range(kw):
            r0, c0 = u * dh, v * dw
            yield u, v, a[:, :, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + (ow - 1) * sw + 1:sw]


def _cols_view(cols, n, c, kh, kw, oh, ow, kmajor):
    """cols as an (N, C, KH, KW, OH, OW) view, whichever layout it has."""
    if kmajor:
        return cols.reshape(c, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5)
    return cols.reshape(n, c, kh, kw, oh, ow)   # only splits axes: a view even of a slice


def im2col_numpy(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, cols, kmajor):
    n, c = x.shape[:2]
    xp = padded_copy(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    if not kmajor:   # rows past C*KH*KW (see ``im2col``'s extra_rows) are not written
        cols = cols[:, :c * kh * kw]
    view = _cols_view(cols, n, c, kh, kw, oh, ow, kmajor)
    for u, v, window in offset_views(xp, kh, kw, sh, sw, dh, dw, oh, ow):
        view[:, :, u, v] = window


def col2im_numpy(cols, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, x, kmajor):
    n, c, h, w = x.shape
    xp = zero_padded(x.shape, x.dtype, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    view = _cols_view(cols, n, c, kh, kw, oh, ow, kmajor)
    for u, v, window in offset_views(xp, kh, kw, sh, sw, dh, dw, oh, ow):
        window += view[:, :, u, v]
    x[...] = xp[:, :, ph:ph + h, pw:pw + w]


_im2col = choose(im2col_numba, im2col_numpy)
_col2im = choose(col2im_numba, col2im_numpy)
# on the calling thread, for callers that run one kernel per thread themselves
_im2col_1 = choose(im2col_serial, im2col_numpy)
_col2im_1 = choose(col2im_serial, col2im_numpy)


def _check(x_shape, cols, kernel_size, stride, padding, dilation, out_size, kmajor,
           extra_rows=0):
    n, c = x_shape[:2]
    kh, kw = kernel_size
    oh, ow = out_size
    if extra_rows < 0:
        raise ValueError(f"im2col: extra_rows must be >= 0, got {extra_rows}")
    if extra_rows and kmajor:
        raise ValueError(f"im2col: extra_rows={extra_rows} needs the sample-major layout")
    expected = ((c * kh * kw, n, oh * ow) if kmajor
                else (n, c * kh * kw + extra_rows, oh * ow))
    if cols.shape != expected:
        raise ValueError(f"im2col/col2im: cols must have shape {expected}, got {cols.shape}")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or min(kh, kw, oh, ow) < 1:
        raise ValueError(f"im2col/col2im: invalid geometry kernel={kernel_size}, "
                         f"stride={stride}, padding={padding}, dilation={dilation}, "
                         f"out_size={out_size}")


def im2col(x, kernel_size, stride, padding, dilation, out_size, out=None, kmajor=False,
           serial=False, extra_rows=0):
    """cols (N, C*KH*KW, OH*OW) of x (N, C, H, W), or (C*KH*KW, N, OH*OW) with
    ``kmajor``; every argument an (H, W) pair. ``out`` must be C-contiguous.
    ``serial``: run on the calling thread only (the caller parallelises).
    ``extra_rows``: each sample's block has that many more rows, after the
    C*KH*KW columns rows, left as they are (the caller fills them; sample-major
    layout only).

    ``padding`` is the padding before the first row/column; ``out_size`` the
    window grid (OH, OW), which fixes how far past the image windows reach.
    """
    n, c = x.shape[:2]
    rows, length = c * kernel_size[0] * kernel_size[1], out_size[0] * out_size[1]
    cols = out if out is not None else np.empty(
        (rows, n, length) if kmajor else (n, rows + extra_rows, length), dtype=x.dtype)
    _check(x.shape, cols, kernel_size, stride, padding, dilation, out_size, kmajor,
           extra_rows)
    if not cols.flags.c_contiguous:
        raise ValueError("im2col: out must be C-contiguous")
    if cols.size:
        kernel = _im2col_1 if serial else _im2col
        kernel(np.ascontiguousarray(x), *kernel_size, *stride, *padding, *dilation,
               *out_size, cols, kmajor)
    return cols


def col2im(cols, image_shape, kernel_size, stride, padding, dilation, out_size,
           kmajor=False, out=None, serial=False):
    """The adjoint of ``im2col``: an (N, C, H, W) image where every entry of
    ``cols`` (either layout, as ``kmajor`` says) has been added at the position
    it was read from. ``out``: a C-contiguous array of ``image_shape`` to fill;
    ``serial`` as for ``im2col``."""
    x = out if out is not None else np.empty(image_shape, dtype=cols.dtype)
    if x.shape != tuple(image_shape) or not x.flags.c_contiguous:
        raise ValueError(f"col2im: out must be C-contiguous of shape {tuple(image_shape)}, "
                         f"got {x.shape}")
    _check(image_shape, cols, kernel_size, stride, padding, dilation, out_size, kmajor)
    if x.size:
        kernel = _col2im_1 if serial else _col2im
        kernel(np.ascontiguousarray(cols), *kernel_size, *stride, *padding, *dilation,
               *out_size, x, kmajor)
    else:
        x[...] = 0
    return x
