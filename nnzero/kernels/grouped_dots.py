"""The weight gradient's sums of the blocked grouped loops
(``grouped_blocked.py``, notation there):

    dw[c, t, o] = sum_q img[c, q + off_t] * dy[o, q]

over a chunk of positions q, for one group, added into ``part`` (Cg, T, Og).
Four forms, by how many channels a block holds in registers
(``register_cells.py``):

- ``_dots16``: dy laid out channels last (et[q, o]), 4 input by 16 output
  channels, the output channels as the vector lanes, so nothing is added
  across lanes (2x ``_dots``'s speed: 79 against 39 GFLOP/s on 16 by 16
  channels). Eight-channel forms of it, and of the forward's blocks, did not
  vectorise at 256 bits.
- ``_dots16x8``: the same with 8 input channels, where the loops have 512-bit
  vectors (``_jit.WIDE_VECTORS``): each input channel's 16 output channels
  are then one register, and 4 of them cannot cover the multiply-add latency
  (100-103 against 79-85 GFLOP/s, Intel machine, one thread).
- ``_dots8``: 8 output channels as the lanes, 8 input channels, with 512-bit
  vectors (45 against 35 for ``_dots`` on 8 by 8 channels).
- ``_dots``: dy channels first, 2 by 2 channels by RP positions, added across
  the lanes at the end (one by one: the slowest form), for the rest.

``weight_sums`` picks the form; ``channels_last`` says whether it needs dy
channels last.
"""
from __future__ import annotations

from ._jit import WIDE_VECTORS, njit
from .register_cells import ACC, RP, stack_cells


@njit(inline="always")
def channels_last(cin, width):
    """Whether ``weight_sums`` reads dy channels last (et) for Cg = cin and
    Og = width, rather than channels first (e)."""
    return width % 16 == 0 or (WIDE_VECTORS and width % 8 == 0 and cin % 8 == 0)


@njit(inline="always")
def weight_sums(src, e, shift, et, offs, part, lo, hi):
    """part[c, t, o] += sum_q src[c, q + offs[t]] * dy[o, q] for q in lo ... hi-1,
    dy given as e[o, shift + q] (channels first) or et[q, o] (channels last,
    as ``channels_last`` says)."""
    cin, width = part.shape[0], part.shape[2]
    if width % 16 == 0 and WIDE_VECTORS and cin % 8 == 0:
        _dots16x8(src, et, offs, part, lo, hi)
    elif width % 16 == 0:
        _dots16(src, et, offs, part, lo, hi)
    elif channels_last(cin, width):
        _dots8(src, et, offs, part, lo, hi)
    else:
        _dots(src, e, shift, offs, part, lo, hi)


@njit(fastmath={"contract"})
def _dots(src, e, shift, offs, part, lo, hi):
    """part[c, t, o] += sum_q src[c, q + offs[t]] * e[o, shift + q] for q in
    lo ... hi-1 (a multiple of RP); Cg and Og even. (e is whole, not a view
    starting at shift: a 2-D view is not contiguous, and numba then does not
    vectorise the loop.)"""
    cin, ntap, width = part.shape
    acc = stack_cells(e)
    for t in range(ntap):
        off = offs[t]
        for o0 in range(0, width, 2):
            for c0 in range(0, cin, 2):
                for i in range(ACC):
                    acc[i] = 0
                for q in range(lo, hi, RP):
                    x0 = src[c0, q + off:q + off + RP]
                    x1 = src[c0 + 1, q + off:q + off + RP]
                    e0 = e[o0, shift + q:shift + q + RP]
                    e1 = e[o0 + 1, shift + q:shift + q + RP]
                    for r in range(RP):
                        a, b, d0, d1 = x0[r], x1[r], e0[r], e1[r]
                        acc[r] += a * d0
                        acc[RP + r] += a * d1
                        acc[2 * RP + r] += b * d0
                        acc[3 * RP + r] += b * d1
                s00 = s01 = s10 = s11 = acc[0] * 0
                for r in range(RP):
                    s00 += acc[r]
                    s01 += acc[RP + r]
                    s10 += acc[2 * RP + r]
                    s11 += acc[3 * RP + r]
                part[c0, t, o0] += s00
                part[c0, t, o0 + 1] += s01
                part[c0 + 1, t, o0] += s10
                part[c0 + 1, t, o0 + 1] += s11


@njit(fastmath={"contract"})
def _dots16(src, et, offs, part, lo, hi):
    """part[c, t, o] += sum_q src[c, q + offs[t]] * et[q, o] for q in lo ... hi-1:
    ``_dots`` with dy laid out channels last, for Og a multiple of 16 and Cg
    of 4. 4 input by 16 output channels in registers,
    the 16 output channels as the vector lanes, so nothing is added across
    lanes (measured 2x ``_dots``'s speed: 79 against 39 GFLOP/s on 16 by 16
    channels). Eight-channel forms of it, and of the forward's blocks, did
    not vectorise."""
    cin, ntap, width = part.shape
    acc = stack_cells(et)
    n = hi - lo
    for t in range(ntap):
        off = offs[t]
        for o0 in range(0, width, 16):
            for c0 in range(0, cin, 4):
                r0 = src[c0, lo + off:hi + off]
                r1 = src[c0 + 1, lo + off:hi + off]
                r2 = src[c0 + 2, lo + off:hi + off]
                r3 = src[c0 + 3, lo + off:hi + off]
                for i in range(ACC):
                    acc[i] = 0
                for k in range(n):
                    ev = et[lo + k, o0:o0 + 16]
                    x0, x1, x2, x3 = r0[k], r1[k], r2[k], r3[k]
                    for o in range(16):
                        v = ev[o]
                        acc[o] += x0 * v
                        acc[16 + o] += x1 * v
                        acc[32 + o] += x2 * v
                        acc[48 + o] += x3 * v
                for o in range(16):
                    part[c0, t, o0 + o] += acc[o]
                    part[c0 + 1, t, o0 + o] += acc[16 + o]
                    part[c0 + 2, t, o0 + o] += acc[32 + o]
                    part[c0 + 3, t, o0 + o] += acc[48 + o]


@njit(fastmath={"contract"})
def _dots16x8(src, et, offs, part, lo, hi):
    """``_dots16`` with 8 input channels in registers (Cg a multiple of 8): with
    512-bit vectors each input channel's 16 output channels are one register,
    and 4 of them cannot cover the multiply-add latency; 8 can."""
    cin, ntap, width = part.shape
    acc = stack_cells(et)
    n = hi - lo
    for t in range(ntap):
        off = offs[t]
        for o0 in range(0, width, 16):
            for c0 in range(0, cin, 8):
                r0 = src[c0, lo + off:hi + off]
                r1 = src[c0 + 1, lo + off:hi + off]
                r2 = src[c0 + 2, lo + off:hi + off]
                r3 = src[c0 + 3, lo + off:hi + off]
                r4 = src[c0 + 4, lo + off:hi + off]
                r5 = src[c0 + 5, lo + off:hi + off]
                r6 = src[c0 + 6, lo + off:hi + off]
                r7 = src[c0 + 7, lo + off:hi + off]
                for i in range(128):
                    acc[i] = 0
                for k in range(n):
                    ev = et[lo + k, o0:o0 + 16]
                    x0, x1, x2, x3 = r0[k], r1[k], r2[k], r3[k]
                    x4, x5, x6, x7 = r4[k], r5[k], r6[k], r7[k]
                    for o in range(16):
                        v = ev[o]
                        acc[o] += x0 * v
                        acc[16 + o] += x1 * v
                        acc[32 + o] += x2 * v
                        acc[48 + o] += x3 * v
                        acc[64 + o] += x4 * v
                        acc[80 + o] += x5 * v
                        acc[96 + o] += x6 * v
                        acc[112 + o] += x7 * v
                for o in range(16):
                    part[c0, t, o0 + o] += acc[o]
                    part[c0 + 1, t, o0 + o] += acc[16 + o]
                    part[c0 + 2, t, o0 + o] += acc[32 + o]
                    part[c0 + 3, t, o0 + o] += acc[48 + o]
                    part[c0 + 4, t, o0 + o] += acc[64 + o]
                    part[c0 + 5, t, o0 + o] += acc[80 + o]
                    part[c0 + 6, t, o0 + o] += acc[96 + o]
                    part[c0 + 7, t, o0 + o] += acc[112 + o]


@njit(fastmath={"contract"})
def _dots8(src, et, offs, part, lo, hi):
    """``_dots16x8`` for 8 output channels as the lanes (Og a multiple of 8,
    Cg of 8): 8 input channels' 8-wide sums in registers."""
    cin, ntap, width = part.shape
    acc = stack_cells(et)
    n = hi - lo
    for t in range(ntap):
        off = offs[t]
        for o0 in range(0, width, 8):
            for c0 in range(0, cin, 8):
                r0 = src[c0, lo + off:hi + off]
                r1 = src[c0 + 1, lo + off:hi + off]
                r2 = src[c0 + 2, lo + off:hi + off]
                r3 = src[c0 + 3, lo + off:hi + off]
                r4 = src[c0 + 4, lo + off:hi + off]
                r5 = src[c0 + 5, lo + off:hi + off]
                r6 = src[c0 + 6, lo + off:hi + off]
                r7 = src[c0 + 7, lo + off:hi + off]
                for i in range(64):
                    acc[i] = 0
                for k in range(n):
                    ev = et[lo + k, o0:o0 + 8]
                    x0, x1, x2, x3 = r0[k], r1[k], r2[k], r3[k]
                    x4, x5, x6, x7 = r4[k], r5[k], r6[k], r7[k]
                    for o in range(8):
                        v = ev[o]
                        acc[o] += x0 * v
                        acc[8 + o] += x1 * v
                        acc[16 + o] += x2 * v
                        acc[24 + o] += x3 * v
                        acc[32 + o] += x4 * v
                        acc[40 + o] += x5 * v
                        acc[48 + o] += x6 * v
                        acc[56 + o] += x7 * v
                for o in range(8):
                    part[c0, t, o0 + o] += acc[o]
                    part[c0 + 1, t, o0 + o] += acc[8 + o]
                    part[c0 + 2, t, o0 + o] += acc[16 + o]
                    part[c0 + 3, t, o0 + o] += acc[24 + o]
                    part[c0 + 4, t, o0 + o] += acc[32 + o]
                    part[c0 + 5, t, o0 + o] += acc[40 + o]
                    part[c0 + 6, t, o0 + o] += acc[48 + o]
                    part[c0 + 7, t, o0 + o] += acc[56 + o]
