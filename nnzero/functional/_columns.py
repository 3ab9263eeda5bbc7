"""What both directions of convolution share: the window geometry, the
column-matrix budget and the calls into the im2col/col2im kernels.

``conv.py`` (convolution) and ``conv_transpose.py`` (transposed convolution)
build on this module; ``conv.py`` exports both directions.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ..kernels._pool import split_bounds
from ..kernels.im2col import col2im, im2col
from ..shapes import same_padding

_BUDGET = [256 * 2 ** 20]
# The algorithm choice of ``conv.set_conv_algorithm``, here so that both
# directions read it.
ALGORITHM = ["auto"]


def set_im2col_budget(nbytes):
    """Set the column-matrix budget in bytes; returns the previous value."""
    if not isinstance(nbytes, (int, np.integer)) or isinstance(nbytes, bool):
        raise TypeError(f"set_im2col_budget: nbytes must be an int, got {nbytes!r}")
    if nbytes < 1:
        raise ValueError(f"set_im2col_budget: nbytes must be positive, got {nbytes!r}")
    old, _BUDGET[0] = _BUDGET[0], int(nbytes)
    return old


def im2col_budget():
    return _BUDGET[0]


def bias_grad(dy):
    """The bias gradient of a convolution: ``dy`` (N, O, OH, OW) summed over
    all but the channel axis.

    Summed over the batch first (whole contiguous rows added element by
    element), then over each plane: measured 2x faster than
    ``dy.sum(axis=(0, 2, 3))``, which walks the planes one channel at a time,
    and as accurate.
    """
    return dy.sum(axis=0).sum(axis=(1, 2))


# When ``weight_product`` runs as (b @ a^T)^T: a of at most REVERSED_MAX_ROWS
# rows, b of at least REVERSED_ROW_RATIO times as many, a sum at least
# REVERSED_LENGTH_PER_ROW times a's rows long. Measured on the Intel machine
# (2026-11-29, OpenBLAS's SkylakeX kernels, one thread, 2 x 9 repeats), the
# reversed product plus the copy of its transpose into the (a rows, b rows)
# result, against the product as written, for a of p rows, b of q, sums of M:
# p = 16 and 32, q >= 4p, M >= 1024: 0.56-0.72; p = 64, q >= 4p: M = 4096
# 0.79-0.83, M = 1024 0.85, M = 256 0.99-1.05; p = 128, q >= 4p: M = 4096
# 0.90-0.91, 1024 0.94-0.99, 256 1.14-1.18; p = 256: 0.99-1.10 at M = 4096,
# up to 2.9x slower at M = 256 (a large transpose, copied element by element,
# costs more than the product gains: 17 ms for 512 x 4608); q = 2p: 0.75-0.97
# at M = 4096 for p <= 128, 1.18 at p = 16, M = 1024.
REVERSED_MAX_ROWS = 128
REVERSED_ROW_RATIO = 4
REVERSED_LENGTH_PER_ROW = 32


def weight_product(a, b, out=None):
    """``a @ b^T`` over the last two axes, stacked or not: the weight
    gradient's product dy (Og, L) @ cols^T (L, K), summed over the long axis L
    (and the transposed convolution's x @ cols^T). With ``out`` it is written
    there (straight from BLAS unless turned round) and ``out`` is returned.

    With few rows in a against b's and a long sum (the REVERSED_ rules above:
    conv_strided's (128, 576, 4096) per thread, a 5x5 16 -> 32 layer's
    (32, 400, 1024) per sample) it runs as ``(b @ a^T)^T`` and returns that
    transposed view: OpenBLAS's SkylakeX kernels take 0.56-0.91 of the time
    that way.
    """
    p, q, length = a.shape[-2], b.shape[-2], a.shape[-1]
    if (p <= REVERSED_MAX_ROWS and q >= REVERSED_ROW_RATIO * p
            and length >= REVERSED_LENGTH_PER_ROW * p):
        turned = np.matmul(b, np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
        if out is None:
            return turned
        out[...] = turned
        return out
    return np.matmul(a, np.swapaxes(b, -1, -2), out=out)


def channels_first(x, g):
    """(m, C, ...) -> (G, Cg, m*...): each group's channels over the whole chunk,
    batch-minor (a copy). The layout of batch-minor columns and products."""
    m, c = x.shape[:2]
    return np.ascontiguousarray(x.reshape(m, g, c // g, -1).transpose(1, 2, 0, 3)).reshape(
        g, c // g, -1)


# Each chunk is split over the threads and ends when its slowest piece does,
# so a chunk a sample over a multiple of the threads leaves one waiting for a
# sample's work in every chunk: a 256 -> 256 3x3 layer on 32x32 (N=64, 9.4 MB
# of columns a sample) at a 64 MiB budget took 1.25x its time at 256 MiB with
# chunks of 7 (3 and 4 samples a thread) and the same time with chunks of 6
# (forward 332-336 against 327-363 ms, backward 649-654 against 609-673).
#
# Past the budget, the paths with one product per sample (``conv.py``'s
# im2col, the sub-pixel layer) run in chunks of at most PER_SAMPLE_CHUNK_BYTES
# of columns: their products are the same whatever the chunk, and the shared
# pool (``_scratch.py``) holds a chunk's columns and their gradient at once.
# The 256 -> 256 layer above took the same time in chunks of 16 to 256 MiB
# (forward 300-364 ms, backward 644-731, two rounds each, chunks of 2 to 28
# samples). The batch-minor paths keep the whole budget: their products
# widen with the chunk.
PER_SAMPLE_CHUNK_BYTES = 64 * 2 ** 20


def chunk_size(n, k_rows, length, itemsize, limit=None):
    """Samples per chunk: the whole batch when its (k_rows, length) column
    matrices fit the budget, else as many as fit the budget (or ``limit``
    bytes, if smaller), at least one sample, and a multiple of the threads a
    chunk is split over when it holds more samples than them (see above)."""
    per_sample = max(k_rows * length * itemsize, 1)
    if n * per_sample <= _BUDGET[0]:
        return max(n, 1)
    cap = _BUDGET[0] if limit is None else min(_BUDGET[0], limit)
    chunk = max(1, cap // per_sample)          # fewer than n: the batch did not fit
    threads = len(split_bounds(chunk)) - 1     # the pieces a chunk is split into
    if chunk > threads:
        chunk -= chunk % threads
    return chunk


class Geometry(NamedTuple):
    """One convolution's window arrangement; all pairs are (H, W)."""
    kernel: tuple
    stride: tuple
    pad_before: tuple     # top, left
    pad_after: tuple      # bottom, right (only for the output size)
    dilation: tuple
    groups: int

    def out_size(self, h, w):
        return tuple((size + a + b - d * (k - 1) - 1) // s + 1
                     for size, a, b, d, k, s in zip((h, w), self.pad_before, self.pad_after,
                                                    self.dilation, self.kernel, self.stride))


def pair(v):
    return (v, v) if isinstance(v, (int, np.integer)) else tuple(v)


def make_geometry(kernel, stride=1, padding=0, dilation=1, groups=1):
    """``padding``: int, pair, 'valid' or 'same' (PyTorch's split: extra after)."""
    kernel, stride, dilation = pair(kernel), pair(stride), pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            before = after = (0, 0)
        else:  # 'same'
            (t, b), (l, r) = same_padding(kernel, dilation)
            before, after = (t, l), (b, r)
    else:
        before = after = pair(padding)
    return Geometry(kernel, stride, before, after, dilation, int(groups))


def _reaches(size, stride, offset, out):
    """Whether some output index i < out puts ``i*stride - offset`` in [0, size)."""
    first = max(0, -(-offset // stride))        # the least i with i*stride >= offset
    return first < out and first * stride - offset < size


def live_taps(geo, size):
    """The same convolution without its dead kernel rows and columns, or None.

    Kernel row u reads input row i*S - P + u*D for output row i. When that is
    padding for every output row, the row multiplies only zeros: dead. With a
    dilation or padding large against the image (an atrous layer at DeepLab's
    rates 24 or 36 on a 17x17 map; or any 3x3 'same' layer on a 1-pixel side)
    only the centre row may be live, and computing the dead ones costs up to
    9x the work, and a padded copy of the input as large as the padding (a
    dilation of 10**12 ran out of memory). Returns ``(geometry, (row, col))``:
    the geometry of the kernel's live rows and columns (first live to last; a
    dead one between live ones stays) and where they start in the kernel. The
    output is the same; the dead taps' weight gradients are 0. None when
    every tap is live, or none is (then the output is the bias alone, and the
    convolution runs as it is).
    """
    return _live_taps(geo, tuple(size))


# Layers call it with the same few geometries and sizes step after step: the
# answer is kept (~10 us a call on a small layer, measured in the call's
# overhead; Geometry and the answer are immutable tuples).
@functools.lru_cache(maxsize=1024)
def _live_taps(geo, size):
    out = geo.out_size(*size)
    kernel, before, after, dilation, first = [], [], [], [], []
    for n, k, s, p, d, o in zip(size, geo.kernel, geo.stride, geo.pad_before, geo.dilation,
                                out):
        live = [u for u in range(k) if _reaches(n, s, p - u * d, o)]
        if not live:
            return None
        lo = min(live[0], p // d)      # no negative padding before the first kept tap
        k_live = live[-1] + 1 - lo
        pad = p - lo * d
        kernel.append(k_live)
        before.append(pad)
        # only the output size reads it: whatever makes it o (negative: rows
        # past the last window's reach, never read)
        after.append((o - 1) * s + d * (k_live - 1) + 1 - n - pad)
        dilation.append(d if k_live > 1 else 1)
        first.append(lo)
    if tuple(kernel) == tuple(geo.kernel):
        return None
    return (Geometry(tuple(kernel), geo.stride, tuple(before), tuple(after), tuple(dilation),
                     geo.groups), tuple(first))


def _is_pointwise(geo):
    """1x1 kernel, stride 1, no padding: the columns are the input itself (when the
    window grid is the image: a transposed convolution's output_padding can grow it)."""
    return (geo.kernel == (1, 1) and geo.stride == (1, 1) and geo.pad_before == (0, 0)
            and geo.pad_after == (0, 0))


def columns_are_input(geo, x_shape, out_size):
    """True when a 1x1 convolution's column matrix would be x itself."""
    return _is_pointwise(geo) and tuple(out_size) == tuple(x_shape[2:])


def to_columns(x, geo, out_size, out=None, kmajor=False, serial=False, ones_row=False):
    """im2col of x for ``geo`` (x itself, as a view, for a pointwise convolution).

    ``ones_row``: each sample's block (sample-major) gets one more row, all
    ones, after its C*KH*KW rows: ``[W | b] @ cols`` is then the convolution
    with its bias added, and ``dy @ cols.T`` has the bias gradient as its last
    column. A pointwise convolution's columns are then a copy of x, into
    ``out`` (N, C+1, L).
    """
    if columns_are_input(geo, x.shape, out_size):
        cols = x.reshape(x.shape[0], x.shape[1], -1)
        if ones_row:
            if kmajor or out is None or out.shape != (cols.shape[0], cols.shape[1] + 1,
                                                      cols.shape[2]):
                raise ValueError(f"to_columns: a pointwise convolution's ones row needs a "
                                 f"sample-major out of shape {cols.shape[:1]} + "
                                 f"({cols.shape[1] + 1}, {cols.shape[2]}), got "
                                 f"{None if out is None else out.shape}")
            out[:, :-1] = cols
            out[:, -1] = 1
            return out
        return np.ascontiguousarray(cols.transpose(1, 0, 2)) if kmajor else cols
    cols = im2col(x, geo.kernel, geo.stride, geo.pad_before, geo.dilation, out_size, out,
                  kmajor, serial, extra_rows=int(ones_row))
    if ones_row:
        cols[:, -1] = 1
    return cols


def from_columns(cols, shape, geo, out_size, kmajor=False, out=None, serial=False):
    """col2im of ``cols`` into an image of ``shape`` (the reverse view for pointwise)."""
    if columns_are_input(geo, shape, out_size):
        img = (cols.transpose(1, 0, 2) if kmajor else cols).reshape(shape)
        if out is None:
            return img
        out[...] = img
        return out
    return col2im(cols, shape, geo.kernel, geo.stride, geo.pad_before, geo.dilation, out_size,
                  kmajor, out, serial)
