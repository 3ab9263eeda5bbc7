"""Convolution and transposed convolution by im2col and one BLAS matmul per group.

Notation: x (N, C, H, W), weight (O, C/G, KH, KW), G groups, Cg = C/G input
and Og = O/G output channels per group, K = Cg*KH*KW, OH x OW the output
grid, L = OH*OW. ``cols = im2col(x)`` is (N, C*KH*KW, L) (see
``kernels/im2col.py``); its rows for group g are the slice g*K ... (g+1)*K.

Convolution (cross-correlation, no kernel flip)
-----------------------------------------------
    y[n, o, i, j] = b[o] + sum_{c,u,v} W[o, c, u, v] x[n, g*Cg + c, i*SH - PH + u*DH, j*SW - PW + v*DW]
                 => y_g[n] (Og, L) = W_g (Og, K) @ cols_g[n] (K, L)      (already NCHW)

Differentiating the matmul form with dy_g[n] = dL/dy_g[n]:

    dW_g    = sum_n dy_g[n] @ cols_g[n]^T          (Og, K)
    dcols_g = W_g^T @ dy_g[n]                       (K, L)
    dx      = col2im(dcols)                         every patch entry added back where it came from
    db[o]   = sum_{n,i,j} dy[n, o, i, j]

Without groups the bias is folded into the product (for 1x1 convolutions only
when they widen, see POINTWISE_FOLD): append a row of ones to each sample's
columns and b as one more column of W. Then

    [W | b] @ [cols; 1] = W @ cols + b 1^T          (the bias added to every position)
    dy[n] @ [cols; 1]^T = [dy[n] @ cols^T | dy[n] 1] (its last column: db's share of n)

so the two products compute what a bias pass over y and a sum over dy would
(``_bias_in_columns``); dcols uses W alone.

On small output planes (up to 14x14) a convolution takes the same products
over a thread's whole share of the batch at once instead, with the columns
laid out batch-minor: ``conv_batch_minor.py``.

Transposed convolution is written in ``conv_transpose.py`` (the same two
directions, swapped) and exported here too: ``conv_transpose2d_forward`` and
``conv_transpose2d_backward``. The window geometry and the calls into the
im2col/col2im kernels that both share are in ``_columns.py``.

Memory: the column matrix of a whole batch can be large (N*K*L values). When
it would pass the budget (``set_im2col_budget``, default 256 MiB) the batch
runs in chunks; the backward pass then rebuilds each chunk's columns instead
of keeping them all. A layer keeps its own buffer only for what its cache
holds from the forward pass to the backward one (the whole batch's columns);
its other buffers come from one pool per Python thread shared by every layer
(``_scratch.py``), which ``release_transients`` frees.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import conv_batch_minor, conv_taps, direct, winograd
from .winograd_rules import winograd_by_positions, winograd_family
from ._conv_checks import check_conv2d, check_dy
from ._columns import (ALGORITHM, PER_SAMPLE_CHUNK_BYTES, Geometry, bias_grad,  # noqa: F401
                       chunk_size, columns_are_input, from_columns, im2col_budget, live_taps,
                       make_geometry, set_im2col_budget, to_columns, weight_product)
from ._scratch import columns_buffer, release_transients, transient  # noqa: F401
from ._threads import add_shares, batch_pieces, whole_if_small

_ALGORITHMS = ("auto", "im2col", "winograd")


def set_conv_algorithm(name):
    """Choose how Conv2d computes: 'auto' (default), 'im2col' or 'winograd'.

    'auto' takes Winograd (F(4x4, 3x3) or F(2x2, 3x3) for 3x3 kernels, F(3x3,
    2x2) for 2x2 ones) for stride-1, undilated, ungrouped convolutions wide and
    large enough (``winograd_rules.py``: WINOGRAD_F43_RULES, WINOGRAD_RULES,
    WINOGRAD_2X2_RULES: the more channels, the smaller the outputs may be),
    and F(4x4, 2x2) over the input's phases for 4x4 kernels at stride 2
    (WINOGRAD_STRIDE2_RULES), when
    the transformed tiles and their products fit the im2col budget together;
    grouped convolutions with up to 32 channels per group (depthwise ones at
    any stride, others at stride 1; see ``direct.applicable``) to the direct
    loops of ``direct.py``, and im2col otherwise: those with small output planes with
    batch-minor columns and one product per group and thread
    (``conv_batch_minor.py``), the rest with one product per sample; transposed
    convolutions whose stride divides the kernel run as a stride-1 convolution
    and a pixel shuffle (``subpixel.py``; that convolution by Winograd when it
    is 2x2 and wide enough), the others through col2im. 'winograd' forces
    Winograd wherever it applies and fits the budget (3x3 kernels at stride 1 by
    F(2x2, 3x3), 2x2 ones, 3x3 and 4x4 at stride 2; the grouped ones still go
    direct); 'im2col' sends everything, both directions, through im2col/col2im,
    convolutions with one product per sample. Returns the previous choice.
    """
    if name not in _ALGORITHMS:
        raise ValueError(f"set_conv_algorithm: expected one of {_ALGORITHMS}, got {name!r}")
    old, ALGORITHM[0] = ALGORITHM[0], name
    return old


# A pointwise convolution's columns are x itself; folding its bias means
# copying x with the ones row (C*L values a sample) to save the passes over y
# and dy (O*L each), so it is folded only where the output has at least
# POINTWISE_FOLD times as many channels as the input. Measured forward and
# backward, folded / separate passes, medians of 7 interleaved rounds
# (2026-11-29): C -> O on N x H x H, 3 -> 64 (32, 32x32) 0.76, 16 -> 96 and
# 24 -> 144 (16, 56x56) 0.82 and 0.81, 32 -> 192 (16, 28x28) 0.90, 64 -> 256
# (8, 56x56) 0.91, 64 -> 128 and 64 -> 192 (16, 32x32) 0.89 and 0.92,
# 128 -> 256 (32, 16x16) 0.97; not widening: 64 -> 64 1.04, 64 -> 96 1.11,
# 128 -> 64 1.02 (16, 32x32), 256 -> 64 (8, 56x56) 1.09, 32 -> 32 (16,
# 56x56) 0.99.
POINTWISE_FOLD = 2


def _bias_in_columns(has_bias, groups, pointwise, channels, out_channels):
    """Whether the bias rides in the products: a row of ones under each
    sample's columns and the bias as one more weight column, so that the
    forward product adds it and the weight gradient's product sums its
    gradient (measured 0.3-0.6 ms less than the separate passes over y and
    dy for one thread's 32 samples of conv_stem, where each pass costs as
    much as a product 27 rows deep). Not for grouped convolutions (the ones
    row would sit between groups), nor for pointwise ones that do not widen
    (see POINTWISE_FOLD)."""
    widens = out_channels >= POINTWISE_FOLD * channels
    return has_bias and groups == 1 and (widens or not pointwise)


def _grouped(a, groups):
    """(N, G*R, L) -> (N, G, R, L) view."""
    return a.reshape(a.shape[0], groups, a.shape[1] // groups, a.shape[2])


class ConvCache(NamedTuple):
    x: np.ndarray          # (N, C, H, W), contiguous
    weight: np.ndarray
    has_bias: bool
    geo: Geometry
    out_size: tuple
    cols: object           # (N, C*KH*KW, L) when the whole batch fit the budget, else None


class TrimmedCache(NamedTuple):
    inner: object          # the cache of the convolution by the live taps alone
    kernel: tuple          # the whole kernel's (KH, KW)
    first: tuple           # where the live taps start in it (row, column)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                   workspace=None, keep_columns=True):
    """y (N, O, OH, OW) = conv(x, weight) + bias (arguments checked by ``_conv_checks``).

    Under 'auto', kernel rows and columns that meet only the zero padding, at
    every output position, are left out (``live_taps``: dilations or padding
    reaching past the image); their weight gradients are 0. In any mode, a
    geometry whose padded plane would dwarf x and y (strides, paddings and
    dilations far past the image) runs tap by tap, with no plane
    (``conv_taps.py``).

    ``workspace``: an optional dict whose buffers are reused between calls; the
    cache then refers to them, so only the latest cache of a workspace is valid
    (a layer owns one and keeps only its latest cache anyway).

    ``keep_columns``: the cache keeps the whole batch's columns, when they fit
    the budget, so that the backward pass need not rebuild them. A layer in
    eval mode passes False: inference then holds no columns (the backward
    pass, if called, rebuilds them, and Winograd's transformed tiles likewise).
    """
    x, weight = check_conv2d(x, weight, bias, stride, padding, dilation, groups)
    geo = make_geometry(weight.shape[2:], stride, padding, dilation, groups)
    x = np.ascontiguousarray(x)
    trimmed = live_taps(geo, x.shape[2:]) if ALGORITHM[0] == "auto" else None
    size, out = x.shape[2:], geo.out_size(*x.shape[2:])
    if conv_taps.degenerate(conv_taps.conv_plane(trimmed[0] if trimmed else geo, size), size, out):
        return conv_taps.taps_forward(x, weight, bias, geo.groups, conv_taps.conv_runs(geo, size),
                                      geo.stride, out, transposed=False)
    if trimmed is None:
        return conv2d_by_geometry(x, weight, bias, geo, workspace, keep_columns)
    live, (r0, c0) = trimmed
    kh, kw = live.kernel
    live_weight = np.ascontiguousarray(weight[:, :, r0:r0 + kh, c0:c0 + kw])
    y, cache = conv2d_by_geometry(x, live_weight, bias, live, workspace, keep_columns)
    return y, TrimmedCache(cache, geo.kernel, (r0, c0))


def conv2d_by_geometry(x, weight, bias, geo, workspace, keep_columns=True):
    """``conv2d_forward`` for a built ``Geometry`` (padding may differ before and
    after), x contiguous and the arguments checked: the path is chosen here.
    A small call runs whole on the calling thread (``_threads.whole_if_small``;
    the direct loops decide for themselves, see ``direct._small_call``)."""
    oh, ow = geo.out_size(*x.shape[2:])
    if ALGORITHM[0] != "im2col" and direct.applicable(geo, x.shape[1], weight.shape[0],
                                                      (oh, ow)):
        return direct.direct_forward(x, weight, bias, geo, (oh, ow))
    with whole_if_small(x.shape[0] * oh * ow * weight.size):
        return _forward_by_path(x, weight, bias, geo, (oh, ow), workspace, keep_columns)


def _forward_by_path(x, weight, bias, geo, out_size, workspace, keep_columns):
    n, c, h, w = x.shape
    o = weight.shape[0]
    g = geo.groups
    oh, ow = out_size
    family = winograd_family(geo, x.shape, o, (oh, ow), x.itemsize)
    if family:
        by_positions = winograd_by_positions(family, x.shape, o, (oh, ow))
        return winograd.conv2d_winograd_forward(x, weight, bias, geo, family, workspace,
                                                keep=keep_columns, by_positions=by_positions)
    if ALGORITHM[0] != "im2col" and conv_batch_minor.applicable((oh, ow), geo, x.shape, o):
        return conv_batch_minor.forward(x, weight, bias, geo, (oh, ow), workspace,
                                        keep_columns)
    length = oh * ow
    pointwise = columns_are_input(geo, x.shape, (oh, ow))
    fold = _bias_in_columns(bias is not None, g, pointwise, c, o)
    is_x = pointwise and not fold                          # the columns are x itself
    w_g = weight.reshape(g, o // g, -1)                    # (G, Og, K)
    if fold:                                               # (1, O, K+1): [W | b]
        w_g = np.concatenate([w_g, bias.reshape(1, o, 1).astype(x.dtype, copy=False)], axis=2)
    y = np.empty((n, g, o // g, length), dtype=x.dtype)
    k_rows = c * geo.kernel[0] * geo.kernel[1]
    chunk = chunk_size(n, k_rows + fold, length, x.itemsize, PER_SAMPLE_CHUNK_BYTES)
    keep = chunk >= n and keep_columns   # the whole batch's columns, kept for the backward
    buf = None if is_x else columns_buffer(workspace, "cols", (min(chunk, n), k_rows + fold,
                                                               length), x.dtype, keep)
    add_bias = None if bias is None or fold else bias.reshape(g, o // g, 1)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)

        def piece(lo, hi, s=s):   # samples s+lo ... s+hi-1, on one thread
            part = None if buf is None else buf[lo:hi]
            cols = _grouped(to_columns(x[s + lo:s + hi], geo, (oh, ow), part, serial=True,
                                       ones_row=fold), g)
            out = y[s + lo:s + hi]
            for gi in range(g):
                np.matmul(w_g[gi], cols[:, gi], out=out[:, gi])
            if add_bias is not None:
                out += add_bias

        batch_pieces(m, piece)
    kept = None
    if chunk >= n and (keep or is_x):   # the whole batch's columns: the backward reuses them
        kept = x.reshape(n, c, length) if is_x else buf
    return y.reshape(n, o, oh, ow), ConvCache(x, weight, bias is not None, geo, (oh, ow), kept)


def output_of(cache):
    """The shape and dtype of the forward's output, from any of its caches."""
    if isinstance(cache, TrimmedCache):
        return output_of(cache.inner)
    if isinstance(cache, conv_taps.TapsCache):
        return cache.out_shape, cache.x.dtype
    if isinstance(cache, winograd.WinogradCache):
        n, dtype = cache.x_shape[0], cache.u.dtype
    else:
        n, dtype = cache.x.shape[0], cache.x.dtype
    return (n, cache.weight.shape[0]) + tuple(cache.out_size), dtype


def conv2d_backward(dy, cache, workspace=None):
    """Return ``(dx, dweight, dbias)`` (``dbias`` None without bias) for dL/dy
    of the forward's output shape."""
    if isinstance(cache, TrimmedCache):   # the dead taps' gradients are 0
        dx, dw_live, db = conv2d_backward(dy, cache.inner, workspace)
        dw = np.zeros(dw_live.shape[:2] + tuple(cache.kernel), dtype=dw_live.dtype)
        (r0, c0), (kh, kw) = cache.first, dw_live.shape[2:]
        dw[:, :, r0:r0 + kh, c0:c0 + kw] = dw_live
        return dx, dw, db
    shape, dtype = output_of(cache)
    dy = check_dy(dy, shape, dtype, "conv2d_backward")
    if isinstance(cache, direct.DirectCache):   # it decides as its forward did
        return direct.direct_backward(dy, cache)
    if isinstance(cache, conv_taps.TapsCache):
        return conv_taps.taps_backward(dy, cache)
    # the same choice as the forward's: (N, O, OH, OW) times C/G*KH*KW
    with whole_if_small(math.prod(shape) * cache.weight[0].size):
        return _backward_by_path(dy, cache, workspace)


def _backward_by_path(dy, cache, workspace):
    if isinstance(cache, winograd.WinogradCache):
        return winograd.conv2d_winograd_backward(dy, cache, workspace)
    if isinstance(cache, conv_batch_minor.BatchMinorCache):
        return conv_batch_minor.backward(dy, cache, workspace)
    x, weight, has_bias, geo, out_size, kept = cache
    n, c, h, w = x.shape
    o = weight.shape[0]
    g = geo.groups
    length = out_size[0] * out_size[1]
    dy_g = np.ascontiguousarray(dy).reshape(n, g, o // g, length)
    w_g = weight.reshape(g, o // g, -1)
    dx = np.empty_like(x)
    pointwise = columns_are_input(geo, x.shape, out_size)
    fold = _bias_in_columns(has_bias, g, pointwise, c, o)   # as the forward pass had it
    is_x = pointwise and not fold
    k_rows = c * geo.kernel[0] * geo.kernel[1]
    chunk = max(n, 1) if kept is not None else chunk_size(n, k_rows + fold, length, x.itemsize,
                                                          PER_SAMPLE_CHUNK_BYTES)
    if kept is None and not is_x:
        buf = transient(workspace, "cols", (min(chunk, n), k_rows + fold, length), x.dtype)
    if not pointwise:
        dbuf = transient(workspace, "dcols", (min(chunk, n), k_rows, length), x.dtype)
    dw = None
    for s in range(0, n, chunk):
        m = min(chunk, n - s)

        def piece(lo, hi, s=s):   # samples s+lo ... s+hi-1, on one thread
            a, b = s + lo, s + hi
            if kept is not None:
                cols = kept[a:b]
            else:
                cols = to_columns(x[a:b], geo, out_size, None if is_x else buf[lo:hi],
                                  serial=True, ones_row=fold)
            cols = _grouped(cols, g)
            # a 1x1 convolution's column gradient is the input gradient itself
            dcols = _grouped(dx[a:b].reshape(b - a, c, length) if pointwise else dbuf[lo:hi], g)
            # with the ones row, the last column of dw_part is the bias gradient
            dw_part = np.zeros(w_g.shape[:2] + (cols.shape[2],), dtype=w_g.dtype)
            for gi in range(g):
                d = dy_g[a:b, gi]                                             # (m, Og, L)
                dw_part[gi] = weight_product(d, cols[:, gi]).sum(axis=0)
                np.matmul(w_g[gi].T, d, out=dcols[:, gi])
            if not pointwise:
                from_columns(dbuf[lo:hi], (b - a, c, h, w), geo, out_size, out=dx[a:b],
                             serial=True)
            return dw_part

        dw = add_shares(dw, batch_pieces(m, piece))
    if dw is None:   # an empty batch
        dw = np.zeros(w_g.shape[:2] + (k_rows // g + fold,), dtype=w_g.dtype)
    if fold:
        db = dw[0, :, -1].copy()
        dw = dw[:, :, :-1]
    else:
        db = bias_grad(dy) if has_bias else None
    return dx, dw.reshape(weight.shape), db


# Transposed convolution is written in conv_transpose.py; both directions are
# this module's interface (and conv_transpose.py does not import this module).
from .conv_transpose import (ConvTransposeCache, conv_transpose2d_backward,  # noqa: E402,F401
                             conv_transpose2d_forward)
