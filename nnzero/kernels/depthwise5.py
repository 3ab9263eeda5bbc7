"""Depthwise convolution with 5-wide kernels at column stride 2, one pass per kernel row.

The same convolution as ``depthwise.py`` (formulas and the layout of the
weight-gradient shares are in its docstring), for the downsampling layers
of EfficientNet- and MnasNet-like networks (5x5 kernels, stride 2, no
column dilation). ``depthwise.py``'s row loops add one scaled padded row per
tap, 25 passes over each output row for a 5x5 kernel; here each kernel row
u adds its five taps in one pass,

    y[i, q] += sum_v w[u, v] * xp[i*SH + u*DH, 2q + v]        v = 0 ... 4

with constant column offsets, so the loop vectorises (as the 3x3 loops of
``depthwise3.py`` do). The backward pass gathers each padded gradient
column instead of scattering into it: column 2m receives w[u, 0] dy[i, m] +
w[u, 2] dy[i, m-1] + w[u, 4] dy[i, m-2] and column 2m+1 receives w[u, 1]
dy[i, m] + w[u, 3] dy[i, m-1], each written once per pass; the weight
gradient's five sums per kernel row run in a helper compiled with
reassociation. Any kernel height and row stride or dilation.

Measured kernel against kernel on one thread, 16 samples (4 at 112x112),
5x5, stride 2, padding 2, 5 rounds, these loops / the row loops: forward
0.24-0.28 on 8x8 inputs, 0.3-0.66 on 16x16, 0.2-0.42 on 14x14, 0.29-0.53
on 28x28, 0.56-0.81 on 32x32, 0.45-0.59 on 112x112; backward 0.44-0.46,
0.35-0.52, 0.31-0.48, 0.36-0.53, 0.36-0.43, 0.41-0.42.
"""
from __future__ import annotations

import numpy as np

from ._jit import njit
from ._pool import split_kernel
from .windows import copy_inside, copy_into_padded, padded_size, start_gradient_plane


def applies(kernel_hw, stride_w, dilation_w):
    """Whether these loops compute a depthwise layer: 5-wide kernel, column
    stride 2, no column dilation."""
    return kernel_hw[1] == 5 and stride_w == 2 and dilation_w == 1


@njit(inline="always")
def _add_row(o, a, w0, w1, w2, w3, w4):
    """o[q] += sum_v w_v * a[2q + v]: one kernel row's five taps."""
    for q in range(o.shape[0]):
        o[q] += (w0 * a[2 * q] + w1 * a[2 * q + 1] + w2 * a[2 * q + 2]
                 + w3 * a[2 * q + 3] + w4 * a[2 * q + 4])


@njit
def _depthwise5_forward_range(x, w, bias, sh, sw, ph, pw, dh, dw, y, lo, hi):
    """``depthwise._depthwise_forward_range`` for 5-wide kernels at column stride 2."""
    n, c, h, wd = x.shape
    kh = w.shape[2]
    oh, ow = y.shape[2], y.shape[3]
    hp, wp = padded_size(h, wd, kh, 5, sh, 2, ph, pw, dh, 1, oh, ow)
    cols = 2 * ow + 3                  # the columns the windows of a row reach
    img = np.zeros((hp, wp), dtype=x.dtype)   # borders stay 0
    for nc in range(lo, hi):
        b = nc // c
        ch = nc - b * c
        copy_into_padded(x[b, ch], img, ph, pw)
        out = y[b, ch]
        bb = bias[ch]
        for i in range(oh):
            o = out[i]
            for q in range(ow):
                o[q] = bb
            for u in range(kh):
                t = w[ch, 0, u]
                _add_row(o, img[i * sh + u * dh, 0:cols], t[0], t[1], t[2], t[3], t[4])


# Not inlined, so that the reassociation flag stays with this function.
@njit(fastmath={"reassoc", "contract"})
def _plane_dots(d, img, sh, dh, part):
    """part[u, v] = sum_{i,q} d[i, q] * img[i*SH + u*DH, 2q + v]: one plane's
    weight gradient, summed in the data's type."""
    oh, ow = d.shape
    zero = d.dtype.type(0)
    for u in range(part.shape[0]):
        s0 = s1 = s2 = s3 = s4 = zero
        for i in range(oh):
            g = d[i]
            a = img[i * sh + u * dh]
            for q in range(ow):
                gq = g[q]
                s0 += gq * a[2 * q]
                s1 += gq * a[2 * q + 1]
                s2 += gq * a[2 * q + 2]
                s3 += gq * a[2 * q + 3]
                s4 += gq * a[2 * q + 4]
        part[u, 0], part[u, 1], part[u, 2], part[u, 3], part[u, 4] = s0, s1, s2, s3, s4


@njit(inline="always")
def _gather_row(gz, grow, w0, w1, w2, w3, w4):
    """One kernel row's share of a padded gradient row (see the module);
    ``gz`` is the dy row with two zeros in front (dy[-1] = dy[-2] = 0)."""
    ow = gz.shape[0] - 2
    cur, back1, back2 = gz[2:], gz[1:ow + 1], gz[:ow]
    for m in range(ow):
        grow[2 * m] += w0 * cur[m] + w2 * back1[m] + w4 * back2[m]
        grow[2 * m + 1] += w1 * cur[m] + w3 * back1[m]
    grow[2 * ow] += w2 * gz[ow + 1] + w4 * gz[ow]
    grow[2 * ow + 1] += w3 * gz[ow + 1]
    grow[2 * ow + 2] += w4 * gz[ow + 1]


@njit
def _depthwise5_backward_range(x, w, dy, sh, sw, ph, pw, dh, dw, dx, dw_planes, lo, hi):
    """``depthwise._depthwise_backward_range`` for 5-wide kernels at column stride 2."""
    h, wd = x.shape[2], x.shape[3]
    kh = w.shape[2]
    oh, ow = dy.shape[2], dy.shape[3]
    hp, wp = padded_size(h, wd, kh, 5, sh, 2, ph, pw, dh, 1, oh, ow)
    cols = 2 * ow + 3
    img = np.zeros((hp, wp), dtype=x.dtype)   # borders stay 0
    grad = np.empty((hp, wp), dtype=dx.dtype)
    gz = np.zeros(ow + 2, dtype=dy.dtype)  # [0, 0, dy row]
    for nc in range(lo, hi):
        b, ch = start_gradient_plane(x, nc, img, grad, ph, pw)
        d = dy[b, ch]
        for i in range(oh):
            gi = d[i]
            for q in range(ow):
                gz[q + 2] = gi[q]
            for u in range(kh):
                t = w[ch, 0, u]
                _gather_row(gz, grad[i * sh + u * dh, 0:cols], t[0], t[1], t[2], t[3], t[4])
        _plane_dots(d, img, sh, dh, dw_planes[b, ch])
        copy_inside(grad, ph, pw, dx[b, ch])


# the entry points: the (n, c) planes split over the threads, or all on this one
depthwise5_forward_numba, depthwise5_forward_serial = split_kernel(
    _depthwise5_forward_range, lambda x, *rest: x.shape[0] * x.shape[1])
depthwise5_backward_numba, depthwise5_backward_serial = split_kernel(
    _depthwise5_backward_range, lambda x, *rest: x.shape[0] * x.shape[1])
