"""Padded planes and window views: the inline loops every kernel module shares.

Notation as in ``im2col.py``. A kernel copies an image plane into a
zero-padded scratch plane (``padded_size``, ``copy_into_padded``) so that
every window row is one whole copy with no bounds to work out, reads the
cells each kernel offset sees as one 2-D view (``gather_window``; or, for a
block of planes side by side, ``gather_block``/``add_block``), and copies a
summed padded plane's inside back out (``copy_inside``).
"""
from __future__ import annotations

from ._jit import njit


@njit(inline="always")
def padded_size(h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """Rows and columns of a zero-padded plane holding the image at (PH, PW)
    and every window of the OH x OW grid."""
    return (max(ph + h, (oh - 1) * sh + (kh - 1) * dh + 1),
            max(pw + w, (ow - 1) * sw + (kw - 1) * dw + 1))


@njit(inline="always")
def copy_into_padded(plane, img, ph, pw):
    """img[ph:ph+H, pw:pw+W] = plane, row by row (img's border is left as it is)."""
    h, w = plane.shape
    for r in range(h):
        inside = img[ph + r, pw:pw + w]
        src = plane[r]
        for q in range(w):
            inside[q] = src[q]


@njit(inline="always")
def start_gradient_plane(x, nc, img, grad, ph, pw):
    """The first step of a backward loop over planes ``nc = b*C + ch``: copy
    x[b, ch] into img's inside and zero the padded gradient plane; returns
    ``(b, ch)``."""
    c = x.shape[1]
    b = nc // c
    ch = nc - b * c
    copy_into_padded(x[b, ch], img, ph, pw)
    for r in range(grad.shape[0]):
        row = grad[r]
        for q in range(grad.shape[1]):
            row[q] = 0
    return b, ch


@njit(inline="always")
def copy_inside(img, ph, pw, plane):
    """plane = img[ph:ph+H, pw:pw+W], row by row: the reverse of ``copy_into_padded``."""
    h, w = plane.shape
    for r in range(h):
        inside = img[ph + r, pw:pw + w]
        out = plane[r]
        for q in range(w):
            out[q] = inside[q]


# The copies below run over views indexed from 0 by the loop counters only
# (dst[i, q] = src[i, q], or src[i, 2*q] for stride 2, its own loop so the step
# is a constant): numba must test every possibly-negative index for Python's
# wraparound, and that test kept the old form (out[base + j] = src[j * sw + off])
# from vectorising. One 2-D view per kernel offset, not one slice per window
# row: a slice costs a few dozen instructions to make, as much as copying a
# 16-wide row (one thread, interleaved, 7 rounds: im2col 1.15-1.5x faster on
# conv_strided, conv_stem, convT_up's and a dilated layer's shapes, 2x at
# stride 3; col2im 1.2-1.4x at stride 1, the same at stride 2).
#
# im2col first copies each plane into a zero-padded one, so every window row
# is one whole copy with no bounds to work out (measured on one thread,
# interleaved against clipping each row to the image: 1.25-1.9x faster at
# stride 1, 1.4x at stride 2, equal at stride 3). col2im does the same at
# stride 1 (adds into a padded plane, copies its inside out: 1.1-1.35x faster)
# but keeps the clipped rows for wider strides, where the padded form measured
# 1.3x slower: there the columns hold a quarter as much per plane, and zeroing
# the padded plane and copying its inside out cost as much as the additions.
# Since 2026-11-29 column stride 2 has a form of its own where both column
# phases are read (below): each window row is then one contiguous run.


@njit(inline="always")
def gather_window(img, r0, c0, sh, sw, out):
    """out (OH, OW) = the cells of padded ``img`` one kernel offset reads, rows
    r0, r0+SH, ... and columns c0, c0+SW, ...: one 2-D view and loop per offset."""
    oh, ow = out.shape
    if sw == 1:
        src = img[r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + ow]
        for i in range(oh):
            for q in range(ow):
                out[i, q] = src[i, q]
    elif sw == 2:   # (unless ``phased``: see below)
        src = img[r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + 2 * ow - 1]
        for i in range(oh):
            for q in range(ow):
                out[i, q] = src[i, 2 * q]
    else:
        src = img[r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + (ow - 1) * sw + 1:sw]
        for i in range(oh):
            for q in range(ow):
                out[i, q] = src[i, q]


# At column stride 2 every window row reads every other cell of its padded
# row, a strided gather (and col2im a strided scatter-add). Split into its
# two column phases, padded column c at phases[c % 2, :, c // 2], the padded
# plane gives each kernel offset one contiguous run per row instead: offset
# column c0 reads phase c0 % 2 from column c0 // 2 on. Only where every
# phase is read (``phased``): a 1x1 kernel, or an even dilation, reads one,
# and splitting the whole plane for it made a 1x1 stride-2 layer's im2col and
# col2im 1.8-1.9x slower. Measured (2026-11-29, the Intel machine, one thread,
# sample-major columns, medians of 21, two runs each, against the strided
# loops): 3x3 on 16x64x32x32 im2col 0.92-0.96 and col2im 0.73-0.78, on
# 8x64x56x56 0.98 and 0.72; 7x7 on 4x3x224x224 (a stem) 0.76 and 0.40.
# Layers, forward and backward, interleaved in separate processes, 5-7
# rounds: conv_strided 0.95-0.97 of the time, a 7x7 stride-2 stem
# (8x3x224x224 -> 64) 0.93, 64 -> 128 on 56x56 0.99. The batch-minor kernels
# keep the strided loops: there the phases gained nothing in im2col, and in
# col2im 0.84 on 32x32 planes but lost 1.2x on 8x8 ones.
@njit(inline="always")
def phased(kw, sw, dw):
    """Whether the kernels work on the column phases: stride 2 and both read."""
    return sw == 2 and kw > 1 and dw % 2 == 1


@njit(inline="always")
def _phase_run(p, pw, w):
    """(q0, count, start): the image columns q0, q0 + 2, ... (count of them)
    lie in column phase p of the padded plane, from its column ``start``."""
    q0 = (p - pw) % 2
    return q0, (w - q0 + 1) // 2, (pw + q0) // 2


@njit(inline="always")
def copy_into_phases(plane, phases, ph, pw):
    """The column phases of the padded plane that holds ``plane`` at (PH, PW):
    phases[p, PH + r, (PW + q) // 2] = plane[r, q] for (PW + q) % 2 == p
    (the cells outside the image are left as they are)."""
    h, w = plane.shape
    for p in range(2):
        q0, count, start = _phase_run(p, pw, w)
        for r in range(h):
            dst = phases[p, ph + r, start:start + count]
            src = plane[r]
            for j in range(count):
                dst[j] = src[q0 + 2 * j]


@njit(inline="always")
def copy_from_phases(phases, ph, pw, plane):
    """``plane`` = the image cells of the padded plane held as column phases
    (the inverse of ``copy_into_phases``)."""
    h, w = plane.shape
    for p in range(2):
        q0, count, start = _phase_run(p, pw, w)
        for r in range(h):
            src = phases[p, ph + r, start:start + count]
            dst = plane[r]
            for j in range(count):
                dst[q0 + 2 * j] = src[j]


# The batch-minor layout (kmajor) holds row k of every sample side by side, so
# a plane's KH*KW rows lie N*L values apart. Visited sample by sample, its
# small planes wrote each cache line of the columns on its own, far from the
# last (im2col 12.4 ms against 5 for 16 samples of 512 4x4 planes, one
# thread). The kernels there take one channel of SB samples at a time instead,
# padded side by side in SAMPLE_BLOCK values of scratch, so that each kernel
# offset is one loop writing (or reading) SB*L consecutive values of its row.
# Measured on one thread against the plane-by-plane loops in channel order,
# 16 samples, 3x3 kernels, 7 rounds: im2col 0.24-0.31 on 512 4x4 planes,
# 0.37-0.48 on 8x8 at stride 2, 0.4-0.72 at stride 1, 0.55-0.95 on 16x16 at
# stride 2, 0.69-0.81 on 14x14, 0.82-1.01 on 64 16x16 planes, 0.85-0.88 on
# 112x112 at stride 2 (one sample per block there); col2im (always through
# padded planes here) 0.26-0.49, 0.29-0.31, 0.48-0.67, 0.5-0.69, 0.64-0.66,
# 0.47-0.62 and 0.76-0.87.
SAMPLE_BLOCK = 4096


@njit(inline="always")
def sample_block(n, hp, wp):
    """Samples per block of the batch-minor kernels: SB*HP*WP <= SAMPLE_BLOCK, SB >= 1."""
    return max(1, min(n, SAMPLE_BLOCK // (hp * wp)))


@njit(inline="always")
def block_unit(unit, blocks, sb, n):
    """(channel, first sample, end sample) of a unit of the batch-minor kernels:
    units run channel by channel, each channel's samples in ``blocks`` blocks of SB."""
    ch = unit // blocks
    b0 = (unit - ch * blocks) * sb
    return ch, b0, min(n, b0 + sb)


@njit(inline="always")
def gather_block(img, r0, c0, sh, sw, out):
    """``gather_window`` for a block of padded planes: out (SB, OH, OW)."""
    m, oh, ow = out.shape
    if sw == 1:
        src = img[:, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + ow]
        for j in range(m):
            for i in range(oh):
                for q in range(ow):
                    out[j, i, q] = src[j, i, q]
    elif sw == 2:
        src = img[:, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + 2 * ow - 1]
        for j in range(m):
            for i in range(oh):
                for q in range(ow):
                    out[j, i, q] = src[j, i, 2 * q]
    else:
        src = img[:, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + (ow - 1) * sw + 1:sw]
        for j in range(m):
            for i in range(oh):
                for q in range(ow):
                    out[j, i, q] = src[j, i, q]


@njit(inline="always")
def add_block(col, r0, c0, sh, sw, img):
    """The reverse of ``gather_block``: padded planes += the cells col (SB, OH, OW) came from."""
    m, oh, ow = col.shape
    if sw == 1:
        dst = img[:, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + ow]
        for j in range(m):
            for i in range(oh):
                for q in range(ow):
                    dst[j, i, q] += col[j, i, q]
    elif sw == 2:
        dst = img[:, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + 2 * ow - 1]
        for j in range(m):
            for i in range(oh):
                for q in range(ow):
                    dst[j, i, 2 * q] += col[j, i, q]
    else:
        dst = img[:, r0:r0 + (oh - 1) * sh + 1:sh, c0:c0 + (ow - 1) * sw + 1:sw]
        for j in range(m):
            for i in range(oh):
                for q in range(ow):
                    dst[j, i, q] += col[j, i, q]
