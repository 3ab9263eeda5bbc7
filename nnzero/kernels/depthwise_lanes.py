"""Depthwise convolution at stride 1 with 8 channels side by side in each
vector (16 in 512-bit vectors, where the CPU has them), for small planes.

Notation as in ``depthwise.py``. ``grouped.py``'s loops sum one plane at a
time along its rows; on a 7x7 plane that is ~490 cycles of copies and short
loops for 441 multiply-adds (one thread's 8 samples of a 960-channel layer:
1.25 ms forward, where PyTorch's oneDNN kernels take 0.45). oneDNN lays the
channels of a position side by side; so does this module. For each block of
L = 8 channels (16 with ``_jit.WIDE_VECTORS``: 0.86-0.91 of the layers' time
on the Intel machine, conv_dw7's shape 0.91) and each sample, the block's
planes are transposed into a zero-padded plane P of cells of L values
(P[r, s, k] = x[c0 + k, r - PH, s - PW]), and

    y[c0 + k, i, j] = b[c0 + k] + sum_{u,v} w[c0 + k, u, v] * P[i + u*DH, j + v*DW, k]

is, for a run of 8 output positions, 8L independent sums: one vector
multiply-add per position and tap, the L channels' weights in the lanes.
The backward pass is the same sums twice over the padded planes of dy (D,
dy placed at (TH, TW) = ((KH-1)*DH - PH, (KW-1)*DW - PW), or 0 where
those are negative, and read from there):

    dx[c0 + k, i, j] = sum_{u,v} w[c0 + k, KH-1-u, KW-1-v] * D[i + u*DH + RH, j + v*DW + RW, k]
    dw[c0 + k, u, v] = sum_{n,i,j} D[TH + i, TW + j, k] * P[i + u*DH, j + v*DW, k]

with (RH, RW) = (PH + TH - (KH-1)*DH, PW + TW - (KW-1)*DW). The output
runs are rounded up to 8 positions (OWP); the cells past the output are
computed and dropped, and D is zero there, so they add nothing to dw.

The sums are fast (960x7x7, 8 samples: 0.21 ms); the transposes are not
(numba has no shuffles: ~1.3 cycles a value), which is why only small planes
come here (``functional/direct.py``'s rule). The accumulators are an
8L-cell array on the stack, packed into vector registers by LLVM's SLP
vectoriser (``_jit.compile_vectorized``, ``register_cells.py``); each tap's
weights are stored repeated over the 8L cells (``acc[r] += wt[r] * s[r]``):
with 8 weights read per tap the vectoriser packed the sums along the
positions instead, with gathers (3 GMAC/s against ~20).

The compiled loops run over a range of channel blocks, split over the
threads when the caller has not split the batch (``_pool.split_kernel``);
the twin is ``grouped.py``'s with groups = C. The wrappers check every shape
and size the buffers, so no input can make the loops read or write out of
bounds.
"""
from __future__ import annotations

import numpy as np

from ._jit import JIT_ENABLED, WIDE_VECTORS, compile_vectorized, njit
from ._pool import split_kernel
from .depthwise import check_output
from .grouped import _check, grouped_backward, grouped_forward
from .register_cells import ACC, stack_cells

L = 16 if WIDE_VECTORS else 8   # channels a block (the vector lanes)
J = 8                     # output positions a run
CELLS = L * J             # the accumulators (stack_cells' first cells)
assert CELLS <= ACC, "depthwise_lanes: the accumulators must fit the stack cells"


@njit(inline="always")
def _transpose(a, b, c0, buf, r0, s0, wp, into_lanes):
    """buf[((r0 + i)*wp + s0 + j)*L + k] = a[b, c0 + k, i, j] for the block's
    channels (into_lanes), or the reverse: a transpose, scalar, through 8 row
    views and 8 lanes of one cell of buf at a time."""
    c, h, w = a.shape[1], a.shape[2], a.shape[3]
    for k0 in range(0, L, 8):
        ck = c0 + k0
        if c - ck < 8:   # the last channels, short of 8 (or none)
            for k in range(k0, min(L, c - c0)):
                for i in range(h):
                    line = a[b, c0 + k, i]
                    base = ((r0 + i) * wp + s0) * L + k
                    for j in range(w):
                        if into_lanes:
                            buf[base + j * L] = line[j]
                        else:
                            line[j] = buf[base + j * L]
            return
        p0, p1, p2, p3 = a[b, ck], a[b, ck + 1], a[b, ck + 2], a[b, ck + 3]
        p4, p5, p6, p7 = a[b, ck + 4], a[b, ck + 5], a[b, ck + 6], a[b, ck + 7]
        for i in range(h):
            a0, a1, a2, a3 = p0[i], p1[i], p2[i], p3[i]
            a4, a5, a6, a7 = p4[i], p5[i], p6[i], p7[i]
            row = buf[((r0 + i) * wp + s0) * L:((r0 + i) * wp + s0 + w) * L]
            for j in range(w):
                cell = row[j * L + k0:j * L + k0 + 8]
                if into_lanes:
                    cell[0], cell[1], cell[2], cell[3] = a0[j], a1[j], a2[j], a3[j]
                    cell[4], cell[5], cell[6], cell[7] = a4[j], a5[j], a6[j], a7[j]
                else:
                    a0[j], a1[j], a2[j], a3[j] = cell[0], cell[1], cell[2], cell[3]
                    a4[j], a5[j], a6[j], a7[j] = cell[4], cell[5], cell[6], cell[7]


@njit(fastmath={"contract"})
def _sums(P, wp, wb, start, kh, kw, dh, dw, r0, s0, oh, owp, Y):
    """Y[(i*owp + j)*L + k] = start[k] + sum_{u,v} wb[u*kw + v, k] *
    P[i + r0 + u*dh, j + s0 + v*dw, k] for i < oh, j < owp (wb and start
    repeated over the J positions of a run: (T, CELLS) and (CELLS,))."""
    acc = stack_cells(Y)
    for i in range(oh):
        for j0 in range(0, owp, J):
            for r in range(CELLS):
                acc[r] = start[r]
            for u in range(kh):
                rb = ((i + r0 + u * dh) * wp + j0 + s0) * L
                for v in range(kw):
                    wt = wb[u * kw + v]
                    base = rb + v * dw * L
                    s = P[base:base + CELLS]
                    for r in range(CELLS):
                        acc[r] += wt[r] * s[r]
            d = Y[(i * owp + j0) * L:(i * owp + j0 + J) * L]
            for r in range(CELLS):
                d[r] = acc[r]


@njit(fastmath={"contract"})
def _tap_sums(D, P, wp, kh, kw, dh, dw, th, tw, oh, owp, part):
    """part[u*kw + v, k] += sum_{i < oh, j < owp} D[th + i, tw + j, k] *
    P[i + u*dh, j + v*dw, k] (both planes wp cells wide)."""
    acc = stack_cells(part)
    for u in range(kh):
        for v in range(kw):
            for r in range(CELLS):
                acc[r] = 0
            for i in range(oh):
                db = ((th + i) * wp + tw) * L
                pb = ((i + u * dh) * wp + v * dw) * L
                for j0 in range(0, owp * L, CELLS):
                    e = D[db + j0:db + j0 + CELLS]
                    s = P[pb + j0:pb + j0 + CELLS]
                    for r in range(CELLS):
                        acc[r] += e[r] * s[r]
            t = u * kw + v
            for k in range(L):
                total = acc[k]
                for q in range(1, J):
                    total += acc[q * L + k]
                part[t, k] += total


@njit(fastmath={"contract"})
def _lanes_forward_range(x, wl, bl, kh, kw, ph, pw, dh, dw, hp, wp, owp, y, lo, hi):
    """Channel blocks lo ... hi-1 of the forward pass; wl (NB, T, CELLS) and
    bl (NB, CELLS), repeated over a run's positions."""
    oh = y.shape[2]
    P = np.zeros((hp * wp + J) * L, dtype=x.dtype)   # the padding stays 0
    Y = np.empty(oh * owp * L, dtype=y.dtype)
    for cb in range(lo, hi):
        for b in range(x.shape[0]):
            _transpose(x, b, cb * L, P, ph, pw, wp, True)
            _sums(P, wp, wl[cb], bl[cb], kh, kw, dh, dw, 0, 0, oh, owp, Y)
            _transpose(y, b, cb * L, Y, 0, 0, owp, False)


@njit(inline="always")
def _add_cells(buf, r0, s0, rows, cols, wp, acc):
    """acc[k] += lane k summed over the rows x cols cells of buf from (r0, s0)
    (acc on the stack, so that each cell is one vector add)."""
    for i in range(rows):
        base = ((r0 + i) * wp + s0) * L
        for j in range(cols):
            cell = base + j * L
            for k in range(L):
                acc[k] += buf[cell + k]


@njit(fastmath={"contract"})
def _lanes_backward_range(x, wl, wf, kh, kw, ph, pw, dh, dw, wp, owp, dy, th, tw, rh, rw, hd,
                          owpx, dx, dwl, dbl, lo, hi):
    """Channel blocks lo ... hi-1 of the backward pass: dx, and dwl (NB, T, L)
    for those blocks (the call's samples summed); wf is wl with the taps
    mirrored. Both planes, P (x) and D (dy), are hd x wp cells. Unless dbl
    (NB, L) is empty, its rows get the blocks' bias gradients: D's cells
    summed lane by lane over dy's cells."""
    oh, h = dy.shape[2], x.shape[2]
    P = np.zeros((hd * wp + J) * L, dtype=x.dtype)
    D = np.zeros((hd * wp + J) * L, dtype=dx.dtype)
    Y = np.empty(h * owpx * L, dtype=dx.dtype)
    none = np.zeros(CELLS, dtype=dx.dtype)
    acc = stack_cells(dx)
    ow = dy.shape[3]
    for cb in range(lo, hi):
        part = dwl[cb]
        part[...] = 0
        for k in range(L):
            acc[k] = 0
        for b in range(x.shape[0]):
            _transpose(x, b, cb * L, P, ph, pw, wp, True)
            _transpose(dy, b, cb * L, D, th, tw, wp, True)
            if dbl.shape[0]:
                _add_cells(D, th, tw, oh, ow, wp, acc)
            _sums(D, wp, wf[cb], none, kh, kw, dh, dw, rh, rw, h, owpx, Y)
            _transpose(dx, b, cb * L, Y, 0, 0, owpx, False)
            _tap_sums(D, P, wp, kh, kw, dh, dw, th, tw, oh, owp, part)
        if dbl.shape[0]:
            for k in range(L):
                dbl[cb, k] = acc[k]


_forward_numba, _forward_serial = split_kernel(_lanes_forward_range,
                                               lambda x, wl, *rest: wl.shape[0])
_backward_numba, _backward_serial = split_kernel(_lanes_backward_range,
                                                 lambda x, wl, *rest: wl.shape[0])


def _geometry(x_hw, out_hw, kernel, padding, dilation):
    """The planes of the backward pass (and of the forward, which needs
    fewer rows): (hd, wp, owp, owpx, (th, tw), (rh, rw)); see the module."""
    (h, w), (oh, ow), (kh, kw) = x_hw, out_hw, kernel
    (ph, pw), (dh, dw) = padding, dilation
    owp, owpx = -(-ow // J) * J, -(-w // J) * J
    th, tw = max(0, (kh - 1) * dh - ph), max(0, (kw - 1) * dw - pw)
    rh, rw = ph + th - (kh - 1) * dh, pw + tw - (kw - 1) * dw
    hd = max(ph + h, oh + (kh - 1) * dh, th + oh, h + rh + (kh - 1) * dh)
    wp = max(pw + w, owp + (kw - 1) * dw, tw + owp, owpx + rw + (kw - 1) * dw)
    return hd, wp, owp, owpx, (th, tw), (rh, rw)


def _weights(w, dtype, mirror=False):
    """(NB, T, CELLS): w[c, 0, u, v] at [c // L, u*KW + v, q*L + c % L] for
    every q < J (the taps reversed with ``mirror``); channels past C are 0."""
    c, _, kh, kw = w.shape
    nb = -(-c // L)
    taps = w.reshape(c, kh * kw)[:, ::-1] if mirror else w.reshape(c, kh * kw)
    lanes = np.zeros((nb * L, kh * kw), dtype=dtype)
    lanes[:c] = taps
    lanes = lanes.reshape(nb, L, kh * kw).transpose(0, 2, 1)          # (NB, T, L)
    return np.ascontiguousarray(np.tile(lanes, (1, 1, J)))


def _check_lanes(x, w, out, groups, padding, dilation):
    """grouped.py's checks, and a depthwise weight (groups = C)."""
    _check(x, w, out, groups, padding, dilation)
    if w.shape[1] != 1 or w.shape[0] != x.shape[1]:
        raise ValueError(f"depthwise_lanes: needs a depthwise weight (C, 1, KH, KW), got "
                         f"x={x.shape}, weight={w.shape}")


def lanes_forward(x, w, bias, groups, padding, dilation, y, serial=False):
    """``grouped.grouped_forward`` for a depthwise convolution (groups = C,
    stride 1), with its arguments; ``serial`` as there. Returns y."""
    _check_lanes(x, w, y, groups, padding, dilation)
    check_output("depthwise_lanes", y, bias, w.shape[0])
    if not y.size:
        return y
    if not JIT_ENABLED:   # grouped.py's wrapper hands out the twin then
        return grouped_forward(x, w, bias, x.shape[1], padding, dilation, y)
    x = np.ascontiguousarray(x)
    c, _, kh, kw = w.shape
    _, wp, owp = _geometry(x.shape[2:], y.shape[2:], (kh, kw), padding, dilation)[:3]
    hp = max(padding[0] + x.shape[2], y.shape[2] + (kh - 1) * dilation[0])
    starts = np.zeros(-(-c // L) * L, dtype=y.dtype)
    starts[:c] = bias
    starts = np.ascontiguousarray(np.tile(starts.reshape(-1, 1, L), (1, J, 1)).reshape(-1, CELLS))
    args = (x, _weights(w, y.dtype), starts, kh, kw, *padding, *dilation, hp, wp, owp, y)
    compile_vectorized(_lanes_forward_range, args + (0, 0), wide=True)
    (_forward_serial if serial else _forward_numba)(*args)
    return y


def lanes_backward(x, w, dy, groups, padding, dilation, dx, serial=False, db=None):
    """``grouped.grouped_backward`` for a depthwise convolution (groups = C,
    stride 1), with its arguments: fills dx (and ``db``, if given, as there),
    returns the weight gradient."""
    _check_lanes(x, w, dy, groups, padding, dilation)
    if dx.shape != x.shape or not dx.flags.c_contiguous:
        raise ValueError(f"depthwise_lanes: dx must be C-contiguous of shape {x.shape}, "
                         f"got {dx.shape}")
    if db is not None and db.shape != (w.shape[0],):
        raise ValueError(f"depthwise_lanes: db must have shape {(w.shape[0],)}, got {db.shape}")
    if not JIT_ENABLED:
        return grouped_backward(x, w, dy, x.shape[1], padding, dilation, dx, db=db)
    if not (dx.size and dy.size):
        dx[...] = 0
        if db is not None:
            db[...] = 0
        return np.zeros_like(w, dtype=dx.dtype)
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    c, _, kh, kw = w.shape
    hd, wp, owp, owpx, (th, tw), (rh, rw) = _geometry(x.shape[2:], dy.shape[2:], (kh, kw),
                                                       padding, dilation)
    dwl = np.empty((-(-c // L), kh * kw, L), dtype=dx.dtype)
    dbl = np.empty((dwl.shape[0] if db is not None else 0, L), dtype=dx.dtype)
    args = (x, _weights(w, dx.dtype), _weights(w, dx.dtype, mirror=True), kh, kw, *padding,
            *dilation, wp, owp, dy, th, tw, rh, rw, hd, owpx, dx, dwl, dbl)
    compile_vectorized(_lanes_backward_range, args + (0, 0), wide=True)
    (_backward_serial if serial else _backward_numba)(*args)
    if db is not None:
        db[...] = dbl.reshape(-1)[:c]
    # (NB, T, L) -> (C, 1, KH, KW)
    return np.ascontiguousarray(dwl.transpose(0, 2, 1).reshape(-1, kh * kw)[:c]).reshape(w.shape)
