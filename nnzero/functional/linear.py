"""Affine maps, maxout and reshaping, as forward/backward pairs.

Linear, for x of shape (*, F_in) flattened to X (M, F_in):
    y = X W^T + b                      W: (F_out, F_in), b: (F_out,)
    dX = dY W,   dW = dY^T X,   db = sum over rows of dY

The products run on nnzero's threads (``_threads.py``), each a block of rows
with single-threaded BLAS: Y and dX by rows of X, dW by rows of W (so no
partial sums to add). Besides matching the convolutions, this keeps
OpenBLAS's own workers asleep: woken by one product they spin on for a while
and measured 1.5x slower the convolution that followed.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._threads import batch_pieces


class LinearCache(NamedTuple):
    x2: np.ndarray        # (M, F_in): the input with its leading axes merged
    weight: np.ndarray    # (F_out, F_in)
    has_bias: bool
    x_shape: tuple


def linear_forward(x, weight, bias=None):
    # x: (*, F_in)
    x2 = x.reshape(-1, x.shape[-1])
    y2 = np.empty((x2.shape[0], weight.shape[0]), dtype=np.result_type(x2, weight))

    def rows(lo, hi):
        np.matmul(x2[lo:hi], weight.T, out=y2[lo:hi])
        if bias is not None:
            y2[lo:hi] += bias

    batch_pieces(x2.shape[0], rows)
    y = y2.reshape(x.shape[:-1] + (weight.shape[0],))
    return y, LinearCache(x2, weight, bias is not None, x.shape)


def linear_backward(dy, cache):
    """Return ``(dx, dw, db)``; ``db`` is None without a bias."""
    x2, weight, has_bias, x_shape = cache
    dy2 = dy.reshape(-1, weight.shape[0])
    dx2 = np.empty((dy2.shape[0], weight.shape[1]), dtype=np.result_type(dy2, weight))
    dw = np.empty(weight.shape, dtype=np.result_type(dy2, x2))
    batch_pieces(dy2.shape[0], lambda lo, hi: np.matmul(dy2[lo:hi], weight, out=dx2[lo:hi]))
    batch_pieces(weight.shape[0], lambda lo, hi: np.matmul(dy2[:, lo:hi].T, x2, out=dw[lo:hi]))
    dx = dx2.reshape(x_shape)
    db = dy2.sum(axis=0) if has_bias else None
    return dx, dw, db


# -- Maxout (Goodfellow et al. 2013) ------------------------------------------------
#   z = x W^T + b with W: (F_out * k, F_in); unit j owns the contiguous rows
#   j*k ... j*k + k - 1 and outputs y_j = max_i z_{j*k+i}. The gradient of y_j
#   flows only to its winning piece (the first one on a tie), then through the
#   affine map as for Linear.
class MaxoutCache(NamedTuple):
    linear: LinearCache
    winner: np.ndarray   # (*, F_out) index of the winning piece, int64
    pieces: int


def maxout_forward(x, weight, bias, pieces):
    z, lin = linear_forward(x, weight, bias)
    z = z.reshape(z.shape[:-1] + (-1, pieces))
    winner = np.argmax(z, axis=-1)
    y = np.take_along_axis(z, winner[..., None], axis=-1)[..., 0]
    return y, MaxoutCache(lin, winner, pieces)


def maxout_backward(dy, cache):
    lin, winner, pieces = cache
    dz = np.zeros(dy.shape + (pieces,), dtype=dy.dtype)
    np.put_along_axis(dz, winner[..., None], dy[..., None], axis=-1)
    return linear_backward(dz.reshape(dy.shape[:-1] + (-1,)), lin)


def channel_maxout_forward(x, pieces):
    """Feature-map maxout over axis 1: C channels -> C / pieces, contiguous groups."""
    # x: (N, C, *spatial)
    n, c = x.shape[:2]
    z = x.reshape((n, c // pieces, pieces) + x.shape[2:])
    winner = np.argmax(z, axis=2)
    y = np.take_along_axis(z, winner[:, :, None], axis=2)[:, :, 0]
    return y, (winner, pieces, x.shape)


def channel_maxout_backward(dy, cache):
    winner, pieces, x_shape = cache
    dz = np.zeros((dy.shape[0], dy.shape[1], pieces) + dy.shape[2:], dtype=dy.dtype)
    np.put_along_axis(dz, winner[:, :, None], dy[:, :, None], axis=2)
    return dz.reshape(x_shape)


# -- Flatten: merge axes start..end; the backward is the inverse reshape -------------
def flatten_forward(x, start_dim, end_dim):
    shape = x.shape[:start_dim] + (-1,) + x.shape[end_dim + 1:]
    if x.size == 0:
        shape = x.shape[:start_dim] + (int(np.prod(x.shape[start_dim:end_dim + 1])),) \
            + x.shape[end_dim + 1:]
    return x.reshape(shape), x.shape


def flatten_backward(dy, x_shape):
    return dy.reshape(x_shape)
