"""Which Winograd tile family, if any, a convolution runs by under 'auto'
(or the default family when Winograd is forced): measured rules by kernel,
stride, output size, channels and samples per thread. ``conv.py`` and
``transpose_as_conv.py`` ask ``winograd_family``; the families themselves
are in ``winograd.py`` and ``kernels/winograd*.py``.
"""
from __future__ import annotations

from . import winograd
from ._columns import ALGORITHM, im2col_budget
from ._threads import piece_bounds

# Where 'auto' takes Winograd for 3x3 kernels: (least output size, least
# channels in and out) pairs, any one of which suffices. Measured
# forward+backward at N=32 (Winograd / the path auto takes otherwise,
# interleaved, 5 rounds, 2026-11-28, after the filter transforms became one
# small product each: before, as einsums on the calling thread, they cost 5 ms
# at 64 channels and 74 ms at 256 per step, and Winograd lost on 8x8 outputs):
# 32x32 outputs: 16 channels 0.88, 32 0.83; 16x16: 16 channels 1.00, 32 0.93,
# 256 0.54; 14x14 256 channels 0.58; 8x8: 16 channels 1.14, 32 1.01, 64
# 0.79, 128 0.81, 256 0.70, 512 (16 samples) 0.74; 7x7 512 channels 0.78;
# 6x6 64 channels (64 samples) 0.81; 4x4, left out: 64 channels 0.99, 128
# 0.71, 256 1.22, 512 0.92, single rounds 0.66-1.41.
WINOGRAD_RULES = ((32, 16), (16, 32), (6, 64))
# 2x2 kernels (F(3x3, 2x2)): outputs of at least 16x16 and 64 channels.
# Measured the same way: 64 -> 64 channels on 32x32 0.93 and on 16x16 0.89,
# 128 -> 128 on 16x16 0.79; 32 channels on 32x32 1.13, 16 channels 1.12,
# 3 -> 64 3.4.
WINOGRAD_2X2_RULES = ((16, 64),)
# Stride 2 (F(4x4, 2x2) over the input's four phases, ``kernels/winograd_s2.py``),
# by kernel size. Measured the same way (2026-11-28, N=32, 5 rounds): 4x4
# kernels 16 -> 32 channels on 32x32 outputs 0.76, 32 -> 64 0.77, 64 -> 128
# 0.55; 16x16: 32 -> 64 0.61, 64 -> 128 0.59; 8x8: 64 -> 128 0.84, 128 -> 256
# 0.82, 256 -> 512 0.91; 4x4 outputs 1.6-2.1 and 3 input channels 1.43, left
# out. 3x3 kernels never clearly won: 16x16 outputs 64 -> 128 (conv_strided)
# 0.99-1.06, 128 -> 256 1.00; 32x32 16 and 32 channels 1.3; 56x56 64 -> 128
# 0.86 with rounds 0.73-1.14; 8x8 1.56. The phases of a 3x3 kernel hold 9
# taps in 16 places, so 7/16 of the products multiply zeros.
WINOGRAD_STRIDE2_RULES = {3: (), 4: ((8, 16),)}
# 3x3 kernels by F(4x4, 3x3) (``kernels/winograd_f43.py``: 2.25 multiplies per
# output against F(2x2, 3x3)'s 4 and im2col's 9) on outputs of at least 7x7
# with 8 to 256 channels, before the rules above. Measured the same way
# (2026-11-28, N=32 unless said, against what auto took before: F(2x2, 3x3)
# or im2col): 32x32 outputs 8 channels 0.88 (im2col), 16 0.82, 32 0.85, 64
# (conv_mid) 0.78 and 0.87; 16x16: 16 channels 0.95 (im2col), 32 0.78, 128
# 0.62 and 0.72; 14x14 256 0.82; 8x8: 16 0.82 (im2col), 32 0.75 (im2col), 64
# 0.78, 256 0.87, 512 (16 samples) 1.13; 7x7 256 0.75; 56x56 64 (8 samples)
# 0.79; left out: 6x6 64 channels 1.05 (tiles of 4 cover 8), 4x4 128 1.07,
# 512 1.36, and 3 input channels 2.1. Its larger tiles round more: see the
# kernels' docstring.
WINOGRAD_F43_RULES = ((7, 8),)
WINOGRAD_F43_MAX_CHANNELS = 256
# F(4x4, 3x3) and the stride-2 family number their tiles batch-minor (their
# loops run over a thread's samples), so they need a few samples per thread:
# 64 -> 128 channels, 4x4 kernel at stride 2 on 32x32, against im2col
# (2026-11-28, 2 threads, 5 rounds): N=2 2.4x slower, N=4 1.53x, N=8 0.84;
# one 32x32 -> 64 sample on 64x64 1.23x; 3x3, 64 channels on 16x16 by
# F(4x4, 3x3) against F(2x2, 3x3): N=1 1.38, N=4 1.05, N=8 0.99, N=16 0.85;
# 256 channels on 14x14, N=1: 1.9.
WINOGRAD_BATCH_MINOR_SAMPLES = 4
# On the Intel machine (2026-11-29; the rules above are the AMD machine's),
# F(4x4, 3x3) on outputs of at most 8x8 (2x2 tiles a plane) with at least 128
# channels needs SMALL_PLANE_SAMPLES per thread: with fewer, each of its 36
# products is only a few dozen tiles wide, and the batch-minor im2col products
# (what such a layer takes without Winograd) ran faster. Forward+backward,
# 3 rounds in separate processes, F(4x4, 3x3)'s time against batch-minor's:
# 4 samples per thread, 128 and 256 channels on 7x7 1.88 and 1.87, on 8x8
# 1.66 and 1.54; 8 per thread 1.33, 1.30, 1.07 and 1.02; 16 per thread 128
# channels 1.04 on 7x7 and 0.89 on 8x8, 256 0.92 and 0.75. Left to it: 64
# channels (0.98-1.17 at 4 samples per thread, 0.79-0.93 at 8). F(2x2, 3x3)
# in its place (WINOGRAD_RULES would take these layers next) measured
# 0.83-0.91 of F(4x4, 3x3)'s time on 128 and 256 channels at 4 per thread:
# slower than batch-minor too, so neither family took them. Since the threads
# can split each step instead of the batch (BY_POSITIONS below, which these
# layers take), F(4x4, 3x3) wins from 6 samples per thread (same day, against
# batch-minor, two rounds): 6 per thread, 256 channels on 8x8 0.71-0.72; 8
# per thread, 128 channels on 8x8 0.86-0.90 and on 7x7 0.99-1.04, 256 on 8x8
# 0.67-0.72 and on 7x7 0.83-0.91; 12 per thread, 128 on 8x8 0.84-0.90, 256 on
# 7x7 0.65-0.66. Left to batch-minor: 4 per thread (256 channels on 8x8
# 0.85-0.92, but 7x7 1.11 and 128 channels on 8x8 1.19).
SMALL_PLANE = 8
SMALL_PLANE_CHANNELS = 128
SMALL_PLANE_SAMPLES = 6
# 4x4 outputs (WINOGRAD_RULES leaves them out) with at least 512 channels and
# 16 samples per thread take F(2x2, 3x3) with the threads splitting the
# positions (below). Measured on the Intel machine (2026-11-29, forward+backward
# against the batch-minor products they took before, in separate processes):
# 512 channels, 16 samples per thread (conv_small) 0.80-0.81 in two rounds,
# 24 0.73, 32 0.82; 8 per thread 1.13 and 4 1.35, and 256 channels at 16 per
# thread 1.15, left out. F(4x4, 3x3) in its place: 0.89-0.94 at 128 and 256
# channels (32 and 64 samples), 1.6-2.5 at 512; left out.
TINY_PLANE = (4, 512, 16)   # (least output size, least channels, least samples per thread)
# F(2x2, 3x3) transforms every filter once a call (U: 16 values per (o, c)
# pair, 16 MB at 512 channels, ~1.5 ms), whatever the batch, and saves k*k*L
# - 16*T multiply-adds per pair and sample (L outputs, T tiles a sample: 185
# on 7x7, 980 on 14x14). With few samples and many channels the transforms
# cost more than the products save: from 128 channels it needs
# WINOGRAD_MIN_SAVED saved multiply-adds per pair over the batch. Measured on
# the Intel machine (2026-11-29, forward+backward, against what the layer
# takes without Winograd: batch-minor columns up to 14x14, else im2col; two
# rounds): 185 (one sample, 512 channels on 7x7) 1.83, 370 1.22, 740 (4
# samples, 128 and 512 channels on 7x7) 1.05-1.41 and 1.07-1.13, 980 (one
# sample on 14x14) 1.29 at 128 channels and 1.06-1.13 at 256 and 512, 1280
# (4 samples of 512 on 8x8) 0.96-0.98; 1480 (8 samples, 7x7) 0.89, 1960 (2
# samples on 14x14) 0.84-0.90 at 256 and 512 channels but 1.15 at 128, 2960
# and more 0.72-0.83. 64 channels are left to WINOGRAD_RULES (one sample on
# 14x14, 980: 0.90).
WINOGRAD_MIN_SAVED = 1400
WINOGRAD_MIN_SAVED_CHANNELS = 128
# Which Winograd layers split each step over the threads (``winograd.py``,
# ``by_positions``: the input transform by planes, the products by position,
# the output transform by channels) instead of splitting the batch, so that
# each product is as wide as the whole batch's tiles, not one thread's share:
# (least channels, most tiles per thread) pairs, any one of which suffices.
# With the batch split, a thread's products are its samples' tiles wide (T
# columns), and the filter transforms are done once either way. Measured on
# the Intel machine (2026-11-29, forward+backward, by positions against by
# samples, F(4x4, 3x3) unless said; C channels in and out, N samples, 2
# threads): 64 tiles a thread: 128 channels on 8x8 (N=32) 0.88, on 16x16
# (N=8) 0.83; 256 on 7x7 and 8x8 (N=32) 0.77 and 0.74, on 14x14 (N=8) 0.65;
# F(2x2, 3x3) with 512 on 8x8 (N=8) 0.78. 128 tiles: 128 channels on 8x8
# (N=64) 0.95 and 16x16 (N=16) 0.90; 192 and 256 on 14x14 (N=16) 0.77 and
# 0.75, 256 on 8x8 (N=64) 0.73 and 16x16 (N=16) 0.80; F(2x2, 3x3) with 512
# on 7x7 and 8x8 (N=16) 0.84 and 0.87. 196 and 256 tiles with 512 channels
# (F(2x2, 3x3), 8x8 N=32 and 14x14 N=8): 0.92 and 0.91; with 128 and 256
# channels, 256 tiles (16x16 and 14x14, N=32) 1.06 and 0.98. Left out: 64
# channels (1.17 and 1.28 at 64 tiles a thread on 16x16 and 8x8), and the
# 2x2 kernels (not measured). The stride-2 family (4x4 kernels; its tiles
# have 4C channels, the input's phases) gains from 64 channels, with at most
# 128 tiles a thread: 64 -> 128 on 8x8 outputs (N=16 and 64, 32 and 128
# tiles) 0.65-0.67 and 0.96, 128 -> 256 on 8x8 (N=16, 32, 64) 0.58, 0.73-0.75
# and 0.86-0.89, on 16x16 (N=16) 0.85-0.90, 256 -> 256 on 8x8 (N=32)
# 0.76-0.77, 256 -> 512 on 16x16 (N=8) 0.75-0.76; left out: 256 tiles a thread
# (conv_k4s2, 64 -> 128 on 16x16 with N=32: 1.00-1.01; 128 -> 256 likewise
# 0.95-1.02) and 32 channels (1.23-1.25 at 64 tiles, 1.05-1.08 at 128). A batch with fewer
# samples than threads always splits the steps, whatever its size: split by
# samples, a thread would have none (one sample by F(2x2, 3x3): 256 channels
# on 28x28 0.78, 128 on 56x56 0.73, 64 on 56x56 0.83-0.90; two samples of
# 128 channels on 28x28, one a thread, 1.15, left to the rules above).
BY_POSITIONS = {"F(2x2,3x3)": ((128, 128), (512, 256)),
                "F(4x4,3x3)": ((128, 128), (512, 256)),
                "F(4x4,2x2)/2": ((64, 128),)}


def winograd_family(geo, x_shape, o, out_size, itemsize):
    """The Winograd tile family this convolution runs by, or None for the others."""
    if ALGORITHM[0] == "im2col" or not winograd.applicable(geo):
        return None
    k, s = geo.kernel[0], geo.stride[0]
    family = _rule_family(k, s, x_shape, o, out_size)
    fits = family and winograd.buffer_bytes(x_shape, out_size, itemsize, family,
                                            o) <= im2col_budget()
    return family if fits else None


def _rule_family(k, s, x_shape, o, out_size):
    """The family 'auto' picks by the rules above (the default one when
    'winograd' is forced), or None."""
    if ALGORITHM[0] == "winograd":
        return winograd.DEFAULT[k, s]
    channels, size = min(x_shape[1], o), min(out_size)
    pieces = len(piece_bounds(x_shape[0])) - 1
    batch_minor = x_shape[0] >= WINOGRAD_BATCH_MINOR_SAMPLES * pieces

    def met(rules):
        return any(size >= least_size and channels >= least for least_size, least in rules)

    if s == 2:
        takes = batch_minor and met(WINOGRAD_STRIDE2_RULES[k])
    elif k == 2:
        takes = met(WINOGRAD_2X2_RULES)
    elif (batch_minor and met(WINOGRAD_F43_RULES)
          and max(x_shape[1], o) <= WINOGRAD_F43_MAX_CHANNELS):
        few_tiles = (max(out_size) <= SMALL_PLANE and channels >= SMALL_PLANE_CHANNELS
                     and x_shape[0] < SMALL_PLANE_SAMPLES * pieces)
        return None if few_tiles else "F(4x4,3x3)"
    else:
        least_size, least_channels, least_samples = TINY_PLANE
        takes = met(WINOGRAD_RULES) or (size >= least_size and channels >= least_channels
                                        and x_shape[0] >= least_samples * pieces)
        if takes and channels >= WINOGRAD_MIN_SAVED_CHANNELS:   # the filters' transforms pay?
            th, tw = winograd.tiles(out_size, "F(2x2,3x3)")
            saved = x_shape[0] * (k * k * out_size[0] * out_size[1] - 16 * th * tw)
            takes = saved >= WINOGRAD_MIN_SAVED
    return winograd.DEFAULT[k, s] if takes else None


def winograd_by_positions(family, x_shape, o, out_size):
    """Whether a convolution by ``family`` should split each step over the
    threads rather than the batch (see BY_POSITIONS)."""
    if family not in BY_POSITIONS:
        return False
    pieces = len(piece_bounds(x_shape[0])) - 1
    if pieces < len(piece_bounds(1 << 16)) - 1:   # fewer samples than threads
        return True
    th, tw = winograd.tiles(out_size, family)
    per_thread = x_shape[0] * th * tw / pieces
    channels = min(x_shape[1], o)
    return any(channels >= least and per_thread <= most
               for least, most in BY_POSITIONS[family])
