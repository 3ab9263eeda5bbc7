"""Convolution by Winograd's minimal filtering, forward and backward.

Four tile families. Two are stride-1 with 4x4 input tiles (P = 16 positions
xi): F(2x2, 3x3) for 3x3 kernels (``kernels/winograd.py``, tiles every 2
outputs) and F(3x3, 2x2) for 2x2 kernels (``kernels/winograd_k2.py``, tiles
every 3). F(4x4, 3x3) (``kernels/winograd_f43.py``) has 6x6 tiles (P = 36)
every 4 outputs. F(4x4, 2x2) with 5x5 tiles (P = 25,
``kernels/winograd_s2.py``) runs a stride-2 convolution with a 3x3 or 4x4
kernel as a 2x2 stride-1 one over the input's four phases (C' = 4C channels,
the weight split the same way). With the tile transforms (V = B^T d B per
input tile, U = G g G^T per filter, Y = A^T M A per output tile) a
convolution is P independent GEMMs over the channels, one per position xi:

    M_xi (O, T) = U_xi (O, C') @ V_xi (C', T)                     T = N * tiles

which is 2.25x fewer multiplies than im2col in the 4x4-tile families (16 per
2x2 outputs instead of 36 for 3x3 kernels, 16 per 3x3 outputs instead of 36
for 2x2 ones), 4x for F(4x4, 3x3) (36 per 4x4 outputs instead of 144), and
for stride 2 25 * 4 per 4x4 outputs instead of 16 * 16
(4x4 kernels, 2.56x fewer) or 16 * 9 (3x3, 1.44x). Differentiating each step:

    dM   = A dY A^T                  (per output tile)
    dU_xi = dM_xi @ V_xi^T;   dW = G^T dU G   (per (o, c'))
    dV_xi = U_xi^T @ dM_xi;   dx = B dV B^T   (per input tile, scattered with +=)
    db   = sum of dy = sum over tiles of dM at xi = (j, j), where A^T's column j
           is all ones; the forward adds b to M there (see ``_ones_position``)

The transforms are exact in real arithmetic; in floating point the result
differs from im2col's by rounding only (a few ulps times the tile sums).

The batch is split over threads (``_threads.py``): each piece of samples
keeps its tiles as its own contiguous (P, C', T_piece) block and runs the
transforms and its P products on one thread; dU is the sum of the pieces'.
The backward pass reuses the forward's pieces, since V is laid out by them.
With ``by_positions`` (``winograd_rules.py``: BY_POSITIONS, for layers whose
threads would each get few tiles) the threads split each step instead: the
transforms by channel or plane over the whole batch, the P products by
position, each then as wide as the whole batch's tiles, and dU needs no sum.
``winograd_forward``/``winograd_backward`` are the core; their ``shuffle``
option serves the transposed convolution of ``subpixel.py``, whose 2x2
stride-1 convolution runs here with the pixel shuffle folded into the output
tiles.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import winograd as K3
from ..kernels import winograd_f43 as F43
from ..kernels import winograd_k2 as K2
from ..kernels import winograd_s2 as S2
from ..kernels import winograd_filter as WF
from ._columns import weight_product
from ._scratch import samples, scratch, transient
from ._threads import blas_one_thread, piece_bounds, run_pieces


class WinogradCache(NamedTuple):
    x_shape: tuple
    weight: np.ndarray
    has_bias: bool
    pad: tuple          # (top, left)
    out_size: tuple     # (OH, OW)
    tiles: tuple        # (TH, TW)
    bounds: list        # the batch pieces (``_threads.piece_bounds``) v is laid out by
    v: object           # flat: each piece's (P, C', T_piece) transformed input tiles, or
    #                     None when not kept (eval mode): the backward pass redoes them from x
    u: np.ndarray       # (P, O, C') transformed filters
    family: str         # its key in _FAMILIES
    x: object = None    # the input, when v is not kept
    by_positions: bool = False   # the threads split the positions, not the batch


class _Family(NamedTuple):
    K: object           # the kernels module: tile transforms and their gradients
    step: int           # output cells per tile side
    positions: int      # P: cells per input tile (16, 25 or 36), one product each
    phases: int         # C' = phases * C: the tiles' channels (4 after space-to-depth)
    kron: dict          # float32/float64 -> (P, taps): kron(G, G), see _filter_transform
    ones: int           # the position whose products carry the bias: see _ones_position


def _ones_position(at):
    """The position xi = (j, j) where A^T's column j is all ones (every family
    has one: the interpolation point 1). With e_j that unit vector, A^T e_j is
    the all-ones vector, so for any tile

        A^T (M + b e_j e_j^T) A = A^T M A + b 1 1^T,    1^T dY 1 = (A dY A^T)_jj:

    adding the bias b to M's row at xi adds it to every output cell, and the
    sum of a tile's output gradient, the bias gradient's share, is that same
    row of dM. The bias then costs one pass over 1/P of M and of dM, where it
    had cost a pass over y after the output transform and one over dy (1.7 ms
    of conv_mid's 24, 1.0 of conv_k4s2's 21)."""
    cols = [j for j in range(at.shape[1]) if np.all(at[:, j] == 1)]
    if not cols:
        raise ValueError("winograd: A^T has no column of ones")
    return cols[0] * at.shape[1] + cols[0]


def _family(K, stride=1):
    kron = np.kron(K.G, K.G)
    return _Family(K, K.AT.shape[0], K.BT.shape[0] ** 2, stride * stride,
                   {np.dtype(t): kron.astype(t) for t in (np.float32, np.float64)},
                   _ones_position(K.AT))


# The tile families by name: F(2x2, 3x3) and F(4x4, 3x3) for 3x3 kernels,
# F(3x3, 2x2) for 2x2 ones, and F(4x4, 2x2) over the space-to-depth of a
# stride-2 convolution with a 3x3 or 4x4 kernel; DEFAULT is each (kernel,
# stride)'s family unless the caller picks another (``conv.py``'s rules).
# kron(G, G) (P, k*k): U[i*r+j] = sum_kl G[i,k] g[k,l] G[j,l] for every filter
# at once is ``U = kron(G, G) @ g`` over the (o, c) pairs, one small product
# (P, k*k) @ (k*k, O*C), and so is the weight gradient G^T dU G = kron(G, G)^T
# @ dU. Small ones run as that product with BLAS held to one thread (woken
# here, OpenBLAS's threads would spin through the pieces that follow; the
# layer measured 1.7x slower for it): 0.05-0.09 ms at 64 channels, where the
# three-operand einsums before took 1.5 ms for U and 3.9 for dW. From
# FILTER_SPLIT_SIZE values of U on, ``kernels/winograd_filter.py`` runs them
# with the output channels split over the threads. Measured (2026-11-29, U
# and dW, one-thread BLAS against the split kernels): F(2x2, 3x3) 512 -> 512
# channels 2.9 and 3.9 ms against 1.6 and 1.4, 256 -> 256 0.74 and 1.20
# against 0.46 and 0.44; F(4x4, 3x3) 256 channels 1.40 and 1.49 against 0.93
# and 0.88, 192 (1.3 M values) 0.77 and 0.78 against 0.78 and 0.62; below 1 M
# values BLAS's U is the faster (128 channels 0.33 against 0.42), and the
# kernels' dW gains less than 0.1 ms.
FILTER_SPLIT_SIZE = 1 << 20
_FAMILIES = {"F(2x2,3x3)": _family(K3), "F(4x4,3x3)": _family(F43),
             "F(3x3,2x2)": _family(K2), "F(4x4,2x2)/2": _family(S2, stride=2)}
DEFAULT = {(3, 1): "F(2x2,3x3)", (2, 1): "F(3x3,2x2)", (3, 2): "F(4x4,2x2)/2",
           (4, 2): "F(4x4,2x2)/2"}


def _filter_transform(weight, fam, workspace=None):
    """U (P, O, C') of weight (O, C, k, k), in weight's dtype (in the layer's
    own scratch buffer when a workspace is given: the cache keeps it)."""
    if fam.phases > 1:
        weight = fam.K.weight_to_phases(weight)
    o, c, k = weight.shape[:3]
    u = scratch(workspace, "wino_u", (fam.positions, o, c), weight.dtype)
    kron = fam.kron[weight.dtype]
    if _split_filters(u.size):
        WF.filter_transform(kron, np.ascontiguousarray(weight).reshape(o, c, k * k), u)
    else:
        with blas_one_thread():
            np.matmul(kron, weight.reshape(o * c, k * k).T, out=u.reshape(fam.positions, -1))
    return u


def _filter_grad(du, weight_shape, fam):
    """dW (O, C, k, k) of dU (P, O, C'): G^T dU G for every (o, c')."""
    o, c4 = du.shape[1:]
    r = fam.K.G.shape[1]                                                       # filter side
    kron = fam.kron[du.dtype]
    if _split_filters(du.size):
        dw = np.empty((o, c4, r * r), dtype=du.dtype)
        WF.filter_grad(kron, np.ascontiguousarray(du), dw)
    else:
        with blas_one_thread():
            dw = (kron.T @ du.reshape(fam.positions, o * c4)).T          # (O*C', r*r)
    dw = dw.reshape(o, c4, r, r)
    if fam.phases > 1:
        return fam.K.weight_from_phases(dw, weight_shape[2])
    return dw


def _split_filters(size):
    """Whether the filter transforms of a U of ``size`` values run split over
    the threads (see FILTER_SPLIT_SIZE): large, and not inside a piece."""
    return size >= FILTER_SPLIT_SIZE and len(piece_bounds(2)) > 2


def _piece(flat, lo, hi, positions, rows, tiles):
    """Samples lo ... hi-1's (P, rows, (hi-lo)*tiles) block of a flat buffer."""
    return samples(flat, lo, hi, positions * rows * tiles).reshape(positions, rows, -1)


def applicable(geo):
    """Undilated, ungrouped convolutions with a 3x3 or a 2x2 kernel at stride 1,
    or a 3x3 or 4x4 kernel at stride 2."""
    k, s = geo.kernel, geo.stride
    return (k[0] == k[1] and s[0] == s[1] and (k[0], s[0]) in DEFAULT
            and geo.dilation == (1, 1) and geo.groups == 1)


def tiles(out_size, family):
    """(TH, TW): the tile grid covering an (OH, OW) output."""
    step = _FAMILIES[family].step
    return tuple(-(-s // step) for s in out_size)


def buffer_bytes(x_shape, out_size, itemsize, family, out_channels):
    """Bytes of the transformed input V (the buffer the backward pass keeps)
    and of the products M (which the backward pass reuses for dM), together:
    what the layer holds against the im2col budget."""
    n, c = x_shape[:2]
    fam = _FAMILIES[family]
    th, tw = tiles(out_size, family)
    return fam.positions * (fam.phases * c + out_channels) * n * th * tw * itemsize


def winograd_forward(x, weight, pad, out_size, out, bias=None, workspace=None, shuffle=None,
                     *, family, keep=True, by_positions=False):
    """Write conv(x, weight) + bias (padding ``pad`` before, output size
    ``out_size``, zeros read past the image; stride 2 for the stride-2
    family) into ``out`` (N, O, OH, OW) by the tile ``family`` (a key of
    ``_FAMILIES``) and return the cache.

    ``shuffle=(ph, pw)`` (2x2 kernels only): the convolution is a transposed
    one's z (``subpixel.py``), ``out`` is that layer's y and ``bias`` its bias:
    each output tile goes straight to y's sub-pixel phases, bias added
    (``kernels/winograd_k2.py``).

    ``keep``: the cache keeps V for the backward pass; without it (a layer in
    eval mode) V is a transient buffer and the cache keeps x instead, from
    which a backward pass transforms the tiles again.

    ``by_positions``: the threads share out each step instead of the batch
    (see ``_by_positions_forward``; not with ``shuffle``)."""
    if by_positions and shuffle is not None:
        raise ValueError("winograd_forward: by_positions=True does not take a shuffle")
    n = x.shape[0]
    o = weight.shape[0]
    fam = _FAMILIES[family]
    K, pos = fam.K, fam.positions
    c = fam.phases * x.shape[1]
    oh, ow = out_size
    th, tw = tiles(out_size, family)
    t = n * th * tw
    v = (scratch if keep else transient)(workspace, "wino_v", (pos * c * t,), x.dtype)
    m = transient(workspace, "wino_m", (pos * o * t,), x.dtype)
    u = _filter_transform(weight.astype(x.dtype, copy=False), fam, workspace)
    if shuffle is not None:   # the shuffled transform adds a bias, zero or not
        shuffle = tuple(shuffle) + (np.zeros(out.shape[1], x.dtype) if bias is None
                                    else bias.astype(x.dtype, copy=False),)
    elif bias is not None:   # added to M's row at fam.ones (see _ones_position)
        bias = bias.astype(x.dtype, copy=False).reshape(-1, 1)

    if by_positions and n:
        _by_positions_forward(x, u, pad, out_size, (th, tw), out, bias, fam,
                              _piece(v, 0, n, pos, c, th * tw), _piece(m, 0, n, pos, o, th * tw))
        return WinogradCache(x.shape, weight, bias is not None, tuple(pad), (oh, ow), (th, tw),
                             [0, n], v if keep else None, u, family, None if keep else x, True)

    def piece(lo, hi):   # samples lo ... hi-1, on one thread
        vp = _piece(v, lo, hi, pos, c, th * tw)
        K.input_transform_one_thread(x[lo:hi], pad[0], pad[1], th, tw, vp)
        mp = _piece(m, lo, hi, pos, o, th * tw)
        np.matmul(u, vp, out=mp)
        if shuffle is not None:
            K.output_transform_shuffle_one_thread(mp, oh, ow, *shuffle, out[lo:hi])
            return
        if bias is not None:
            mp[fam.ones] += bias
        K.output_transform_one_thread(mp, oh, ow, out[lo:hi])

    bounds = piece_bounds(n)
    if n:   # an empty batch has no tiles (the batch-minor kernels divide by n)
        run_pieces(bounds, piece)
    return WinogradCache(x.shape, weight, bias is not None, tuple(pad), (oh, ow), (th, tw),
                         bounds, v if keep else None, u, family, None if keep else x)


def winograd_backward(dy, cache, dx, workspace=None, shuffle=None, bias=False):
    """Write dL/dx into ``dx`` and return (dL/dweight, dL/dbias), from a
    contiguous dL/dy; with ``shuffle=(ph, pw)`` that is the transposed layer's
    dL/dy, whose phases are gathered into dL/dz tile by tile (see
    ``winograd_forward``). dL/dbias is None unless ``bias``; it is summed from
    dM's row at ``fam.ones`` (see ``_ones_position``), per output channel of
    the convolution (with a shuffle, of z: the caller adds z's phases)."""
    x_shape, weight, _, pad, out_size, (th, tw), bounds, v, u, family, x, by_pos = cache
    fam = _FAMILIES[family]
    K, pos = fam.K, fam.positions
    o, c = u.shape[1], u.shape[2]
    t = x_shape[0] * th * tw
    redo = v is None   # not kept: the input tiles again, from x
    if redo:
        v = transient(workspace, "wino_v", (pos * c * t,), u.dtype)
    dm = transient(workspace, "wino_m", (pos * o * t,), u.dtype)  # M is spent
    dv = transient(workspace, "wino_dv", v.shape, u.dtype)
    u_t = u.transpose(0, 2, 1)
    if by_pos and x_shape[0]:
        n = x_shape[0]
        du = transient(workspace, "wino_du", u.shape, u.dtype)
        dmp = _piece(dm, 0, n, pos, o, th * tw)
        _by_positions_backward(dy, u_t, pad, fam, x, redo, (th, tw), dx, du,
                               _piece(v, 0, n, pos, c, th * tw), dmp,
                               _piece(dv, 0, n, pos, c, th * tw))
        return _filter_grad(du, weight.shape, fam), (dmp[fam.ones].sum(axis=1) if bias
                                                     else None)

    def piece(lo, hi):   # samples lo ... hi-1, on one thread; returns its shares of dU, db
        dmp = _piece(dm, lo, hi, pos, o, th * tw)
        if shuffle is None:
            K.output_grad_one_thread(dy[lo:hi], th, tw, dmp)
        else:
            K.output_grad_shuffle_one_thread(dy[lo:hi], th, tw, *shuffle, dmp)
        db = dmp[fam.ones].sum(axis=1) if bias else None
        vp = _piece(v, lo, hi, pos, c, th * tw)
        if redo:
            K.input_transform_one_thread(x[lo:hi], pad[0], pad[1], th, tw, vp)
        du = weight_product(dmp, vp)                                    # (P, O, C')
        dvp = _piece(dv, lo, hi, pos, c, th * tw)
        np.matmul(u_t, dmp, out=dvp)
        K.input_grad_one_thread(dvp, pad[0], pad[1], th, tw, dx[lo:hi])
        return du, db

    if not x_shape[0]:   # an empty batch: no tiles, a zero gradient
        return (_filter_grad(np.zeros_like(u), weight.shape, fam),
                np.zeros(o, u.dtype) if bias else None)
    parts = run_pieces(bounds, piece)
    du = sum((p[0] for p in parts[1:]), parts[0][0])
    db = sum((p[1] for p in parts[1:]), parts[0][1]) if bias else None
    return _filter_grad(du, weight.shape, fam), db


def _by_positions_forward(x, u, pad, out_size, tiles_hw, out, bias, fam, v, m):
    """The forward pass with each step shared out over the threads by its own
    units: the input transform by input planes, the P products by position,
    the output transform by output channels (V and M are (P, C', T) and
    (P, O, T) over the whole batch). Where a thread's piece of the batch
    would have few tiles (small planes, few samples), its P products would be
    narrow: here each is as wide as the whole batch."""
    K = fam.K
    K.input_transform(x, pad[0], pad[1], *tiles_hw, v)
    run_pieces(piece_bounds(fam.positions),
               lambda lo, hi: np.matmul(u[lo:hi], v[lo:hi], out=m[lo:hi]))
    if bias is not None:   # (O, 1): see _ones_position
        m[fam.ones] += bias
    K.output_transform(m, *out_size, out)


def _by_positions_backward(dy, u_t, pad, fam, x, redo, tiles_hw, dx, du, v, dm, dv):
    """``_by_positions_forward``'s backward pass: writes dx and dU."""
    K = fam.K
    th, tw = tiles_hw
    K.output_grad(dy, th, tw, dm)
    if redo:
        K.input_transform(x, pad[0], pad[1], th, tw, v)

    def piece(lo, hi):   # positions lo ... hi-1, on one thread
        weight_product(dm[lo:hi], v[lo:hi], out=du[lo:hi])
        np.matmul(u_t[lo:hi], dm[lo:hi], out=dv[lo:hi])

    run_pieces(piece_bounds(fam.positions), piece)
    K.input_grad(dv, pad[0], pad[1], th, tw, dx)


def conv2d_winograd_forward(x, weight, bias, geo, family, workspace=None, keep=True,
                            by_positions=False):
    """``conv2d_forward`` for an ``applicable`` geometry by the tile ``family``:
    x (N, C, H, W) contiguous, weight (O, C, k, k); returns (y, cache)."""
    n, _, h, w = x.shape
    o = weight.shape[0]
    oh, ow = geo.out_size(h, w)
    y = np.empty((n, o, oh, ow), dtype=x.dtype)
    return y, winograd_forward(x, weight, geo.pad_before, (oh, ow), y, bias, workspace,
                               family=family, keep=keep, by_positions=by_positions)


def conv2d_winograd_backward(dy, cache, workspace=None):
    dy = np.ascontiguousarray(dy)
    dx = np.empty(cache.x_shape, dtype=dy.dtype)
    dw, db = winograd_backward(dy, cache, dx, workspace, bias=cache.has_bias)
    return dx, dw, db
