"""Transposed convolution: the input-gradient of a convolution, as a layer's forward.

Notation as in ``conv.py``. A transposed convolution is defined as the
input-gradient of a convolution: with weight (C, O/G, KH, KW) read as the
convolution's (C_out=C, C_in=O) weight,

    forward:   cols_g[n] = W_g^T (Og*KH*KW, Cg) @ x_g[n] (Cg, H*W);  y = col2im(cols) + b
    backward:  cols = im2col(dy) over the same geometry (the window grid is x's H x W)
               dx_g[n] = W_g @ cols_g[n];  dW_g = sum_n x_g[n] @ cols_g[n]^T;  db = sum dy

so its forward is col2im (a scatter) and its backward im2col (a gather): the
two directions of the convolution swapped. Output size per dimension:
(H - 1)*S - 2P + D*(K - 1) + output_padding + 1.

The columns are kept batch-minor, (G*Og*KH*KW, N, H*W) (``kmajor`` in
``kernels/im2col.py``), so each product above runs as one matmul over a
thread's whole share of the batch (``_threads.py``) with x reordered to
(G, Cg, N*H*W): e.g. W_g^T @ [x_g[0] ... x_g[N-1]]. The reorder copies x and
dx, the small side (Cg*H*W per sample against Og*KH*KW*H*W for the columns);
N small matmuls were measured ~2.5x slower.

At stride 1 a transposed convolution is a convolution (flipped, transposed
kernel; ``transpose_as_conv.py``) and runs as one where that is faster:
Winograd, the direct loops of grouped layers, columns from the smaller side.
When the stride divides the kernel (dilation 1, padding below the kernel
size), ``subpixel.py`` can compute the same layer as one stride-1
convolution of x and a pixel shuffle instead, and ``conv_transpose2d_forward``
hands it over where its cost model expects that to be faster: layers with
few input channels for their output channels (see there for the derivation,
the model and the measurements).

The forward pass runs a few samples at a time per thread (about 512 KiB of
columns, at least one sample), so col2im reads the product while it is still
in cache; the backward pass, like convolution, runs in batch chunks when the
column matrix would pass the im2col budget (see ``set_im2col_budget``).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import conv_taps, subpixel
from ._conv_checks import check_conv_transpose2d, check_dy
from ._columns import (ALGORITHM, Geometry, bias_grad, channels_first, chunk_size, from_columns,
                       make_geometry, pair, to_columns, weight_product)
from ._scratch import samples, transient
from ._threads import add_shares, batch_pieces, piece_bounds, run_pieces, whole_if_small


# The forward pass writes the columns (the product) and col2im reads them right
# after: a few samples at a time, so that they are still in cache (measured on
# convT_up, 32x64x16x16 -> 32, k=4, s=2: forward 10-10.6 ms against 13.3-14.3
# for a thread's whole share at once, interleaved). The backward pass reads
# im2col's columns in its products and gained nothing from blocks.
FORWARD_BLOCK_BYTES = 512 * 1024


class ConvTransposeCache(NamedTuple):
    x: np.ndarray          # (N, C, H, W), contiguous
    weight: np.ndarray     # (C, O/G, KH, KW)
    has_bias: bool
    geo: Geometry
    out_shape: tuple       # (N, O, OH, OW)


def conv_transpose2d_forward(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                             dilation=1, groups=1, workspace=None, keep_columns=True):
    """y (N, O, OH, OW), OH = (H-1)*S - 2P + D*(KH-1) + output_padding + 1.

    ``workspace``: an optional dict whose column buffer is reused between calls;
    ``keep_columns`` as for ``conv2d_forward``. Arguments are checked by
    ``_conv_checks``. A layer whose uncropped output (what col2im builds) would
    dwarf x and y runs tap by tap (``conv_taps.py``)."""
    x, weight = check_conv_transpose2d(x, weight, bias, stride, padding, output_padding,
                                       dilation, groups)
    geo = make_geometry(weight.shape[2:], stride, padding, dilation, groups)
    op = pair(output_padding)
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    o = weight.shape[1] * geo.groups
    size = tuple((s_in - 1) * s - 2 * p + d * (k - 1) + extra + 1
                 for s_in, s, p, d, k, extra in zip((h, w), geo.stride, geo.pad_before,
                                                    geo.dilation, geo.kernel, op))
    # col2im builds the whole uncropped output: (H-1)*S + D*(K-1) + 1 rows
    full = tuple((s_in - 1) * s + d * (k - 1) + 1 + extra
                 for s_in, s, d, k, extra in zip((h, w), geo.stride, geo.dilation, geo.kernel, op))
    if conv_taps.degenerate(full, (h, w), size):
        runs = tuple(conv_taps.tap_runs(n_out, n_in, k, s, p, d) for n_out, n_in, k, s, p, d in
                     zip(size, (h, w), geo.kernel, geo.stride, geo.pad_before, geo.dilation))
        return conv_taps.taps_forward(x, weight, bias, geo.groups, runs, geo.stride, size,
                                      transposed=True)
    from . import transpose_as_conv   # it imports conv.py, which imports this module
    conv_geo = transpose_as_conv.geometry(geo, op)
    if conv_geo is not None and transpose_as_conv.pays(conv_geo, x.shape, o, size, x.itemsize):
        return transpose_as_conv.forward(x, weight, bias, conv_geo, workspace, keep_columns)
    # a small call runs whole on the calling thread (``_threads.whole_if_small``;
    # the convolution form above decides for itself, as Conv2d does)
    with whole_if_small(n * h * w * weight.size):
        return _forward_by_path(x, weight, bias, geo, size, workspace, keep_columns)


def _forward_by_path(x, weight, bias, geo, size, workspace, keep_columns):
    n, c, h, w = x.shape
    g = geo.groups
    og = weight.shape[1]
    o = og * g
    out_shape = (n, o, size[0], size[1])
    if subpixel.winograd_pays(geo, x.shape, o, size, x.itemsize) or (
            ALGORITHM[0] != "im2col" and subpixel.applicable(geo, size)
            and subpixel.cheaper(geo, x.shape, o, size)):
        return subpixel.subpixel_forward(x, weight, bias, geo, size, workspace, keep_columns)
    k_out = og * geo.kernel[0] * geo.kernel[1]
    w_g = weight.reshape(g, c // g, k_out)                 # (G, Cg, Og*KH*KW)
    y = np.empty(out_shape, dtype=x.dtype)
    per = g * k_out * h * w                                # column values per sample
    block = max(1, min(n, FORWARD_BLOCK_BYTES // max(1, per * x.itemsize)))
    bounds = piece_bounds(n)
    buf = transient(workspace, "cols_forward", ((len(bounds) - 1) * block * per,), x.dtype)

    def piece(lo, hi):   # samples lo ... hi-1, on one thread, a block at a time
        slot = bounds.index(lo)
        for a in range(lo, hi, block):
            b = min(hi, a + block)
            # batch-minor columns (G*Og*KH*KW, b-a, HW): one matmul per group
            xk = channels_first(x[a:b], g)                    # (G, Cg, (b-a)*HW)
            cols = samples(buf, slot * block, slot * block + b - a, per).reshape(g, k_out, -1)
            for gi in range(g):
                np.matmul(w_g[gi].T, xk[gi], out=cols[gi])
            from_columns(cols.reshape(g * k_out, b - a, h * w), (b - a,) + out_shape[1:], geo,
                         (h, w), kmajor=True, out=y[a:b], serial=True)
        if bias is not None:
            y[lo:hi] += bias.reshape(1, o, 1, 1)

    if n:
        run_pieces(bounds, piece)
    return y, ConvTransposeCache(x, weight, bias is not None, geo, out_shape)


def conv_transpose2d_backward(dy, cache, workspace=None):
    """Return ``(dx, dweight, dbias)`` for dL/dy of the forward's output shape."""
    from . import transpose_as_conv
    if isinstance(cache, transpose_as_conv.AsConvCache):
        dy = check_dy(dy, *transpose_as_conv.output_of(cache), "conv_transpose2d_backward")
        return transpose_as_conv.backward(dy, cache, workspace)
    if isinstance(cache, conv_taps.TapsCache):
        dy = check_dy(dy, cache.out_shape, cache.x.dtype, "conv_transpose2d_backward")
        return conv_taps.taps_backward(dy, cache)
    out_shape = (subpixel.output_shape(cache) if isinstance(cache, subpixel.SubpixelCache)
                 else cache.out_shape)
    dy = check_dy(dy, out_shape, cache.x.dtype, "conv_transpose2d_backward")
    n, _, h, w = cache.x.shape   # the forward's choice: N*H*W times the weight's size
    weight_shape = (cache.weight_shape if isinstance(cache, subpixel.SubpixelCache)
                    else cache.weight.shape)
    with whole_if_small(n * h * w * math.prod(weight_shape)):
        return _backward_by_path(dy, cache, workspace)


def _backward_by_path(dy, cache, workspace):
    if isinstance(cache, subpixel.SubpixelCache):
        return subpixel.subpixel_backward(dy, cache, workspace)
    x, weight, has_bias, geo, out_shape = cache
    n, c, h, w = x.shape
    g = geo.groups
    og = weight.shape[1]
    k_out = og * geo.kernel[0] * geo.kernel[1]
    w_g = weight.reshape(g, c // g, k_out)
    dy = np.ascontiguousarray(dy)
    dx = np.empty(x.shape, dtype=x.dtype)
    chunk = chunk_size(n, g * k_out, h * w, x.itemsize)
    buf = transient(workspace, "cols", (min(chunk, n) * g * k_out * h * w,), x.dtype)
    dw = None
    for s in range(0, n, chunk):
        m = min(chunk, n - s)

        def piece(lo, hi, s=s):   # samples s+lo ... s+hi-1, on one thread
            a, b = s + lo, s + hi
            cols = samples(buf, lo, hi, g * k_out * h * w).reshape(g * k_out, b - a, h * w)
            cols = to_columns(dy[a:b], geo, (h, w), cols, kmajor=True,
                              serial=True).reshape(g, k_out, -1)
            xk = channels_first(x[a:b], g)                    # (G, Cg, (b-a)*HW)
            dxk = np.empty_like(xk)
            dw_part = np.empty_like(w_g)
            for gi in range(g):
                np.matmul(w_g[gi], cols[gi], out=dxk[gi])
                weight_product(xk[gi], cols[gi], out=dw_part[gi])
            dx[a:b] = dxk.reshape(c, b - a, h * w).transpose(1, 0, 2).reshape(b - a, c, h, w)
            return dw_part

        dw = add_shares(dw, batch_pieces(m, piece))
    if dw is None:   # an empty batch
        dw = np.zeros_like(w_g)
    db = bias_grad(dy) if has_bias else None
    return dx, dw.reshape(weight.shape), db
