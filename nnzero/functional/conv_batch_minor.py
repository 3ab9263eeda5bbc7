"""Convolution on small output planes: batch-minor columns, one product per group.

The same im2col convolution as ``conv.py`` (formulas there), with the column
matrix laid out batch-minor, (C*KH*KW, m, L) for a thread's m samples
(``kmajor`` in ``kernels/im2col.py``), so that each group's product runs once
over all of them:

    Y_g (Og, m*L)   = W_g (Og, K) @ [cols_g[0] ... cols_g[m-1]]          (K, m*L)
    dW_g (Og, K)    = dY_g (Og, m*L) @ [cols_g[0] ... cols_g[m-1]]^T
    dcols_g (K, m*L) = W_g^T @ dY_g;  dx = col2im(dcols)

where Y and dY hold each sample's (Og, L) block side by side. ``conv.py``'s
layout instead runs one product per sample, (Og, K) @ (K, L), whose result
is already NCHW. On small planes (L = OH*OW of 16 or 64: the last stages of a
ResNet on 32x32 images) those products are L columns wide, and each one
streams the whole weight matrix through the cache again for L columns of
work; the weight gradient's products write an (m, Og, K) stack that is then
summed. Here the products are m*L wide, and the price is a reorder of y and
dy (the small side: Og*L per sample against K*L for the columns), as
transposed convolution already does (``conv_transpose.py``).

``conv.py`` sends a convolution here when ``applicable`` says so (and the
algorithm is not ``'im2col'``, which keeps one product per sample). Without
groups the bias rides in the products as in ``conv.py``: a row of ones under
the columns (K+1 rows) and the bias as one more column of W, so that the
forward product adds it and the last column of the weight gradient's product
is its gradient (no pass over dy of its own: conv_strided 0.95-0.97 of its time;
where the batch is small against the weight it does not pay, see
BIAS_RIDES_FROM). Grouped and pointwise layers add the bias while y is
reordered and sum it from dy. Threads and the memory budget work as
in ``conv.py``: the batch is split over the threads (``_threads.py``), each
thread's columns a contiguous block of the buffer, and a batch whose columns
would pass the budget runs in chunks, the backward pass rebuilding them.
When the whole batch fit, the backward pass reuses the forward's columns and
the forward's split of the batch, which the cache keeps.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._columns import (Geometry, bias_grad, channels_first, chunk_size, columns_are_input,
                       from_columns, to_columns, weight_product)
from ._scratch import columns_buffer, samples, transient
from ._threads import add_shares, piece_bounds, run_pieces

# Which convolutions take the batch-minor layout: those with output planes of
# at most MAX_LENGTH cells (grouped ones too, unless the direct loops of
# ``direct.py`` take them first). Measured forward+backward against one
# product per sample (interleaved, 5 rounds, 32 samples unless said), with the
# batch-minor kernels of ``kernels/im2col.py`` as they are now: 3x3 kernels,
# L = 16: 256 -> 512 channels at stride 2 (128 samples) 0.41, 512 -> 512 at
# stride 1 0.40; L = 49 (512 channels) 0.61; L = 64: 0.75 (256 channels,
# stride 1) and 0.85 (128 -> 256, stride 2); L = 100 and 144 (128 channels)
# 0.90 and 1.02; L = 196 0.85 (256 channels) and 0.90 (128 -> 256 at stride
# 2); L = 256 (conv_strided's shape) 0.96 and 1.05 in two runs; L = 400 (32 ->
# 64 at stride 2) 0.99-1.04; 3 -> 32 channels at L = 1024 1.47. 1x1 kernels:
# 512 -> 2048 at L = 16 0.45, 256 -> 512 at L = 64 0.93, 128 -> 256 at L =
# 256 1.20. Grouped, 3x3 at stride 2: 4 channels per group 0.63 at L = 16
# and 0.95 at L = 64, 8 channels 0.80 at L = 64 and 0.93 at L = 196, 16
# channels 0.62-0.65 at L = 16 and 0.85 at L = 49, 8 channels at L = 256
# 0.98; a channel multiplier (128 -> 256 in 128 groups) 0.68 at L = 64; at
# stride 1, 16 and 32 channels per group at L = 16 0.73-0.75. (With the
# kernels visiting sample by sample, before the block loops, grouped layers
# had measured 1.06-1.89.)
MAX_LENGTH = 196
# On the Intel machine (2026-11-29; the measurements above are the AMD
# machine's), 16x16 outputs gain too when the layer is not small: ungrouped,
# kernels larger than 1x1, forward+backward against one product per sample,
# 3 rounds each in separate processes, MAX_LENGTH set to 256: 3x3 at stride 2
# from 32x32, 8 samples: 64 -> 128 0.97, 128 -> 256 0.91, 256 -> 512 0.91;
# 32 samples: 32 -> 64 0.96, 64 -> 64 0.91, 64 -> 128 (conv_strided) 0.97 and
# 0.92-0.98 in four more pairs, 128 -> 256 0.94, 256 -> 512 0.87; 5x5 on
# 16x16, 8 samples: 64 -> 64 0.96, 64 -> 128 0.89, 128 -> 256 0.86, 256 -> 512
# 0.85; 32 samples 0.85-0.94 for 32 -> 64 up to 256 -> 512. Left out: smaller
# layers (8 samples, 3x3 stride 2: 32 -> 64 1.16, 64 -> 64 1.05; 5x5 32 -> 64
# 0.98: under 2^27 multiply-adds), 1x1 kernels at stride 2 (0.79-1.08, 1.00
# on average), pointwise ones (1.20 on conv_1x1's shape, 1.61 at 32x32) and
# larger planes (3x3 stride 2 to 20x20 and 32x32: 1.02-1.11; 5x5 on 32x32
# 0.98).
WIDER_LENGTH = 256
WIDER_MIN_MACS = 1 << 27
# Ungrouped pointwise layers (1x1, stride 1: the columns are x) on planes of
# POINTWISE_MIN_LENGTH to MAX_LENGTH cells take it only when their weight
# matrix has more than POINTWISE_WEIGHT_PER_CELL entries per output cell
# (O*C > 1024*L). One
# product per sample streams the whole weight matrix for L columns; when the
# weight is small against L, reordering x, y and dy costs more than that.
# Measured on the Intel machine (2026-11-29, 32 samples unless said, one
# product per sample against batch-minor, 3 rounds in separate processes):
# O*C/L at most 1024 went faster per sample, 0.78-0.94 of the time (64 ->
# 256, 128 -> 128 and 256 -> 64 on 4x4 to 14x14; 96 -> 576 on 8x8 to 14x14,
# 256 -> 512 on 14x14, 0.78-0.91); above it batch-minor kept its gain (per
# sample 1.04-1.47x: 96 -> 576 on 4x4 and 7x7, 256 -> 512 on 4x4 to 10x10;
# 512 -> 2048 on 7x7, 16 samples, 1.95x; 1024 -> 256 on 14x14 1.03; 256 ->
# 1024 on 14x14, O*C/L = 1337, 0.98: even).
# Below 4x4 planes (none measured) pointwise layers keep batch-minor: one
# product per sample there is a matrix-vector product or near it.
POINTWISE_WEIGHT_PER_CELL = 1024
POINTWISE_MIN_LENGTH = 16


# The bias rides in the products (see the module) when the batch has at
# least BIAS_RIDES_FROM output cells per weight column (N*L >= 4*K): [W | b]
# is a copy of the weight made every call, dW a copy out of the (O, K+1)
# product, and both cost more than the pass over dy they save when the
# weight is large against dy. Measured forward+backward, riding / adding the
# bias while y is reordered and summing dy on the calling thread, 3 rounds
# in separate processes (2026-11-30): conv_strided (N*L/K = 14) 0.95-0.97,
# 128 -> 256 channels on 8x8 (1.8) 0.98, 64 -> 128 on 8x8 (3.6) 1.00,
# 128 -> 256 at stride 2 to 8x8 (1.8) 1.03, 256 -> 512 at stride 2 to 8x8
# (0.9) 1.01-1.05.
BIAS_RIDES_FROM = 4


def _bias_rides(has_bias, groups, pointwise, cells, rows):
    """Whether the bias rides in the products: ungrouped, not pointwise, and
    ``cells`` = N*L at least BIAS_RIDES_FROM times the ``rows`` K."""
    return has_bias and groups == 1 and not pointwise and cells >= BIAS_RIDES_FROM * rows


def _with_bias(w_g, bias):
    """[W | b]: (1, O, K+1), the ungrouped weight matrix with the bias column."""
    return np.concatenate([w_g[0], bias.reshape(-1, 1)], axis=1)[None]


class BatchMinorCache(NamedTuple):
    x: np.ndarray          # (N, C, H, W), contiguous
    weight: np.ndarray
    has_bias: bool
    geo: Geometry
    out_size: tuple
    cols: object           # the flat column buffer when the whole batch fit the budget, else None
    bounds: object         # the forward's split of the batch over the threads (with ``cols``)


def applicable(out_size, geo, x_shape, out_channels):
    """Whether a convolution should use these products (see MAX_LENGTH,
    WIDER_LENGTH and POINTWISE_WEIGHT_PER_CELL)."""
    length = out_size[0] * out_size[1]
    if length <= MAX_LENGTH:
        if (geo.groups == 1 and length >= POINTWISE_MIN_LENGTH
                and columns_are_input(geo, x_shape, out_size)):
            return out_channels * x_shape[1] > POINTWISE_WEIGHT_PER_CELL * length
        return True
    kh, kw = geo.kernel
    macs = x_shape[0] * x_shape[1] * out_channels * length * kh * kw
    return (length <= WIDER_LENGTH and geo.groups == 1 and kh * kw > 1
            and macs >= WIDER_MIN_MACS)


def _columns(x, geo, out_size, block, ones=False):
    """(G, K, m*L) batch-minor columns of x's m samples, written into the flat
    ``block`` (None for a pointwise convolution: then a reordered copy of x);
    with ``ones`` (ungrouped), (1, K+1, m*L): a row of ones after the K rows."""
    m, c = x.shape[:2]
    length = out_size[0] * out_size[1]
    rows = c * geo.kernel[0] * geo.kernel[1]
    if ones:
        block[rows * m * length:] = 1
        to_columns(x, geo, out_size, block[:rows * m * length].reshape(rows, m, length),
                   kmajor=True, serial=True)
        return block.reshape(1, rows + 1, m * length)
    out = None if block is None else block.reshape(rows, m, length)
    cols = to_columns(x, geo, out_size, out, kmajor=True, serial=True)
    return cols.reshape(geo.groups, rows // geo.groups, m * length)


def forward(x, weight, bias, geo, out_size, workspace=None, keep_columns=True):
    """y (N, O, OH, OW) and the cache; x contiguous, inputs validated (see layers)."""
    n, c = x.shape[:2]
    o = weight.shape[0]
    g = geo.groups
    length = out_size[0] * out_size[1]
    rows = c * geo.kernel[0] * geo.kernel[1]
    pointwise = columns_are_input(geo, x.shape, out_size)
    w_g = weight.reshape(g, o // g, -1)                    # (G, Og, K)
    rides = _bias_rides(bias is not None, g, pointwise, n * length, rows)
    if rides:
        w_g = _with_bias(w_g, bias)                        # (1, O, K+1)
    y = np.empty((n, o, length), dtype=x.dtype)
    chunk = chunk_size(n, rows + rides, length, x.itemsize)
    per = (rows + rides) * length
    keep = chunk >= n and keep_columns   # the whole batch's columns, kept for the backward
    buf = None if pointwise else columns_buffer(workspace, "cols", (min(chunk, n) * per,),
                                                x.dtype, keep)
    ybuf = transient(workspace, "y_batch_minor", (min(chunk, n) * o * length,), x.dtype)
    add = None if bias is None or rides else bias.reshape(1, o, 1)
    bounds = None
    for s in range(0, n, chunk):
        m = min(chunk, n - s)

        def piece(lo, hi, s=s):   # samples s+lo ... s+hi-1, on one thread
            block = None if buf is None else samples(buf, lo, hi, per)
            cols = _columns(x[s + lo:s + hi], geo, out_size, block, rides)
            yk = samples(ybuf, lo, hi, o * length).reshape(g, o // g, -1)
            for gi in range(g):
                np.matmul(w_g[gi], cols[gi], out=yk[gi])
            yk = yk.reshape(o, hi - lo, length).transpose(1, 0, 2)
            if add is None:
                y[s + lo:s + hi] = yk
            else:
                np.add(yk, add, out=y[s + lo:s + hi])

        bounds = piece_bounds(m)
        run_pieces(bounds, piece)
    kept = buf if keep and not pointwise else None
    cache = BatchMinorCache(x, weight, bias is not None, geo, tuple(out_size), kept,
                            bounds if kept is not None else None)
    return y.reshape((n, o) + tuple(out_size)), cache


def backward(dy, cache, workspace=None):
    """Return ``(dx, dweight, dbias)`` (``dbias`` None without bias)."""
    x, weight, has_bias, geo, out_size, kept, kept_bounds = cache
    n, c, h, w = x.shape
    o = weight.shape[0]
    g = geo.groups
    length = out_size[0] * out_size[1]
    rows = c * geo.kernel[0] * geo.kernel[1]
    pointwise = columns_are_input(geo, x.shape, out_size)
    w_g = weight.reshape(g, o // g, -1)
    rides = _bias_rides(has_bias, g, pointwise, n * length, rows)   # dW's last column is db
    dy = np.ascontiguousarray(dy)
    dy3 = dy.reshape(n, o, length)
    dx = np.empty_like(x)
    per = (rows + rides) * length
    chunk = (max(n, 1) if kept is not None
             else chunk_size(n, rows + rides, length, x.itemsize))
    buf = kept
    if kept is None and not pointwise:
        buf = transient(workspace, "cols", (min(chunk, n) * per,), x.dtype)
    dbuf = (None if pointwise
            else transient(workspace, "dcols", (min(chunk, n) * rows * length,), x.dtype))
    dw = None
    for s in range(0, n, chunk):
        m = min(chunk, n - s)

        def piece(lo, hi, s=s):   # samples s+lo ... s+hi-1, on one thread
            a, b = s + lo, s + hi
            if kept is not None:
                cols = samples(kept, lo, hi, per).reshape(g, (rows + rides) // g, -1)
            else:
                cols = _columns(x[a:b], geo, out_size,
                                None if buf is None else samples(buf, lo, hi, per), rides)
            dyk = channels_first(dy3[a:b], g)                 # (G, Og, (b-a)*L)
            if dbuf is None:
                dcols = np.empty((rows, b - a, length), dtype=x.dtype)
            else:
                dcols = samples(dbuf, lo, hi, rows * length).reshape(rows, b - a, length)
            dcols_g = dcols.reshape(g, rows // g, -1)
            dw_part = np.empty((g, o // g, rows // g + rides), dtype=w_g.dtype)
            for gi in range(g):
                weight_product(dyk[gi], cols[gi], out=dw_part[gi])
                np.matmul(w_g[gi].T, dyk[gi], out=dcols_g[gi])
            from_columns(dcols, (b - a, c, h, w), geo, out_size, kmajor=True, out=dx[a:b],
                         serial=True)
            return dw_part

        bounds = kept_bounds if kept is not None else piece_bounds(m)
        dw = add_shares(dw, run_pieces(bounds, piece))
    if dw is None:   # an empty batch
        dw = np.zeros((g, o // g, rows // g + rides), dtype=w_g.dtype)
    if rides:
        return dx, np.ascontiguousarray(dw[0, :, :rows]).reshape(weight.shape), dw[0, :, rows]
    db = bias_grad(dy) if has_bias else None
    return dx, dw.reshape(weight.shape), db
