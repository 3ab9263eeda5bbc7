"""3x3 stride-1 convolution by Winograd's F(2x2, 3x3), forward and backward.

With the tile transforms of ``kernels/winograd.py`` (V = B^T d B per input
tile, U = G g G^T per filter, Y = A^T M A per output tile) a convolution is
16 independent GEMMs over the channels, one per position xi of the 4x4 tile:

    M_xi (O, T) = U_xi (O, C) @ V_xi (C, T)                     T = N * tiles

which is 2.25x fewer multiplies than im2col (16 per 2x2 outputs instead of
36) and a 2.25x smaller buffer. Differentiating each step:

    dM   = A dY A^T                  (per output tile)
    dU_xi = dM_xi @ V_xi^T;   dW = G^T dU G   (per (o, c))
    dV_xi = U_xi^T @ dM_xi;   dx = B dV B^T   (per input tile, scattered with +=)
    db   = sum of dy

The transforms are exact in real arithmetic; in floating point the result
differs from im2col's by rounding only (a few ulps times the tile sums).

The batch is split over threads (``_threads.py``): each piece of samples
keeps its tiles as its own contiguous (16, C, T_piece) block and runs the
transforms and its 16 products on one thread; dU is the sum of the pieces'.
The backward pass reuses the forward's pieces, since V is laid out by them.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import winograd as K
from ._columns import bias_grad
from ._scratch import samples, scratch
from ._threads import piece_bounds, run_pieces


class WinogradCache(NamedTuple):
    x_shape: tuple
    weight: np.ndarray
    has_bias: bool
    pad: tuple          # (top, left)
    out_size: tuple     # (OH, OW)
    tiles: tuple        # (TH, TW)
    bounds: list        # the batch pieces (``_threads.piece_bounds``) v is laid out by
    v: np.ndarray       # flat: each piece's (16, C, T_piece) transformed input tiles
    u: np.ndarray       # (16, O, C) transformed filters


def _piece(flat, lo, hi, rows, tiles):
    """Samples lo ... hi-1's (16, rows, (hi-lo)*tiles) block of a flat buffer."""
    return samples(flat, lo, hi, 16 * rows * tiles).reshape(16, rows, -1)


def applicable(geo):
    return (geo.kernel == (3, 3) and geo.stride == (1, 1) and geo.dilation == (1, 1)
            and geo.groups == 1)


def buffer_bytes(x_shape, out_size, itemsize):
    n, c = x_shape[:2]
    return 16 * c * n * ((out_size[0] + 1) // 2) * ((out_size[1] + 1) // 2) * itemsize


def conv2d_winograd_forward(x, weight, bias, geo, workspace=None):
    # x: (N, C, H, W) contiguous; weight: (O, C, 3, 3)
    n, c, h, w = x.shape
    o = weight.shape[0]
    oh, ow = geo.out_size(h, w)
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    t = n * th * tw
    v = scratch(workspace, "wino_v", (16 * c * t,), x.dtype)
    m = scratch(workspace, "wino_m", (16 * o * t,), x.dtype)
    u = np.einsum("ik,ockl,jl->ijoc", K.G, weight, K.G).reshape(16, o, c).astype(x.dtype)
    y = np.empty((n, o, oh, ow), dtype=x.dtype)
    add_bias = None if bias is None else bias.reshape(1, o, 1, 1)

    def piece(lo, hi):   # samples lo ... hi-1, on one thread
        vp = _piece(v, lo, hi, c, th * tw)
        K.input_transform_one_thread(x[lo:hi], geo.pad_before[0], geo.pad_before[1], th, tw, vp)
        mp = _piece(m, lo, hi, o, th * tw)
        np.matmul(u, vp, out=mp)
        K.output_transform_one_thread(mp, oh, ow, y[lo:hi])
        if add_bias is not None:
            y[lo:hi] += add_bias

    bounds = piece_bounds(n)
    run_pieces(bounds, piece)
    return y, WinogradCache(x.shape, weight, bias is not None, geo.pad_before, (oh, ow),
                            (th, tw), bounds, v, u)


def conv2d_winograd_backward(dy, cache, workspace=None):
    x_shape, weight, has_bias, pad, out_size, (th, tw), bounds, v, u = cache
    o, c = weight.shape[:2]
    dy = np.ascontiguousarray(dy)
    dm = scratch(workspace, "wino_m", (16 * o * x_shape[0] * th * tw,), dy.dtype)  # M is spent
    dv = scratch(workspace, "wino_dv", v.shape, dy.dtype)
    dx = np.empty(x_shape, dtype=dy.dtype)
    u_t = u.transpose(0, 2, 1)

    def piece(lo, hi):   # samples lo ... hi-1, on one thread; returns its share of dU
        dmp = _piece(dm, lo, hi, o, th * tw)
        K.output_grad_one_thread(dy[lo:hi], th, tw, dmp)
        vp = _piece(v, lo, hi, c, th * tw)
        du = np.matmul(dmp, vp.transpose(0, 2, 1))                     # (16, O, C)
        dvp = _piece(dv, lo, hi, c, th * tw)
        np.matmul(u_t, dmp, out=dvp)
        K.input_grad_one_thread(dvp, pad[0], pad[1], th, tw, dx[lo:hi])
        return du

    parts = run_pieces(bounds, piece)
    du = sum(parts[1:], parts[0])
    dw = np.einsum("ik,ijoc,jl->ockl", K.G, du.reshape(4, 4, o, c), K.G).astype(dy.dtype)
    db = bias_grad(dy) if has_bias else None
    return dx, dw, db
