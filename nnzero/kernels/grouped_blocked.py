"""Grouped convolution at stride 1 with channels a multiple of 4 per group,
summed in blocks held in vector registers.

Notation as in ``grouped.py``: G groups of Cg input and Og output channels,
each input plane zero-padded and laid out flat at a padded width WP,
off_t = u*DH*WP + v*DW for kernel tap t = u*KW + v, and output position
q = i*WP + j (j < OW kept, the rest dropped). ``grouped.py`` sums one output
line at a time, loading and storing it once per input channel and tap group:
with 16 channels a group that ran at ~25 GFLOP/s on one core, where BLAS
reaches ~80. Here a block of 4 output channels by RP = 16 positions (eight
8-wide float32 registers; 64 positions in sixteen 16-wide ones where the
loops are compiled for 512-bit vectors, see RP) is summed over every tap and
input channel before it is stored:

    out[o, q] = sum_{t, c} img[c, q + off_t] * wt[c, t, o]          (forward)

each step of the (t, c) loop loading RP inputs, broadcasting 4 weights and
doing 4*RP multiply-adds (~85 GFLOP/s on one core of the AMD machine,
measured on 16 channels a group; 138-151 on the Intel one at RP = 64). The backward pass is two more sums. With dyl[o, LEAD + q]
the upstream gradient at q (zero at dropped positions and for the
LEAD = off_{T-1} positions before the first):

    dimg[c, p]  = sum_{t, o} dyl[o, p + LEAD - off_t] * w[o, c, t]   (the forward's form)
    dw[c, t, o] = sum_q img[c, q + off_t] * dyl[o, LEAD + q]

the first by the forward's loops with input and output channels swapped, the
second by ``grouped_dots.py`` (channels in registers, dy laid out channels
last where the output channels are the vector lanes).

A call computes all its samples group by group (a block of samples at a
time where their scratch would pass SCRATCH_BYTES): each group's planes of
every sample lie end to end, sample b's rows x WP region at b*L, so that the
loops above run over all of them as one long plane. The regions share their
padding: the zeros a window needs below the image are the next sample's top
padding rows, and those it needs right of a row are the next row's left
padding, where those suffice (``_geometry``; for 3x3 kernels with padding 1
a 14x14 image takes 15x15 cells, not 16x16). A dropped position may read
into the next row or sample; no kept one does, and dyl is zero at every
dropped one, so nothing reaches dw or dimg from them.

The accumulators are a small array on the stack that LLVM keeps in vector
registers (``register_cells.py``). numba turns the SLP vectoriser that packs
them off by default (some LLVM versions miscompiled with it), so these
kernels, and only they, are compiled with it on, and with 512-bit vectors
where the CPU has them (``_jit.compile_vectorized``); their tests compare
them with the NumPy twin. Without it they run as scalar code.

The compiled loop runs over a range of groups, split over the threads when
the caller has not split the batch (``_pool.split_kernel``); the twin is
``grouped.py``'s, which takes the same arguments. The public wrappers check
every shape and size the buffers, so no input can make the loops read or
write out of bounds.
"""
from __future__ import annotations

import numpy as np

from ._jit import JIT_ENABLED, compile_vectorized, njit
from ._pool import split_kernel
from .depthwise import check_output
from .grouped import _check, grouped_backward, grouped_forward
from .grouped_dots import channels_last, weight_sums
from .register_cells import ACC, RP, stack_cells
from .windows import copy_inside, copy_into_padded

BLOCK = 4                 # Og and Cg must be multiples of this


# Each loop over r below has a constant length, so that LLVM unrolls it and
# keeps the accumulators in registers; writing the four output channels out
# by hand (rather than a loop over them) is what let the SLP vectoriser pack
# them: a loop over 4 channels inside measured 20x slower, unvectorised.
@njit(fastmath={"contract"})
def _sums(src, wt, offs, out, lo, hi):
    """out[o, q] = sum_{t, c} src[c, q + offs[t]] * wt[c, t, o] for q in
    lo ... hi-1 (hi - lo a multiple of RP) and every o (a multiple of 4)."""
    cin, ntap, width = wt.shape
    acc = stack_cells(out)
    for o0 in range(0, width, 4):
        for q in range(lo, hi, RP):
            for i in range(ACC):
                acc[i] = 0
            for t in range(ntap):
                base = q + offs[t]
                for c in range(cin):
                    xs = src[c, base:base + RP]
                    w = wt[c, t, o0:o0 + 4]
                    w0, w1, w2, w3 = w[0], w[1], w[2], w[3]
                    for r in range(RP):
                        xv = xs[r]
                        acc[r] += w0 * xv
                        acc[RP + r] += w1 * xv
                        acc[2 * RP + r] += w2 * xv
                        acc[3 * RP + r] += w3 * xv
            for oi in range(4):
                d = out[o0 + oi, q:q + RP]
                for r in range(RP):
                    d[r] = acc[oi * RP + r]


# Positions are taken CHUNK at a time (each chunk through every block of
# channels) so that the chunk's planes stay in the core's cache.
CHUNK = 1024
assert CHUNK % RP == 0, "grouped_blocked: a chunk is whole blocks of positions"


@njit(inline="always")
def _load_group(x, g, ph, pw, rows, wp, img):
    """img[c, b*L:(b+1)*L] = sample b's plane of channel g*Cg + c placed at
    (ph, pw) in its rows x WP region (L = rows*WP), for every sample b of x;
    the padding and img's tail are left as they are (zero)."""
    cg = img.shape[0]
    plane = rows * wp
    for b in range(x.shape[0]):
        for c in range(cg):
            dst = img[c, b * plane:(b + 1) * plane].reshape(rows, wp)
            copy_into_padded(x[b, g * cg + c], dst, ph, pw)


@njit(inline="always")
def _positions(n, rows, wp):
    """How many positions of the samples' planes laid end to end are computed:
    all n planes, rounded up to a multiple of RP."""
    return -(-(n * rows * wp) // RP) * RP


@njit(fastmath={"contract"})
def _blocked_forward_range(x, wt, offs, bias, ph, pw, rows, wp, tail, y, lo, hi):
    """Groups lo ... hi-1 of the forward pass; wt (G, Cg, T, Og)."""
    n = x.shape[0]
    cg, og = wt.shape[1], wt.shape[3]
    oh, ow = y.shape[2], y.shape[3]
    plane = rows * wp
    total = _positions(n, rows, wp)
    img = np.zeros((cg, n * plane + tail), dtype=x.dtype)
    out = np.empty((og, total), dtype=y.dtype)
    for g in range(lo, hi):
        _load_group(x, g, ph, pw, rows, wp, img)
        for q in range(0, total, CHUNK):
            _sums(img, wt[g], offs, out, q, min(q + CHUNK, total))
        for b in range(n):
            for o in range(og):
                bb = bias[g * og + o]
                src = out[o, b * plane:(b + 1) * plane].reshape(rows, wp)
                dst = y[b, g * og + o]
                for i in range(oh):
                    row, line = dst[i], src[i]
                    for j in range(ow):
                        row[j] = line[j] + bb


@njit(fastmath={"contract"})
def _blocked_backward_range(x, wt, offs, dy, ph, pw, rows, wp, tail, dx, dw, db, lo, hi):
    """Groups lo ... hi-1 of the backward pass; wt (G, Og, T, Cg) (w[o, c, t]
    with the channels swapped), dw (G, Cg, T, Og) filled for those groups, and
    db (O,) with their channels' sums of dy unless it is empty (summed while
    dy is copied, as in ``grouped.py``)."""
    n = x.shape[0]
    cg, og = wt.shape[3], wt.shape[1]
    h, wd = x.shape[2], x.shape[3]
    oh, ow = dy.shape[2], dy.shape[3]
    ntap = offs.shape[0]
    lead = offs[ntap - 1]
    plane = rows * wp
    total = _positions(n, rows, wp)
    back = np.empty(ntap, dtype=offs.dtype)     # dimg's offsets into dyl
    for t in range(ntap):
        back[t] = lead - offs[t]
    img = np.zeros((cg, n * plane + tail), dtype=x.dtype)
    # dy laid out as the output positions, channels first (after LEAD zeros)
    # and, where ``weight_sums`` reads it so, channels last; only dy's cells
    # are written
    dyl = np.zeros((og, lead + n * plane + tail), dtype=dx.dtype)
    lanes = channels_last(cg, og)
    dyt = np.zeros((n * plane + tail if lanes else 0, og), dtype=dx.dtype)
    dimg = np.empty((cg, total), dtype=dx.dtype)
    cells = np.empty(ow, dtype=dx.dtype)   # a plane's column sums, for db
    for g in range(lo, hi):
        _load_group(x, g, ph, pw, rows, wp, img)
        if db.shape[0]:
            db[g * og:(g + 1) * og] = 0
        for b in range(n):
            src = dy[b, g * og:(g + 1) * og]
            for o in range(og):
                dst = dyl[o, lead + b * plane:lead + (b + 1) * plane].reshape(rows, wp)
                cells[:] = 0
                for i in range(oh):
                    row, line = dst[i], src[o, i]
                    for j in range(ow):
                        v = line[j]
                        row[j] = v
                        cells[j] += v
                if db.shape[0]:
                    db[g * og + o] += cells.sum()
            if lanes:
                for i in range(oh):
                    for j in range(ow):
                        cell = dyt[b * plane + i * wp + j]
                        for o in range(og):
                            cell[o] = src[o, i, j]
        part = dw[g]
        part[...] = 0
        for q in range(0, total, CHUNK):
            hi_q = min(q + CHUNK, total)
            weight_sums(img, dyl, lead, dyt, offs, part, q, hi_q)
            _sums(dyl, wt[g], back, dimg, q, hi_q)
        for b in range(n):
            for c in range(cg):
                src = dimg[c, b * plane:(b + 1) * plane].reshape(rows, wp)
                copy_inside(src, ph, pw, dx[b, g * cg + c])


_forward_numba, _forward_serial = split_kernel(
    _blocked_forward_range, lambda x, wt, *rest: wt.shape[0])
_backward_numba, _backward_serial = split_kernel(
    _blocked_backward_range, lambda x, wt, *rest: wt.shape[0])


def applies(in_per_group, out_per_group):
    """Whether these loops can compute a stride-1 grouped convolution."""
    return in_per_group % BLOCK == 0 and out_per_group % BLOCK == 0


def _geometry(x, w, out_hw, padding, dilation):
    """(rows, WP, offsets, tail) for this convolution: each sample's region of
    the planes laid end to end is rows x WP, and the tail past the last one
    holds what the last block of positions reads (see the module)."""
    h, wd = x.shape[2:]
    kh, kw = w.shape[2:]
    (ph, pw), (dh, dw) = padding, dilation
    oh, ow = out_hw
    # The zeros a window needs past the image's last row (column) are the next
    # sample's top rows (the next row's left columns) where those suffice.
    below = (oh - 1) + (kh - 1) * dh + 1 - (ph + h)
    right = (ow - 1) + (kw - 1) * dw + 1 - (pw + wd)
    rows = max(ph + h + max(0, below - ph), oh)
    wp = max(pw + wd + max(0, right - pw), ow)
    offs = np.array([u * dh * wp + v * dw for u in range(kh) for v in range(kw)], dtype=np.int64)
    return rows, wp, offs, RP + int(offs[-1])


# The scratch planes of a call hold one group's channels of all its samples
# (four such buffers in the backward pass); a call with more samples than
# keep each under SCRATCH_BYTES runs them a block at a time, so that a large
# batch on one thread does not take a copy of the input's size.
SCRATCH_BYTES = 32 << 20


def _sample_chunks(n, channels, plane, itemsize):
    """(lo, hi) blocks of the n samples, each sample's scratch channels*plane cells."""
    per = max(1, SCRATCH_BYTES // (channels * plane * itemsize))
    return [(lo, min(lo + per, n)) for lo in range(0, n, per)]


def _check_blocks(w, groups):
    o, cg = w.shape[:2]
    if not applies(cg, o // groups):
        raise ValueError(f"grouped_blocked: channels per group must be multiples of {BLOCK}, "
                         f"got {cg} in and {o // groups} out")


def blocked_forward(x, w, bias, groups, padding, dilation, y, serial=False):
    """``grouped.grouped_forward`` for channels per group a multiple of 4."""
    _check(x, w, y, groups, padding, dilation)
    check_output("grouped_blocked", y, bias, w.shape[0])
    _check_blocks(w, groups)
    if not y.size:
        return y
    if not JIT_ENABLED:   # grouped.py's wrapper hands out the twin then
        return grouped_forward(x, w, bias, groups, padding, dilation, y)
    x, bias = np.ascontiguousarray(x), np.ascontiguousarray(bias)
    o, cg, kh, kw = w.shape
    rows, wp, offs, tail = _geometry(x, w, y.shape[2:], padding, dilation)
    wt = np.ascontiguousarray(w.reshape(groups, o // groups, cg, kh * kw).transpose(0, 2, 3, 1))
    for lo, hi in _sample_chunks(x.shape[0], max(cg, o // groups), rows * wp, y.itemsize):
        args = (x[lo:hi], wt, offs, bias, padding[0], padding[1], rows, wp, tail, y[lo:hi])
        compile_vectorized(_blocked_forward_range, args + (0, 0), wide=True)
        (_forward_serial if serial else _forward_numba)(*args)
    return y


def blocked_backward(x, w, dy, groups, padding, dilation, dx, serial=False, db=None):
    """``grouped.grouped_backward`` for channels per group a multiple of 4
    (``db`` as there)."""
    _check(x, w, dy, groups, padding, dilation)
    _check_blocks(w, groups)
    if dx.shape != x.shape or not dx.flags.c_contiguous:
        raise ValueError(f"grouped_blocked: dx must be C-contiguous of shape {x.shape}, "
                         f"got {dx.shape}")
    o, cg, kh, kw = w.shape
    if db is not None and db.shape != (o,):
        raise ValueError(f"grouped_blocked: db must have shape {(o,)}, got {db.shape}")
    if not JIT_ENABLED:
        return grouped_backward(x, w, dy, groups, padding, dilation, dx, db=db)
    if not (dx.size and dy.size):
        dx[...] = 0
        if db is not None:
            db[...] = 0
        return np.zeros_like(w, dtype=dx.dtype)
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    rows, wp, offs, tail = _geometry(x, w, dy.shape[2:], padding, dilation)
    wt = np.ascontiguousarray(w.reshape(groups, o // groups, cg, kh * kw).transpose(0, 1, 3, 2))
    dw = np.empty((groups, cg, kh * kw, o // groups), dtype=dx.dtype)
    db_chunk = np.empty(o if db is not None else 0, dtype=dx.dtype)
    total = None
    for lo, hi in _sample_chunks(x.shape[0], max(cg, o // groups), rows * wp, dx.itemsize):
        args = (x[lo:hi], wt, offs, dy[lo:hi], padding[0], padding[1], rows, wp, tail,
                dx[lo:hi], dw, db_chunk)
        compile_vectorized(_blocked_backward_range, args + (0, 0), wide=True)
        (_backward_serial if serial else _backward_numba)(*args)
        total = dw.copy() if total is None else total + dw
        if db is not None:
            if lo == 0:
                db[...] = db_chunk
            else:
                db += db_chunk
    # (G, Cg, T, Og) -> (O, Cg, KH, KW)
    return np.ascontiguousarray(total.transpose(0, 3, 1, 2)).reshape(w.shape)
