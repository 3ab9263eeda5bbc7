"""Depthwise 3x3 convolution with all nine taps of an output cell in one pass.

The same convolution as ``depthwise.py`` (its docstring has the formulas and
the layout of the weight-gradient shares), for the kernel size nearly every
depthwise layer has. ``depthwise.py``'s loops add one scaled row of the
padded plane per tap and output row: on narrow planes they mostly set up (a
4-wide output row costs nine row slices and nine loops of four), and at
column stride 2 their loads are strided by a step numba does not know. Here
each plane gets three row views once (view u: padded rows i*SH + u*DH for
output rows i = 0, 1, ...), the nine weights sit in scalars, and

    y[i, q] = b + sum_{u,v} w[u, v] * view_u[i, q*SW + v*DW]

is one expression per cell. At column stride 2 without dilation (the
downsampling layers of MobileNet-like networks) the column offsets are the
constants 2q, 2q+1, 2q+2 and the loops vectorise. The backward pass there
gathers instead of scattering: padded column 2m receives w[u, 0] dy[i, m] +
w[u, 2] dy[i, m-1] and column 2m+1 receives w[u, 1] dy[i, m], so every
column is written once per row and the loop carries nothing from one m to
the next; the nine weight-gradient sums run in a helper compiled with
reassociation, so that LLVM can split each over vector lanes (as in
``grouped.py``).

Measured kernel against kernel on one thread, 16 samples (4 at 112x112),
stride 2, padding 1, 5 rounds, these loops / ``depthwise.py``'s row loops:
* column stride 2: forward 0.18-0.31 on 8x8 inputs, 0.26-0.58 on 16x16,
  0.27-0.44 on 14x14, 0.3-0.64 on 28x28, 0.39-0.7 on 32x32, 0.49-0.7 on
  112x112; backward 0.38-0.85, 0.37-0.96, 0.34-0.66, 0.4-0.69, 0.41-0.49,
  0.6-0.71.
* any other column stride or a dilation (the generic loops, offsets
  q*SW + v*DW; measured at stride 2 before the loops above existed):
  forward 0.26-0.44 on 8x8 inputs (4x4 outputs), 0.43-0.52 on 14x14,
  0.39-1.08 on 28x28 (14 wide), but 1.1-1.6 on 32x32 (16 wide: two whole
  vectors per row for the row loops) and 1.4-1.7 on 112x112; backward
  0.48-0.56, 0.44-0.74, 0.82-0.92, then 0.85-1.38 on 30x30 (15 wide) and
  0.97-1.43 on 112x112; at stride 3, 0.3-0.8 up to 12 wide.
Hence ``fused``: column stride 2 without dilation at any width, otherwise up
to FUSED_MAX_WIDTH output columns.
"""
from __future__ import annotations

import numpy as np

from ._jit import njit
from ._pool import split_kernel
from .windows import copy_inside, copy_into_padded, padded_size, start_gradient_plane

FUSED_MAX_WIDTH = 14


def fused(kernel_hw, out_width, stride_w, dilation_w):
    """Whether these loops should compute a depthwise layer (see the module)."""
    if tuple(kernel_hw) != (3, 3):
        return False
    return (stride_w == 2 and dilation_w == 1) or out_width <= FUSED_MAX_WIDTH


@njit(inline="always")
def _tap_rows(plane, oh, ow, sh, sw, dh, dw):
    """The three row views of a padded plane (see the module), cut to the
    columns the output's windows reach."""
    rows = (oh - 1) * sh + 1
    cols = (ow - 1) * sw + 2 * dw + 1
    return (plane[0:rows:sh, 0:cols], plane[dh:dh + rows:sh, 0:cols],
            plane[2 * dh:2 * dh + rows:sh, 0:cols])


@njit(inline="always")
def _taps(w, ch):
    """Channel ch's nine 3x3 weights as scalars, row by row."""
    t = w[ch, 0]
    return (t[0, 0], t[0, 1], t[0, 2], t[1, 0], t[1, 1], t[1, 2], t[2, 0], t[2, 1], t[2, 2])


@njit
def _depthwise3_forward_range(x, w, bias, sh, sw, ph, pw, dh, dw, y, lo, hi):
    """``depthwise._depthwise_forward_range`` for 3x3 kernels."""
    n, c, h, wd = x.shape
    oh, ow = y.shape[2], y.shape[3]
    hp, wp = padded_size(h, wd, 3, 3, sh, sw, ph, pw, dh, dw, oh, ow)
    img = np.zeros((hp, wp), dtype=x.dtype)   # borders stay 0
    r0, r1, r2 = _tap_rows(img, oh, ow, sh, sw, dh, dw)
    for nc in range(lo, hi):
        b = nc // c
        ch = nc - b * c
        copy_into_padded(x[b, ch], img, ph, pw)
        w00, w01, w02, w10, w11, w12, w20, w21, w22 = _taps(w, ch)
        bb = bias[ch]
        out = y[b, ch]
        if sw == 2 and dw == 1:   # constant offsets: the loop vectorises
            for i in range(oh):
                a0, a1, a2 = r0[i], r1[i], r2[i]
                o = out[i]
                for q in range(ow):
                    o[q] = (bb + w00 * a0[2 * q] + w01 * a0[2 * q + 1] + w02 * a0[2 * q + 2]
                            + w10 * a1[2 * q] + w11 * a1[2 * q + 1] + w12 * a1[2 * q + 2]
                            + w20 * a2[2 * q] + w21 * a2[2 * q + 1] + w22 * a2[2 * q + 2])
            continue
        for i in range(oh):
            for q in range(ow):
                j = q * sw
                j1, j2 = j + dw, j + 2 * dw
                out[i, q] = (bb + w00 * r0[i, j] + w01 * r0[i, j1] + w02 * r0[i, j2]
                             + w10 * r1[i, j] + w11 * r1[i, j1] + w12 * r1[i, j2]
                             + w20 * r2[i, j] + w21 * r2[i, j1] + w22 * r2[i, j2])


# Not inlined, so that the reassociation flag stays with this function.
@njit(fastmath={"reassoc", "contract"})
def _dots_stride2(d, r0, r1, r2, part):
    """part[u, v] = sum_{i,q} d[i, q] * r_u[i, 2q + v]: one plane's weight
    gradient at column stride 2, summed in the data's type."""
    oh, ow = d.shape
    zero = d.dtype.type(0)
    s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = zero
    for i in range(oh):
        g, a0, a1, a2 = d[i], r0[i], r1[i], r2[i]
        for q in range(ow):
            gq = g[q]
            s00 += gq * a0[2 * q]
            s01 += gq * a0[2 * q + 1]
            s02 += gq * a0[2 * q + 2]
            s10 += gq * a1[2 * q]
            s11 += gq * a1[2 * q + 1]
            s12 += gq * a1[2 * q + 2]
            s20 += gq * a2[2 * q]
            s21 += gq * a2[2 * q + 1]
            s22 += gq * a2[2 * q + 2]
    part[0, 0], part[0, 1], part[0, 2] = s00, s01, s02
    part[1, 0], part[1, 1], part[1, 2] = s10, s11, s12
    part[2, 0], part[2, 1], part[2, 2] = s20, s21, s22


@njit(inline="always")
def _gather_stride2(gz, grow, a, b, c):
    """grow[2m] += a*g[m] + c*g[m-1] and grow[2m+1] += b*g[m] for m = 0 ... OW-1,
    then grow[2*OW] += c*g[OW-1]: one kernel row's share of a padded gradient
    row at column stride 2. ``gz`` is g with a 0 in front (g[-1] = 0)."""
    m = gz.shape[0] - 1
    cur, prev = gz[1:], gz[:m]
    for q in range(m):
        grow[2 * q] += a * cur[q] + c * prev[q]
        grow[2 * q + 1] += b * cur[q]
    grow[2 * m] += c * cur[m - 1]


@njit
def _depthwise3_backward_range(x, w, dy, sh, sw, ph, pw, dh, dw, dx, dw_planes, lo, hi):
    """``depthwise._depthwise_backward_range`` for 3x3 kernels."""
    h, wd = x.shape[2], x.shape[3]
    oh, ow = dy.shape[2], dy.shape[3]
    hp, wp = padded_size(h, wd, 3, 3, sh, sw, ph, pw, dh, dw, oh, ow)
    img = np.zeros((hp, wp), dtype=x.dtype)   # borders stay 0
    grad = np.empty((hp, wp), dtype=dx.dtype)
    gz = np.zeros(ow + 1, dtype=dy.dtype)  # [0, dy row]; [0] stays 0
    r0, r1, r2 = _tap_rows(img, oh, ow, sh, sw, dh, dw)
    g0, g1, g2 = _tap_rows(grad, oh, ow, sh, sw, dh, dw)
    for nc in range(lo, hi):
        b, ch = start_gradient_plane(x, nc, img, grad, ph, pw)
        w00, w01, w02, w10, w11, w12, w20, w21, w22 = _taps(w, ch)
        d = dy[b, ch]
        part = dw_planes[b, ch]
        if sw == 2 and dw == 1:
            for i in range(oh):
                gi = d[i]
                for q in range(ow):
                    gz[q + 1] = gi[q]
                _gather_stride2(gz, g0[i], w00, w01, w02)
                _gather_stride2(gz, g1[i], w10, w11, w12)
                _gather_stride2(gz, g2[i], w20, w21, w22)
            _dots_stride2(d, r0, r1, r2, part)
            copy_inside(grad, ph, pw, dx[b, ch])
            continue
        s00 = s01 = s02 = s10 = s11 = s12 = s20 = s21 = s22 = 0.0
        for i in range(oh):
            for q in range(ow):
                gq = d[i, q]
                j = q * sw
                j1, j2 = j + dw, j + 2 * dw
                s00 += gq * r0[i, j]
                s01 += gq * r0[i, j1]
                s02 += gq * r0[i, j2]
                s10 += gq * r1[i, j]
                s11 += gq * r1[i, j1]
                s12 += gq * r1[i, j2]
                s20 += gq * r2[i, j]
                s21 += gq * r2[i, j1]
                s22 += gq * r2[i, j2]
                g0[i, j] += w00 * gq
                g0[i, j1] += w01 * gq
                g0[i, j2] += w02 * gq
                g1[i, j] += w10 * gq
                g1[i, j1] += w11 * gq
                g1[i, j2] += w12 * gq
                g2[i, j] += w20 * gq
                g2[i, j1] += w21 * gq
                g2[i, j2] += w22 * gq
        part[0, 0], part[0, 1], part[0, 2] = s00, s01, s02
        part[1, 0], part[1, 1], part[1, 2] = s10, s11, s12
        part[2, 0], part[2, 1], part[2, 2] = s20, s21, s22
        copy_inside(grad, ph, pw, dx[b, ch])


# the entry points: the (n, c) planes split over the threads, or all on this one
depthwise3_forward_numba, depthwise3_forward_serial = split_kernel(
    _depthwise3_forward_range, lambda x, *rest: x.shape[0] * x.shape[1])
depthwise3_backward_numba, depthwise3_backward_serial = split_kernel(
    _depthwise3_backward_range, lambda x, *rest: x.shape[0] * x.shape[1])
