"""Depthwise convolution (groups = C_in = C_out) computed directly, plane by plane.

Notation as in ``im2col.py``. With one input and one output channel per
group, each output plane is its own input plane filtered by a KH x KW kernel:

    y[n, c, i, j] = b[c] + sum_{u,v} w[c, 0, u, v] * xp[n, c, i*SH + u*DH, j*SW + v*DW]

where xp is x zero-padded by (PH, PW) before (and as far as the windows reach
after). im2col would copy every input value KH*KW times to then multiply it
by a single number per row: a product one row deep, far below BLAS speed (the
layer measured 2.3-6.6x PyTorch's time that way). Here each output row is
KH*KW scaled additions of padded input rows, at any stride. (At stride 1
``grouped.py``'s whole-plane loops are faster and ``functional/direct.py``
sends depthwise layers there; these loops are correct at stride 1 too.) The
backward pass runs the same loops the other way:

    dxp[n, c, i*SH + u*DH, j*SW + v*DW] += w[c, 0, u, v] * dy[n, c, i, j]
    dw[c, 0, u, v] = sum_{n,i,j} dy[n, c, i, j] * xp[n, c, i*SH + u*DH, j*SW + v*DW]

dx is the inside of dxp. Each (n, c) plane's share of dw is written to its own
slot of an (N, C, KH, KW) array and summed over N by the caller, so no two
threads ever write the same place.

Each kernel is a compiled loop over a range of planes with one padded
scratch plane per call (``*_range``); ``*_numba`` splits the planes over the
threads and ``*_serial`` runs them all on the calling thread, for a caller
that splits the batch (``_pool.split_kernel``); ``*_numpy`` is the twin, one
strided view per kernel offset.
For 3x3 kernels ``depthwise3.py`` and for 5-wide kernels at column stride 2
``depthwise5.py`` have faster loops (``family`` picks); the same twin
stands for them. The public wrappers pick the kernel and check every shape,
so a wrong call raises instead of reading or writing out of bounds.
"""
from __future__ import annotations

import numpy as np

from ._jit import choose, njit
from ._pool import split_kernel
from . import depthwise3 as _d3
from . import depthwise5 as _d5
from .im2col import offset_views, padded_copy
from .windows import copy_inside, copy_into_padded, padded_size, start_gradient_plane


@njit
def _depthwise_forward_range(x, w, bias, sh, sw, ph, pw, dh, dw, y, lo, hi):
    n, c, h, wd = x.shape
    kh, kw = w.shape[2], w.shape[3]
    oh, ow = y.shape[2], y.shape[3]
    hp, wp = padded_size(h, wd, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    img = np.zeros((hp, wp), dtype=x.dtype)   # borders stay 0
    for nc in range(lo, hi):
        b = nc // c
        ch = nc - b * c
        copy_into_padded(x[b, ch], img, ph, pw)
        for i in range(oh):
            dst = y[b, ch, i]
            for q in range(ow):
                dst[q] = bias[ch]
            for u in range(kh):
                src_row = img[i * sh + u * dh]
                for v in range(kw):
                    wt = w[ch, 0, u, v]
                    if sw == 1:
                        src = src_row[v * dw:v * dw + ow]
                        for q in range(ow):
                            dst[q] += wt * src[q]
                    elif sw == 2:
                        src = src_row[v * dw:v * dw + 2 * ow - 1]
                        for q in range(ow):
                            dst[q] += wt * src[2 * q]
                    else:
                        src = src_row[v * dw:v * dw + (ow - 1) * sw + 1]
                        for q in range(ow):
                            dst[q] += wt * src[q * sw]


@njit
def _depthwise_backward_range(x, w, dy, sh, sw, ph, pw, dh, dw, dx, dw_planes, lo, hi):
    h, wd = x.shape[2], x.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    oh, ow = dy.shape[2], dy.shape[3]
    hp, wp = padded_size(h, wd, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    img = np.zeros((hp, wp), dtype=x.dtype)   # borders stay 0
    grad = np.empty((hp, wp), dtype=dx.dtype)
    # dw products summed per column first (vectorises), across the row at the end
    sums = np.empty((kh * kw, ow), dtype=dx.dtype)
    for nc in range(lo, hi):
        b, ch = start_gradient_plane(x, nc, img, grad, ph, pw)
        for t in range(kh * kw):
            srow = sums[t]
            for q in range(ow):
                srow[q] = 0
        for i in range(oh):
            g = dy[b, ch, i]
            for u in range(kh):
                src_row = img[i * sh + u * dh]
                dst_row = grad[i * sh + u * dh]
                for v in range(kw):
                    wt = w[ch, 0, u, v]
                    srow = sums[u * kw + v]
                    if sw == 1:
                        src = src_row[v * dw:v * dw + ow]
                        dst = dst_row[v * dw:v * dw + ow]
                        for q in range(ow):
                            srow[q] += g[q] * src[q]
                            dst[q] += wt * g[q]
                    elif sw == 2:
                        src = src_row[v * dw:v * dw + 2 * ow - 1]
                        dst = dst_row[v * dw:v * dw + 2 * ow - 1]
                        for q in range(ow):
                            srow[q] += g[q] * src[2 * q]
                            dst[2 * q] += wt * g[q]
                    else:
                        src = src_row[v * dw:v * dw + (ow - 1) * sw + 1]
                        dst = dst_row[v * dw:v * dw + (ow - 1) * sw + 1]
                        for q in range(ow):
                            srow[q] += g[q] * src[q * sw]
                            dst[q * sw] += wt * g[q]
        part = dw_planes[b, ch]
        for u in range(kh):
            for v in range(kw):
                part[u, v] = sums[u * kw + v].sum()
        copy_inside(grad, ph, pw, dx[b, ch])


def depthwise_forward_numpy(x, w, bias, sh, sw, ph, pw, dh, dw, y):
    kh, kw = w.shape[2:]
    oh, ow = y.shape[2:]
    xp = padded_copy(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    y[...] = bias.reshape(1, -1, 1, 1)
    for u, v, view in offset_views(xp, kh, kw, sh, sw, dh, dw, oh, ow):
        y += w[:, 0, u, v].reshape(1, -1, 1, 1) * view


def depthwise_backward_numpy(x, w, dy, sh, sw, ph, pw, dh, dw, dx, dw_planes):
    kh, kw = w.shape[2:]
    oh, ow = dy.shape[2:]
    h, wd = x.shape[2:]
    xp = padded_copy(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    dxp = np.zeros_like(xp, dtype=dx.dtype)
    for (u, v, view), (_, _, dview) in zip(offset_views(xp, kh, kw, sh, sw, dh, dw, oh, ow),
                                           offset_views(dxp, kh, kw, sh, sw, dh, dw, oh, ow)):
        dw_planes[:, :, u, v] = (dy * view).sum(axis=(2, 3))
        dview += w[:, 0, u, v].reshape(1, -1, 1, 1) * dy  # one offset: no cell repeats
    dx[...] = dxp[:, :, ph:ph + h, pw:pw + wd]


# the entry points: the (n, c) planes split over the threads, or all on this one
depthwise_forward_numba, depthwise_forward_serial = split_kernel(
    _depthwise_forward_range, lambda x, *rest: x.shape[0] * x.shape[1])
depthwise_backward_numba, depthwise_backward_serial = split_kernel(
    _depthwise_backward_range, lambda x, *rest: x.shape[0] * x.shape[1])
# (parallel, serial) compiles of each family of loops; one NumPy twin for all
_FORWARD = {
    "rows": (depthwise_forward_numba, depthwise_forward_serial),
    "3x3": (_d3.depthwise3_forward_numba, _d3.depthwise3_forward_serial),
    "5 wide": (_d5.depthwise5_forward_numba, _d5.depthwise5_forward_serial)}
_BACKWARD = {
    "rows": (depthwise_backward_numba, depthwise_backward_serial),
    "3x3": (_d3.depthwise3_backward_numba, _d3.depthwise3_backward_serial),
    "5 wide": (_d5.depthwise5_backward_numba, _d5.depthwise5_backward_serial)}


def family(kernel_hw, out_width, stride_w, dilation_w):
    """Which loops compute a depthwise layer: ``depthwise3.py``'s for 3x3
    kernels where ``depthwise3.fused`` says so, ``depthwise5.py``'s for
    5-wide kernels at column stride 2, the row loops above otherwise."""
    if _d3.fused(kernel_hw, out_width, stride_w, dilation_w):
        return "3x3"
    if _d5.applies(kernel_hw, stride_w, dilation_w):
        return "5 wide"
    return "rows"


def _pick(kernels, serial, numpy_twin, *geometry):
    return choose(kernels[family(*geometry)][1 if serial else 0], numpy_twin)


def _check(x, w, out, stride, padding, dilation):
    """x (N, C, H, W), w (C, 1, KH, KW), out (N, C, OH, OW) and a sane geometry."""
    ok = x.ndim == 4 and w.ndim == 4 and out.ndim == 4
    if ok:
        n, c = x.shape[:2]
        ok = (w.shape[:2] == (c, 1) and out.shape[:2] == (n, c) and min(w.shape[2:]) >= 1
              and min(stride) >= 1 and min(dilation) >= 1 and min(padding) >= 0)
    if not ok:
        raise ValueError(f"depthwise: inconsistent shapes x={x.shape}, weight={w.shape}, "
                         f"out={out.shape}, stride={stride}, padding={padding}, "
                         f"dilation={dilation}")


def check_output(kernel, y, bias, channels):
    """The output array a forward kernel fills, and the bias it adds."""
    if not y.flags.c_contiguous:
        raise ValueError(f"{kernel}: y must be C-contiguous")
    if bias.shape != (channels,):
        raise ValueError(f"{kernel}: bias must have shape ({channels},), got {bias.shape}")


def depthwise_forward(x, w, bias, stride, padding, dilation, y, serial=False):
    """Fill y (N, C, OH, OW) with the depthwise convolution of x (N, C, H, W) by
    w (C, 1, KH, KW) plus bias (C,); every geometry argument an (H, W) pair,
    ``padding`` the padding before the first row/column. ``serial``: run on
    the calling thread only (the caller splits the batch over the threads).
    Returns y."""
    _check(x, w, y, stride, padding, dilation)
    check_output("depthwise", y, bias, x.shape[1])
    if y.size:
        kernel = _pick(_FORWARD, serial, depthwise_forward_numpy, w.shape[2:], y.shape[3],
                       stride[1], dilation[1])
        kernel(np.ascontiguousarray(x), np.ascontiguousarray(w), np.ascontiguousarray(bias),
               *stride, *padding, *dilation, y)
    return y


def depthwise_backward(x, w, dy, stride, padding, dilation, dx, serial=False):
    """Fill dx (x's shape) with the input gradient and return the weight
    gradient (C, 1, KH, KW) of ``depthwise_forward`` for upstream gradient dy;
    ``serial`` as there."""
    _check(x, w, dy, stride, padding, dilation)
    if dx.shape != x.shape or not dx.flags.c_contiguous:
        raise ValueError(f"depthwise: dx must be C-contiguous of shape {x.shape}, got {dx.shape}")
    n, c = x.shape[:2]
    dw_planes = np.zeros((n, c) + w.shape[2:], dtype=dx.dtype)
    if dx.size:
        kernel = _pick(_BACKWARD, serial, depthwise_backward_numpy, w.shape[2:], dy.shape[3],
                       stride[1], dilation[1])
        kernel(np.ascontiguousarray(x), np.ascontiguousarray(w), np.ascontiguousarray(dy),
               *stride, *padding, *dilation, dx, dw_planes)
    else:
        dx[...] = 0
    return dw_planes.sum(axis=0).reshape(w.shape)
