"""Transposed convolution as one stride-1 convolution and a pixel shuffle.

Notation as in ``conv_transpose.py``, per spatial dimension: stride S,
kernel K, padding P, input size H, output size OH. When S divides K (and
dilation is 1), write J = K / S. Output row Y receives input row ih through
kernel tap u exactly when Y = ih*S - P + u. Split Y + P = S*t + a with phase
a = (Y + P) mod S: then u = a + S*j for j = 0 ... J-1 and ih = t - j, so

    y[n, o, Y] = sum_{c, j} W[c, o, a + S*j] x[n, c, t - j]

Every phase a is a stride-1 correlation of x with a J-tap kernel, over the
same J-row windows (rows t-J+1 ... t) for every phase. So all S*S phases
(two dimensions) come from one convolution of x with the rearranged weight

    W'[(a_h, a_w, o), c, J-1-j_h, J-1-j_w] = W[c, o, a_h + S*j_h, a_w + S*j_w]

(S*S*O output channels, J x J kernel; per group: G blocks of S*S*Og),
followed by a pixel shuffle: y[:, o, Y] = z[:, (a, o), t] over the window
grid t = tmin ... tmax, tmin = P div S. The rearrangement is a permutation
of W's entries (S divides K), so the backward pass is the convolution's
(``conv.py``) with dz the un-shuffled dy (zero where no output row lands)
and dW the inverse permutation of dW'.

Against ``conv_transpose.py``'s col2im scatter, the columns are gathered
(im2col, no additions) from the small side, x, and the backward pass adds
up J x J windows at stride 1 instead of gathering K x K windows of dy at
stride S. The price is the window grid's edge: T = tmax - tmin + 1 windows
per dimension against H (for K=4, S=2, P=1: 17 against 16, 13% more
products at 16x16, less on larger inputs). Measured forward+backward on two
threads, interleaved with the col2im path, 5 rounds (float32): convT_up
(32x64x16x16 -> 32, K=4, S=2, P=1) 19.1-19.9 against 21.2-22.0 ms;
8x64x32x32 with the same kernel 17.4-19.2 against 18.3-20.8; K=2, S=2
(a 1x1 convolution, no im2col at all) 5.6-6.9 against 6.5-7.3. Stride 1 is
left to col2im (it adds at stride 1 already), and so are kernels the stride
does not divide: zero taps in W' would cost products (K=3, S=2: 16 taps
for 9). The columns come from x, so with many input channels for few output
channels they are larger than col2im's (256 -> 3 channels: 27 times); a
cost model (``cheaper``) sends those layers to col2im.

When J = 2 in both dimensions (K = 2S: kernel 4 at stride 2) and there are no
groups, the stride-1 convolution is 2x2 and Winograd's F(3x3, 2x2)
(``winograd.py``) computes it with 2.25x fewer multiplies; its output
transform writes each tile straight into y's phases (the bias added on the
way) and the backward pass gathers dz from dy tile by tile, so z is never
formed. It is taken ahead of the cost model for layers wide enough
(``winograd_pays``): 1.1-1.25x faster than either form above (convT_up:
1.15x).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import winograd
from ._columns import (ALGORITHM, PER_SAMPLE_CHUNK_BYTES, Geometry, bias_grad, chunk_size,
                       columns_are_input, from_columns, im2col_budget, to_columns,
                       weight_product)
from ._scratch import columns_buffer, samples, transient
from ._threads import add_shares, batch_pieces


class _Axis(NamedTuple):
    """One spatial dimension's plan."""
    stride: int
    taps: int            # J = K / S
    pad: int             # the stride-1 convolution's padding before: J-1-tmin
    windows: int         # T
    phases: tuple        # per phase a: (first output index, first window, count)


def _axis(size_in, size_out, kernel, stride, pad):
    taps = kernel // stride
    tmin = pad // stride
    tmax = (size_out - 1 + pad) // stride
    phases = []
    for a in range(stride):
        first = (a - pad) % stride
        count = max(0, (size_out - first + stride - 1) // stride)
        phases.append((first, (first + pad) // stride - tmin, count))
    return _Axis(stride, taps, taps - 1 - tmin, tmax - tmin + 1, tuple(phases))


def applicable(geo, out_hw):
    """True when this module can compute the layer: S divides K in both
    dimensions, dilation is 1, some stride is above 1 (stride 1 gains nothing:
    col2im is then at stride 1 too) and the stride-1 convolution needs no
    negative padding (P < K). Whether it should is ``cheaper``'s call."""
    if geo.dilation != (1, 1) or max(geo.stride) < 2:
        return False
    return all(k % s == 0 and p < k for k, s, p in zip(geo.kernel, geo.stride, geo.pad_before))


def _plan(geo, in_hw, out_hw):
    return tuple(_axis(i, o, k, s, p) for i, o, k, s, p in
                 zip(in_hw, out_hw, geo.kernel, geo.stride, geo.pad_before))


# Which path is faster: the cost of a layer per sample is its
# multiply-adds plus FLOPS_PER_VALUE times the values its memory-bound phases
# write and read (one core: ~65 GFLOP/s in the products against ~5 GB/s in
# the strided copies of im2col, col2im and the shuffle, so ~13 flops per byte).
#   col2im path:  6*H*W*C*Og*K^2 + F * 5*O*K^2*H*W          (columns written by the
#                 forward product, read by col2im, rebuilt from dy, read twice)
#   sub-pixel:    6*T^2*C*Og*K^2 + F * (5*C*J^2*T^2 + 4*S^2*O*T^2)   (columns from x,
#                 and z; no column term when the columns are x itself, J = 1)
# Calibrated on 19 layers (forward+backward, two threads, interleaved; the
# model's ratio sub-pixel/col2im against the measured one): convT_up 0.99 /
# 0.90-1.00, 128 -> 64 channels 1.04 / 1.07-1.11, 128 -> 32 1.19 / 1.13-1.46,
# 256 -> 3 on 8x8 5.0 / 3.2, 32 -> 32 0.77 / 0.76-0.90, depthwise 64 channels
# 0.52 / 0.50-0.59, 3 -> 64 on 32x32 0.28 / 0.49, K=6 S=3 0.68 / 0.74, K=2 S=2
# 0.92-0.97 / 0.76-1.04; the model picked the faster path on all but one, a
# tie (80 -> 32: 1.06 / 0.90-1.07).
FLOPS_PER_VALUE = 52


def cheaper(geo, x_shape, o, out_hw):
    """True when the sub-pixel path should beat col2im for this layer (see above)."""
    _, c, h, w = x_shape
    ah, aw = _plan(geo, (h, w), out_hw)
    og = o // geo.groups
    k2 = geo.kernel[0] * geo.kernel[1]
    taps = ah.taps * aw.taps
    t2 = ah.windows * aw.windows
    col2im = 6 * h * w * c * og * k2 + FLOPS_PER_VALUE * 5 * o * k2 * h * w
    cols = 0 if taps == 1 and (ah.windows, aw.windows) == (h, w) else 5 * c * taps * t2
    sub = 6 * t2 * c * og * k2 + FLOPS_PER_VALUE * (cols + 4 * ah.stride * aw.stride * o * t2)
    return sub <= col2im


def _sizes(n, c, o, plan, itemsize):
    """The window grid (T, T), its length, the column rows C*J*J, z's rows
    S*S*O, and the samples per chunk: the im2col budget bounds the columns
    and z together (z is as large as the output)."""
    ah, aw = plan
    grid = (ah.windows, aw.windows)
    length = grid[0] * grid[1]
    k_rows = c * ah.taps * aw.taps
    z_rows = ah.stride * aw.stride * o
    return grid, length, k_rows, z_rows, chunk_size(n, k_rows + z_rows, length, itemsize,
                                                    PER_SAMPLE_CHUNK_BYTES)


def _permutation(weight_shape, groups, plan):
    """Indices into W.ravel() giving W'.ravel() (W' as in the module docstring)."""
    c, og, kh, kw = weight_shape
    ah, aw = plan
    idx = np.arange(c * og * kh * kw).reshape(groups, c // groups, og, kh, kw)
    # kernel tap a + S*j  ->  (a, j), then j reversed to the window position
    idx = idx.reshape(groups, c // groups, og, ah.taps, ah.stride, aw.taps, aw.stride)
    idx = idx[:, :, :, ::-1, :, ::-1, :]
    # -> (G, a_h, a_w, Og, Cg, jh', jw')
    return np.ascontiguousarray(idx.transpose(0, 4, 6, 2, 1, 3, 5)).ravel()


class SubpixelCache(NamedTuple):
    x: np.ndarray            # (N, C, H, W), contiguous
    w_conv: np.ndarray       # (G, S*S*Og, Cg*J*J)
    perm: np.ndarray
    weight_shape: tuple
    has_bias: bool
    conv_geo: Geometry       # the stride-1 J x J convolution
    plan: tuple
    cols: object             # (N, C*J*J, T*T) when the batch fit the budget, else None
    wino: object = None      # the WinogradCache of the stride-1 convolution, when it ran so


def output_shape(cache):
    """The layer's output shape (N, O, OH, OW) from its cache: each output
    cell lies in exactly one phase of each axis."""
    size = tuple(sum(count for _, _, count in axis.phases) for axis in cache.plan)
    return (cache.x.shape[0], cache.weight_shape[1] * cache.conv_geo.groups) + size


def _views(y, z, g, og, plan):
    """(y's view, z's view) for every phase pair: y (m, O, OH, OW), z (m, G*S*S*Og, Th, Tw)."""
    ah, aw = plan
    m = y.shape[0]
    yv = y.reshape(m, g, og, y.shape[2], y.shape[3])
    zv = z.reshape(m, g, ah.stride, aw.stride, og, ah.windows, aw.windows)
    for i, (yh, th, nh) in enumerate(ah.phases):
        for j, (yw, tw, nw) in enumerate(aw.phases):
            if nh and nw:
                yield (yv[:, :, :, yh::ah.stride, yw::aw.stride],
                       zv[:, :, i, j, :, th:th + nh, tw:tw + nw])


# Where 'auto' runs the stride-1 convolution of a J = 2 layer (kernel 4 at
# stride 2, the usual upsampling layer) by Winograd's F(3x3, 2x2) rather than
# im2col: at least WINOGRAD_MIN_IN input and WINOGRAD_MIN_OUT output channels
# and inputs of at least WINOGRAD_MIN_SIZE x WINOGRAD_MIN_SIZE. Measured
# forward+backward (two threads, interleaved, 5 rounds, kernel 4, stride 2,
# padding 1; Winograd against the faster of this module's im2col form and
# conv_transpose.py's col2im), with the shuffled transforms running channel
# by channel: 64 -> 32 channels on 16x16 (convT_up) 0.86, 0.86, 0.87; 128 ->
# 64 on 16x16 0.79, 128 -> 32 0.90, 256 -> 32 0.90; 64 -> 64 on 8x8 0.88 and
# 0.91, 256 -> 128 on 8x8 0.84; 128 -> 64 on 32x32 (16 samples) 0.99, 64 ->
# 64 on 64x64 (8 samples) 1.02. Left out: 32 -> 32 on 32x32 1.01, on 12x12
# 1.11; 32 -> 16 on 16x16 0.95; 16 -> 16 on 32x32 1.17; 64 -> 8 1.32; 256 ->
# 3 on 8x8 2.46; 3 -> 64 1.71.
WINOGRAD_MIN_IN = 64
WINOGRAD_MIN_OUT = 32
WINOGRAD_MIN_SIZE = 8


def winograd_pays(geo, x_shape, o, out_hw, itemsize):
    """Whether the layer runs as its stride-1 convolution by Winograd's F(3x3,
    2x2) (``winograd.py``) and a shuffle folded into the output tiles: J = 2,
    no groups, the transformed tiles within the im2col budget, and (under
    'auto') the sizes above. 'winograd' takes it wherever it applies."""
    if ALGORITHM[0] == "im2col" or geo.groups != 1 or not applicable(geo, out_hw):
        return False
    plan = _plan(geo, x_shape[2:], out_hw)
    if (plan[0].taps, plan[1].taps) != (2, 2):
        return False
    c = x_shape[1]
    z_rows = plan[0].stride * plan[1].stride * o
    grid = (plan[0].windows, plan[1].windows)
    if winograd.buffer_bytes(x_shape, grid, itemsize, "F(3x3,2x2)", z_rows) > im2col_budget():
        return False
    if ALGORITHM[0] == "winograd":
        return True
    return c >= WINOGRAD_MIN_IN and o >= WINOGRAD_MIN_OUT and min(x_shape[2:]) >= WINOGRAD_MIN_SIZE


def _phase_tables(plan):
    """Each axis's phases as an int64 (S, 3) array: (first output index, first window, count)."""
    return tuple(np.array(axis.phases, dtype=np.int64).reshape(axis.stride, 3) for axis in plan)


def _winograd_forward(x, w_conv, bias, conv_geo, plan, y, workspace, keep):
    """The layer with the stride-1 convolution by Winograd, each output tile
    written straight to y's phases (no z), the bias added on the way."""
    z_rows = w_conv.shape[1]
    grid = (plan[0].windows, plan[1].windows)
    weight = w_conv.reshape(z_rows, x.shape[1], conv_geo.kernel[0], conv_geo.kernel[1])
    return winograd.winograd_forward(x, weight, conv_geo.pad_before, grid, y, bias, workspace,
                                     shuffle=_phase_tables(plan), family="F(3x3,2x2)",
                                     keep=keep)


def _winograd_backward(dy, cache, workspace):
    """dx, dW' and db of the Winograd path: dz gathered from dy tile by tile.
    Every cell of y is one cell of z, so db sums z's phases of each channel
    (z's channel (a_h*Sw + a_w)*O + o, see ``kernels/winograd_k2.py``)."""
    dx = np.empty_like(cache.x)
    dw_conv, db_z = winograd.winograd_backward(dy, cache.wino, dx, workspace,
                                               shuffle=_phase_tables(cache.plan),
                                               bias=cache.has_bias)
    db = None if db_z is None else db_z.reshape(-1, dy.shape[1]).sum(axis=0)
    return dx, dw_conv, db


def subpixel_forward(x, weight, bias, geo, out_hw, workspace=None, keep_columns=True):
    """``conv_transpose2d_forward`` for an ``applicable`` geometry; returns (y, cache)."""
    n, c, h, w = x.shape
    g = geo.groups
    og = weight.shape[1]
    o = og * g
    plan = _plan(geo, (h, w), out_hw)
    ah, aw = plan
    grid, length, k_rows, z_rows, chunk = _sizes(n, c, o, plan, x.itemsize)
    perm = _permutation(weight.shape, g, plan)
    w_conv = weight.ravel()[perm].reshape(g, z_rows // g, -1)
    conv_geo = Geometry((ah.taps, aw.taps), (1, 1), (ah.pad, aw.pad), (0, 0), (1, 1), g)
    y = np.empty((n, o) + tuple(out_hw), dtype=x.dtype)
    if winograd_pays(geo, x.shape, o, out_hw, x.itemsize):
        wino = _winograd_forward(x, w_conv, bias, conv_geo, plan, y, workspace, keep_columns)
        return y, SubpixelCache(x, w_conv, perm, weight.shape, bias is not None, conv_geo, plan,
                                None, wino)
    keep = chunk >= n and keep_columns   # the whole batch's columns, kept for the backward
    buf = columns_buffer(workspace, "cols", (min(chunk, n) * k_rows * length,), x.dtype, keep)
    zbuf = transient(workspace, "shuffle", (min(chunk, n) * z_rows * length,), x.dtype)
    add_bias = None if bias is None else bias.reshape(1, o, 1, 1)
    for s in range(0, n, chunk):

        def piece(lo, hi, s=s):   # samples s+lo ... s+hi-1, on one thread
            a, b = s + lo, s + hi
            cols = to_columns(x[a:b], conv_geo, grid, samples(buf, lo, hi, k_rows * length)
                              .reshape(b - a, k_rows, length), serial=True)
            cols = cols.reshape(b - a, g, -1, length)
            z = samples(zbuf, lo, hi, z_rows * length).reshape(b - a, g, -1, length)
            for gi in range(g):
                np.matmul(w_conv[gi], cols[:, gi], out=z[:, gi])
            out = y[a:b]
            for yv, zv in _views(out, z, g, og, plan):
                yv[...] = zv
            if add_bias is not None:
                out += add_bias

        batch_pieces(min(chunk, n - s), piece)
    kept = None
    is_x = columns_are_input(conv_geo, x.shape, grid)
    if chunk >= n and (keep or is_x):   # the whole batch's columns (x itself when J = 1)
        kept = (x.reshape(n, k_rows, length) if is_x
                else buf[:n * k_rows * length].reshape(n, k_rows, length))
    return y, SubpixelCache(x, w_conv, perm, weight.shape, bias is not None, conv_geo, plan,
                            kept)


def subpixel_backward(dy, cache, workspace=None):
    """Return ``(dx, dweight, dbias)``."""
    x, w_conv, perm, weight_shape, has_bias, conv_geo, plan, kept, wino = cache
    dy = np.ascontiguousarray(dy)
    if wino is not None:
        dx, dw_conv, db = _winograd_backward(dy, cache, workspace)
        dw = np.empty(int(np.prod(weight_shape)), dtype=x.dtype)
        dw[perm] = dw_conv.ravel()
        return dx, dw.reshape(weight_shape), db
    n, c, h, w = x.shape
    g = conv_geo.groups
    og = weight_shape[1]
    grid, length, k_rows, z_rows, chunk = _sizes(n, c, og * g, plan, x.itemsize)
    if kept is not None:   # the forward pass kept the whole batch's columns
        chunk = max(n, 1)
    dx = np.empty_like(x)
    if kept is None:
        buf = transient(workspace, "cols", (min(chunk, n) * k_rows * length,), x.dtype)
    dbuf = transient(workspace, "dcols", (min(chunk, n) * k_rows * length,), x.dtype)
    zbuf = transient(workspace, "shuffle", (min(chunk, n) * z_rows * length,), x.dtype)
    dw_conv = None
    for s in range(0, n, chunk):

        def piece(lo, hi, s=s):   # samples s+lo ... s+hi-1, on one thread
            a, b = s + lo, s + hi
            if kept is not None:
                cols = kept[a:b]
            else:
                cols = to_columns(x[a:b], conv_geo, grid, samples(buf, lo, hi, k_rows * length)
                                  .reshape(b - a, k_rows, length), serial=True)
            cols = cols.reshape(b - a, g, -1, length)
            dz = samples(zbuf, lo, hi, z_rows * length)
            dz[...] = 0
            dz = dz.reshape(b - a, g, -1, length)
            for yv, zv in _views(dy[a:b], dz, g, og, plan):
                zv[...] = yv
            dcols = samples(dbuf, lo, hi, k_rows * length).reshape(b - a, g, -1, length)
            dw_part = np.empty_like(w_conv)
            for gi in range(g):
                d = dz[:, gi]                                           # (m, S*S*Og, T*T)
                dw_part[gi] = weight_product(d, cols[:, gi]).sum(axis=0)
                np.matmul(w_conv[gi].T, d, out=dcols[:, gi])
            from_columns(dcols.reshape(b - a, k_rows, length), (b - a, c, h, w), conv_geo, grid,
                         out=dx[a:b], serial=True)
            return dw_part

        dw_conv = add_shares(dw_conv, batch_pieces(min(chunk, n - s), piece))
    if dw_conv is None:   # an empty batch
        dw_conv = np.zeros_like(w_conv)
    dw = np.empty(int(np.prod(weight_shape)), dtype=x.dtype)
    dw[perm] = dw_conv.ravel()
    db = bias_grad(dy) if has_bias else None
    return dx, dw.reshape(weight_shape), db
