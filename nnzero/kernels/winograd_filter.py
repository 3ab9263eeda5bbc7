"""Winograd's filter transform U = G g G^T and its gradient dW = G^T dU G,
for every (output, input) channel pair at once, by any tile family.

With kron = kron(G, G) (P, k*k), the transform of filter g (k*k values,
row-major) is ``U[:, o, c] = kron @ g[o, c]`` and the gradient
``dW[o, c] = kron^T @ dU[:, o, c]`` (``functional/winograd.py``). As NumPy
these are one (P, k*k) @ (k*k, O*C) product each (the twins below), which
``functional/winograd.py`` runs on one thread for small layers. On a layer
with many channels they are memory-bound (512 -> 512 channels: U is 16 MB
for 9.4 MB of weight), and one thread's BLAS took 2.9 ms for U and 3.9 for
dW; these kernels take output channels as units, so the threads split them
(see ``_pool.split_kernel``): 1.6 and 1.4 ms.

For each output channel the (C, k*k) filters are turned into (k*k, C) rows
in a small scratch buffer (or the gradient summed there), and each of the P
rows of U (or the k*k of dW) is a few long vector loops over C. kron's zeros
(most of F(2x2, 3x3)'s: G has entries 0, 1/2 and 1) are skipped. The two
kernels share that loop nest on purpose rather than a helper: one taking
U's (P, C) slice of an output channel, whose rows are O*C apart, and kron^T
as views compiled for any layout, and the loops over C no longer vectorised
(2.5x slower for both on a 512 -> 512 layer).
"""
from __future__ import annotations

import numpy as np

from ._jit import choose, njit
from ._pool import split_kernel


@njit
def _filter_transform_range(kron, w, u, lo, hi):
    # units: output channels; w (O, C, k*k), u (P, O, C), contiguous
    positions, taps = kron.shape
    c = w.shape[1]
    rows = np.empty((taps, c), dtype=w.dtype)
    for o in range(lo, hi):
        wo = w[o]
        for ci in range(c):
            for k in range(taps):
                rows[k, ci] = wo[ci, k]
        for p in range(positions):
            out = u[p, o]
            for ci in range(c):
                out[ci] = 0
            for k in range(taps):
                a = kron[p, k]
                if a != 0:
                    row = rows[k]
                    for ci in range(c):
                        out[ci] += a * row[ci]


@njit
def _filter_grad_range(kron, du, dw, lo, hi):
    # units: output channels; du (P, O, C), dw (O, C, k*k), contiguous
    positions, taps = kron.shape
    c = du.shape[2]
    acc = np.empty((taps, c), dtype=du.dtype)
    for o in range(lo, hi):
        for k in range(taps):
            for ci in range(c):
                acc[k, ci] = 0
        for p in range(positions):
            row = du[p, o]
            for k in range(taps):
                a = kron[p, k]
                if a != 0:
                    ak = acc[k]
                    for ci in range(c):
                        ak[ci] += a * row[ci]
        dwo = dw[o]
        for ci in range(c):
            for k in range(taps):
                dwo[ci, k] = acc[k, ci]


def filter_transform_numpy(kron, w, u):
    o, c, taps = w.shape
    u.reshape(kron.shape[0], o * c)[...] = kron @ w.reshape(o * c, taps).T


def filter_grad_numpy(kron, du, dw):
    o, c, taps = dw.shape
    dw[...] = (kron.T @ du.reshape(kron.shape[0], o * c)).T.reshape(o, c, taps)


filter_transform_numba, filter_transform_serial = split_kernel(
    _filter_transform_range, lambda kron, w, u: w.shape[0])
filter_grad_numba, filter_grad_serial = split_kernel(
    _filter_grad_range, lambda kron, du, dw: dw.shape[0])
filter_transform = choose(filter_transform_numba, filter_transform_numpy)
filter_grad = choose(filter_grad_numba, filter_grad_numpy)
