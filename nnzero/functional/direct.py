"""Grouped convolutions with few channels per group, computed without im2col.

With G groups of Cg = C/G input and Og = O/G output channels, im2col turns
each group into a product only Cg*KH*KW rows deep: for a depthwise layer
(Cg = Og = 1) one row, for 8 channels of a 3x3 kernel 72. Such products wait
on memory, not arithmetic, and the column matrix they read is KH*KW times
the input's size, written and read again in the backward pass (depthwise
layers measured 2.3-6.6x PyTorch's time that way, 8 groups of 8 channels 2x).
The kernels here keep each sample's group in cache instead:

* ``kernels/grouped_blocked.py``, stride 1, channels a group a multiple of
  4 (up to 32, see BLOCKED_MAX_CHANNELS): each group's padded planes of all
  the call's samples laid end to end, and blocks of 4 output channels by 16
  positions (64 in 512-bit vectors, on CPUs with AVX-512) summed in vector
  registers over every tap and input channel.
* ``kernels/depthwise_lanes.py``, depthwise at stride 1 on output rows of at
  most 8 cells (LANES_MAX_WIDTH): blocks of 8 channels (16 with AVX-512)
  transposed side by side, one vector multiply-add per position and tap.
* ``kernels/grouped.py``, stride 1, any groups: every (sample, group) unit's
  input planes are padded once and each output plane summed from them in
  place, all kernel offsets of a plane pair in one pass for 3x3 kernels.
* ``kernels/depthwise.py``, depthwise at any stride: each output row is
  KH*KW scaled rows of its own padded input plane; faster loops for 3x3
  kernels at column stride 2 or on narrow planes (``kernels/depthwise3.py``)
  and for 5-wide kernels at column stride 2 (``kernels/depthwise5.py``),
  chosen by ``depthwise.family``.

The formulas (and their derivatives) are the convolution's own, written out
in ``conv.py``; each kernel module's docstring has the loop form it uses.
``conv.py`` sends a convolution here when ``applicable`` says so, unless
``set_conv_algorithm('im2col')``.

Threads: the batch is split over them as for every other convolution
(``_threads.py``), each piece running the kernel on its own samples on its
own thread. Splitting each kernel's planes over the threads instead (then
numba's prange loops) measured no faster than one thread on the depthwise
benchmark layer (7.1 against 7.1 ms, forward and backward) where the split
batch took 3.9-4.2 ms, and 18.7-25 against 17-18.7 ms for 8 groups of 8
channels. A batch of one sample, which has nothing to split, splits its
planes (``kernels/_pool.py``).
"""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import numpy as np

from ..kernels import depthwise as D
from ..kernels import grouped as G
from ..kernels import depthwise_lanes as DL
from ..kernels import grouped_blocked as GB
from ._columns import Geometry, bias_grad
from ._threads import batch_pieces, inside_piece, whole_if_small

# Which stride-1 grouped convolutions the direct loops take: up to
# SHALLOW_ROWS rows deep (Cg*KH*KW) or FEW_CHANNELS channels per group always,
# up to DEEP_ROWS rows or SOME_CHANNELS channels when the output plane has at
# least LARGE_PLANE cells. Measured on layers of 32 samples, forward and
# backward (direct / im2col time, interleaved): 3x3 kernels, 4 channels per
# group 0.28-0.52 on 8x8 to 32x32 planes; 8 channels 0.44-0.72 from 16x16 up
# but 1.0-1.08 on 8x8; 16 channels 1.05-1.10 on 16x16, 0.78-0.92 on 32x32 and
# 1.0 on 64x64 (not taken: little and uneven), 32 channels 1.1-1.6. Larger
# kernels make im2col's columns larger too, so the channel count decides
# rather than the depth: 5x5 and 7x7 kernels, 2-4 channels 0.31-0.76 on 8x8
# to 32x32 planes (the first rule alone sent 5x5 with 2 channels on 8x8
# through im2col: 2.8x slower), 8 channels 0.64-0.89 from 16x16 up and 1.16
# on 8x8, 16 channels 1.16-1.19. 1x1 kernels stay with im2col, whose product
# then reads the input itself (2-4 against 5-15 ms). The large plane was
# 16x16 until 2026-11-29; then, against the batch-minor products that small
# planes take (or im2col from 15x15 up), medians of 3 interleaved rounds:
# 3x3 kernels, 8 channels a group, N 8 and 32, 64 and 256 channels: 14x14
# 0.68-0.82, 12x12 0.78-0.93, 10x10 0.68-1.01, 9x9 0.84-1.59; 6 channels
# 0.41-0.46 on 12x12 to 14x14, 5 channels 0.63 on 12x12, 8 channels on 15x15
# 0.67; 5x5 kernels, 8 channels 1.03-1.04 on 12x12 and 14x14, 6 channels 0.80
# on 12x12. So from 12x12 up.
# Strided layers other than depthwise ones stay with im2col: a strided
# version of the grouped loops (the padded input split into SH*SW phase
# planes, each read at stride 1) was measured and dropped. It was slower than
# im2col with 4 or more channels per group (14-27 against 9-18 ms at stride
# 2) and than depthwise.py's row loops on depthwise layers (9-22 against
# 7-17 ms); only a depthwise channel multiplier gained (10-16 against 24-31).
SHALLOW_ROWS = 36
DEEP_ROWS = 72
FEW_CHANNELS = 4
SOME_CHANNELS = 8
LARGE_PLANE = 144   # 12x12
# Which stride-1 grouped convolutions the blocked loops of
# ``kernels/grouped_blocked.py`` take (before the rule above): channels per
# group multiples of 4 (in and out), at most BLOCKED_MAX_CHANNELS of them in,
# or SOME_CHANNELS on output planes smaller than BLOCKED_SMALL_PLANE cells.
# Measured on layers of 16 samples (256 channels, 3x3 kernels unless said),
# forward and backward, blocked / what 'auto' took before (grouped.py's loops,
# the batch-minor products or im2col), interleaved, 5 rounds, 2026-11-29:
#   channels a group   4x4    7x7          14x14        28x28        56x56
#   4                  0.61   0.70         0.66         0.92-1.24    0.93-1.06
#   8                  0.85   0.69         0.70         0.83-0.88    0.93
#   16                 1.01   0.80         0.58-0.73    0.56
#   32                 1.28   0.91-0.94    0.80-0.86    0.79
#   64                 1.57   1.37         1.29         1.36
# (128 channels a group on 14x14: 2.09); 5x5 kernels, 8 and 16 channels on
# 7x7 and 14x14: 0.58-0.66; 16 in and 32 out on 14x14: 0.82. ResNeXt-50's
# stage-3 layer (16 of 512 channels, 32 groups of 16, 14x14) 0.58; its stage
# 1, 2 and 4 (4, 8 and 32 channels a group) 0.93, 0.83 and 0.80.
BLOCKED_MAX_CHANNELS = 32
BLOCKED_SMALL_PLANE = 49    # 7x7
# Which stride-1 depthwise convolutions ``kernels/depthwise_lanes.py`` takes:
# output rows of at most LANES_MAX_WIDTH cells (one run of 8 positions). One
# thread's samples, forward and backward, lanes / grouped.py's loops, medians
# of 3 interleaved rounds (2026-11-29): 3x3 kernels, N=16 512x2x2 0.34,
# 1024x4x4 0.41, 256x8x8 0.73, N=8 960x7x7 0.56; 5x5, 1152x7x7 0.54. Wider
# rows lose (each row is rounded up to runs of 8, and the transposes cost
# more than grouped.py's longer lines): 576x10x10 0.98, 576x14x14 1.41,
# 128x16x16 1.23, 144x28x28 1.57, 96x56x56 1.48; 5x5 672x14x14 0.93.
LANES_MAX_WIDTH = DL.J


class DirectCache(NamedTuple):
    x: np.ndarray          # (N, C, H, W), contiguous
    weight: np.ndarray     # (O, C/G, KH, KW)
    has_bias: bool
    geo: Geometry
    out_size: tuple
    loops: str             # the kernels: "blocked", "lanes", "grouped" or "depthwise"


def _stride_one(geo):
    return tuple(geo.stride) == (1, 1)


def applicable(geo, in_channels, out_channels, out_size):
    """Whether the direct loops should compute this grouped convolution."""
    g = geo.groups
    if g == 1:
        return False
    if g == in_channels == out_channels:
        return True                      # depthwise: any stride, any kernel
    taps = geo.kernel[0] * geo.kernel[1]
    if not _stride_one(geo) or taps == 1:
        return False
    if blocked(geo, in_channels, out_channels, out_size):
        return True
    per_group = in_channels // g
    rows = per_group * taps
    if rows <= SHALLOW_ROWS or per_group <= FEW_CHANNELS:
        return True
    large = out_size[0] * out_size[1] >= LARGE_PLANE
    return large and (rows <= DEEP_ROWS or per_group <= SOME_CHANNELS)


def blocked(geo, in_channels, out_channels, out_size):
    """Whether a grouped convolution runs by ``kernels/grouped_blocked.py``
    (see BLOCKED_MAX_CHANNELS)."""
    g = geo.groups
    if g == 1 or g == in_channels == out_channels or not _stride_one(geo):
        return False
    cg = in_channels // g
    if geo.kernel[0] * geo.kernel[1] == 1 or not GB.applies(cg, out_channels // g):
        return False
    small = out_size[0] * out_size[1] < BLOCKED_SMALL_PLANE
    return cg <= (SOME_CHANNELS if small else BLOCKED_MAX_CHANNELS)


def lanes(geo, in_channels, out_channels, out_size):
    """Whether a depthwise convolution runs by ``kernels/depthwise_lanes.py``
    (see LANES_MAX_WIDTH)."""
    depthwise = geo.groups == in_channels == out_channels
    return depthwise and _stride_one(geo) and out_size[1] <= LANES_MAX_WIDTH


def _loops(geo, in_channels, out_channels, out_size):
    """Which kernels compute an ``applicable`` convolution (DirectCache.loops)."""
    if blocked(geo, in_channels, out_channels, out_size):
        return "blocked"
    if lanes(geo, in_channels, out_channels, out_size):
        return "lanes"
    return "grouped" if _stride_one(geo) else "depthwise"


# The stride-1 families' entry points, all with grouped.py's arguments
# (depthwise.py's take a stride instead of the groups).
_FORWARD = {"blocked": GB.blocked_forward, "grouped": G.grouped_forward,
            "lanes": DL.lanes_forward}
_BACKWARD = {"blocked": GB.blocked_backward, "grouped": G.grouped_backward,
             "lanes": DL.lanes_backward}


def direct_forward(x, weight, bias, geo, out_size):
    """y (N, O, OH, OW) and the cache; x contiguous, inputs validated (see layers)."""
    n = x.shape[0]
    o = weight.shape[0]
    y = np.empty((n, o) + tuple(out_size), dtype=x.dtype)
    b = np.zeros(o, dtype=x.dtype) if bias is None else bias
    cache = DirectCache(x, weight, bias is not None, geo, tuple(out_size),
                        _loops(geo, x.shape[1], o, out_size))

    def part(lo, hi, serial):
        if cache.loops == "depthwise":
            D.depthwise_forward(x[lo:hi], weight, b, geo.stride, geo.pad_before, geo.dilation,
                                y[lo:hi], serial)
        else:
            _FORWARD[cache.loops](x[lo:hi], weight, b, geo.groups, geo.pad_before,
                                  geo.dilation, y[lo:hi], serial)
    with _small_call(cache):
        _over_batch(n, part)
    return y, cache


def direct_backward(dy, cache):
    """Return ``(dx, dweight, dbias)`` (``dbias`` None without bias)."""
    x, weight, has_bias, geo, out_size, loops = cache
    dx = np.empty_like(x)
    # the stride-1 loops sum the bias gradient from dy as they copy it
    in_loops = has_bias and loops in ("grouped", "blocked", "lanes")

    def part(lo, hi, serial):  # returns its samples' shares of the weight and bias gradients
        if loops == "depthwise":
            return D.depthwise_backward(x[lo:hi], weight, dy[lo:hi], geo.stride,
                                        geo.pad_before, geo.dilation, dx[lo:hi], serial), None
        if in_loops:
            db = np.empty(weight.shape[0], dtype=dx.dtype)
            return _BACKWARD[loops](x[lo:hi], weight, dy[lo:hi], geo.groups, geo.pad_before,
                                    geo.dilation, dx[lo:hi], serial, db=db), db
        return _BACKWARD[loops](x[lo:hi], weight, dy[lo:hi], geo.groups, geo.pad_before,
                                geo.dilation, dx[lo:hi], serial), None
    with _small_call(cache):
        shares = _over_batch(x.shape[0], part)
    dw, db = shares[0]
    for dw_share, db_share in shares[1:]:
        dw += dw_share
        if in_loops:
            db += db_share
    if has_bias and not in_loops:
        db = bias_grad(dy)
    return dx, dw, db


# The lanes loops' transposes cost more than their multiply-adds: a call of
# theirs counts LANES_WORK times its multiply-adds against the small-call
# threshold. Run whole against split, depthwise layers on the lanes loops
# (interleaved, 7 rounds): with the pool's old hand-off (a thread's wake-up)
# 0.41-0.79 at 0.1-3.4 M multiply-adds, 1.23-1.26 at 4.7-6.8 M (so 2^23 / 2);
# with its threads watching for their next piece (``kernels/_workers.py``)
# 0.40 at 0.07 M, 0.85 at 0.9 M, then 0.91-1.45 at 1.8-3.6 M (mean 1.12 over
# nine layers) and 1.28-1.72 at 4.7-9.4 M: so 2^23 / 4.
LANES_WORK = 4


def _small_call(cache):
    """The blocked and lanes loops follow the small-call rule of the other
    paths (``_threads.whole_if_small``, N*OH*OW times the weight's size; the
    lanes loops' count taken four times, see LANES_WORK): run whole, grouped
    layers of 1.2-2.4 M multiply-adds on the blocked loops took 0.40-0.49 of their split
    time (14-19 M: 1.01-1.08; 29-116 M: 1.42-1.64). ``grouped.py``'s and the
    strided depthwise loops do far more work per multiply-add than a product
    does, and keep the split at every size: run whole, depthwise layers of
    0.9-4.7 M multiply-adds took 1.12-1.70x their split time."""
    work = {"blocked": 1, "lanes": LANES_WORK}.get(cache.loops)
    if work is None:
        return contextlib.nullcontext()
    n, oh, ow = cache.x.shape[0], cache.out_size[0], cache.out_size[1]
    return whole_if_small(work * n * oh * ow * cache.weight.size)


def _over_batch(n, part):
    """``part(lo, hi, serial)`` over the batch, split over the threads; a single
    sample splits the kernel's planes over the threads instead."""
    if n == 1 and not inside_piece():
        return [part(0, 1, False)]
    return batch_pieces(n, lambda lo, hi: part(lo, hi, True))
