"""Convolution and transposed convolution tap by tap, for geometries whose
padded planes would dwarf the arrays: no padded plane, no column matrix.

Notation as in ``conv.py``, one spatial dimension (the two are independent).
A convolution's output row i reads input row r = i*S - P + u*D through
kernel tap u. For each tap, the output rows whose read lands in the image
form one run, i0 <= i < i1, and the rows they read a run at stride S from
r0 = i0*S - P + u*D:

    i0 = max(0, ceil((P - u*D) / S)),  i1 = min(OH, floor((H - 1 + P - u*D) / S) + 1)

(empty: the tap reads only padding). So, per tap (u, v) and group g, with x_uv
the strided view x[:, g, :, r0::S, q0::S] over those runs and y_uv the block
y[:, g, :, i0:i1, j0:j1]:

    Conv2d           y_uv  += W_uv @ x_uv
                     dx_uv += W_uv^T @ dy_uv,   dW_uv += sum_n dy_uv @ x_uv^T
    ConvTranspose2d  the same runs with x and y swapped (x is the convolution's
                     output side, y its input side; ``conv_transpose.py``):
                     y_uv  += W_uv^T @ x_uv
                     dx_uv += W_uv @ dy_uv,     dW_uv += sum_n x_uv @ dy_uv^T

with W_uv = W[g, :, :, u, v] (the weight's group g),
and db sums dy over all but the channels. Nothing but x, y and one tap's
block at a time is held, and only the products that touch the image are
formed.

Why: the other paths build zero-padded planes (im2col, the direct loops,
Winograd) or the whole uncropped output of a transposed convolution
(col2im), whose size grows with the padding, the stride and the dilation,
not with the arrays. A 3x3 layer with stride and padding 30000 on an 8x8
image (a 3x3 output) needed a 60003x60003 plane per thread: it ran out of
memory or was killed by the system, and with padding 10**9 numpy refused
the size; PyTorch computes those layers. ``degenerate`` sends a layer here
when its plane would pass ``PLANE_RATIO`` times its input and output planes
together and ``PLANE_FLOOR`` values; no layer with padding up to its
kernel's reach comes near that. NumPy only: there is no compiled kernel
here to read or write out of bounds.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._columns import bias_grad

PLANE_RATIO = 16
PLANE_FLOOR = 1 << 16


class TapsCache(NamedTuple):
    x: np.ndarray
    weight: np.ndarray
    has_bias: bool
    groups: int
    runs: tuple            # per tap row and column: (i0, i1, r0) or None (see tap_runs)
    stride: tuple
    out_shape: tuple
    transposed: bool


def degenerate(plane, in_size, out_size):
    """Whether a padded plane of ``plane`` (rows, cols) is out of proportion to
    planes of ``in_size`` and ``out_size`` (see the module)."""
    values = plane[0] * plane[1]
    arrays = in_size[0] * in_size[1] + out_size[0] * out_size[1]
    return values > PLANE_FLOOR and values > PLANE_RATIO * arrays


def conv_plane(geo, size):
    """The padded plane (rows, cols) a convolution of ``geo`` on ``size`` builds
    (``kernels/windows.py: padded_size``)."""
    return tuple(max(p + n, (o - 1) * s + d * (k - 1) + 1)
                 for n, o, k, s, p, d in zip(size, geo.out_size(*size), geo.kernel, geo.stride,
                                             geo.pad_before, geo.dilation))


def conv_runs(geo, size):
    """``tap_runs`` of a convolution of ``geo`` on ``size``, rows then columns."""
    return tuple(tap_runs(n, o, k, s, p, d)
                 for n, o, k, s, p, d in zip(size, geo.out_size(*size), geo.kernel, geo.stride,
                                             geo.pad_before, geo.dilation))


def tap_runs(n_in, n_out, kernel, stride, pad_before, dilation):
    """Per tap u < kernel: (i0, i1, r0), the convolution's output rows i0 ... i1-1
    reading input rows r0, r0 + stride, ... (all inside the n_in rows), or None
    when the tap reads only padding; n_out output rows."""
    runs = []
    for u in range(kernel):
        off = pad_before - u * dilation            # output i reads input i*stride - off
        first = max(0, -(-off // stride))
        last = min(n_out - 1, (n_in - 1 + off) // stride)
        runs.append((first, last + 1, first * stride - off) if first <= last else None)
    return tuple(runs)


def _strided(run, stride):
    """The input rows a run reads, as a slice."""
    i0, i1, r0 = run
    return slice(r0, r0 + (i1 - i0 - 1) * stride + 1, stride)


def _blocks(cache):
    """(u, v, output-side slices, input-side strided slices) of every live tap."""
    (rows, cols), (sh, sw) = cache.runs, cache.stride
    for u, ru in enumerate(rows):
        for v, cv in enumerate(cols):
            if ru is not None and cv is not None:
                yield (u, v, (slice(ru[0], ru[1]), slice(cv[0], cv[1])),
                       (_strided(ru, sh), _strided(cv, sw)))


def _groups(a, g):
    """(N, G*C, H, W) -> (N, G, C, H, W) view."""
    return a.reshape(a.shape[0], g, a.shape[1] // g, a.shape[2], a.shape[3])


def _flat(a):
    """(N, G, C, I, J) block -> (N, G, C, I*J), a copy when a is strided."""
    return a.reshape(a.shape[:3] + (a.shape[3] * a.shape[4],))   # (no -1: N may be 0)


def taps_forward(x, weight, bias, groups, runs, stride, out_size, transposed):
    """y and its TapsCache. Conv2d: weight (O, C/G, KH, KW), runs from the
    input's rows to the output's; ConvTranspose2d (``transposed``): weight
    (C, O/G, KH, KW), runs from y's rows (the convolution's input side) to
    x's."""
    n = x.shape[0]
    o = weight.shape[1] * groups if transposed else weight.shape[0]
    y = np.zeros((n, o) + tuple(out_size), dtype=x.dtype)
    cache = TapsCache(x, weight, bias is not None, groups, runs, stride, y.shape, transposed)
    xg, yg = _groups(x, groups), _groups(y, groups)
    wg = weight.reshape((groups, -1) + weight.shape[1:])     # (G, rows, cols, KH, KW)
    for u, v, near, far in _blocks(cache):
        w_uv = wg[:, :, :, u, v]
        if transposed:       # x's block near, y's rows far
            block = yg[:, :, :, far[0], far[1]]
            block += (w_uv.transpose(0, 2, 1) @ _flat(xg[:, :, :, near[0], near[1]])
                      ).reshape(block.shape)
        else:
            block = yg[:, :, :, near[0], near[1]]
            block += (w_uv @ _flat(xg[:, :, :, far[0], far[1]])).reshape(block.shape)
    if bias is not None:
        y += bias.reshape(1, o, 1, 1)
    return y, cache


def taps_backward(dy, cache):
    """``(dx, dweight, dbias)`` (``dbias`` None without bias); dy checked by the caller."""
    x, weight, has_bias, groups = cache.x, cache.weight, cache.has_bias, cache.groups
    dx = np.zeros_like(x)
    dw = np.zeros_like(weight)
    xg, dxg, dyg = _groups(x, groups), _groups(dx, groups), _groups(dy, groups)
    wg = weight.reshape((groups, -1) + weight.shape[1:])
    dwg = dw.reshape(wg.shape)
    for u, v, near, far in _blocks(cache):
        w_uv = wg[:, :, :, u, v]
        if cache.transposed:     # x's block near, dy's rows far
            d = _flat(dyg[:, :, :, far[0], far[1]])                    # (N, G, Og, Q)
            xs = _flat(xg[:, :, :, near[0], near[1]])                  # (N, G, Cg, Q)
            block = dxg[:, :, :, near[0], near[1]]
            block += (w_uv @ d).reshape(block.shape)
            dwg[:, :, :, u, v] += (xs @ d.transpose(0, 1, 3, 2)).sum(axis=0)
        else:
            d = _flat(dyg[:, :, :, near[0], near[1]])                  # (N, G, Og, Q)
            xs = _flat(xg[:, :, :, far[0], far[1]])                    # (N, G, Cg, Q)
            block = dxg[:, :, :, far[0], far[1]]
            block += (w_uv.transpose(0, 2, 1) @ d).reshape(block.shape)
            dwg[:, :, :, u, v] += (d @ xs.transpose(0, 1, 3, 2)).sum(axis=0)
    return dx, dw, (bias_grad(dy) if has_bias else None)
