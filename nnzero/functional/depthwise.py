"""Depthwise convolution: groups = in_channels = out_channels, computed directly.

Each output channel sees only its own input channel through a KH x KW kernel:

    y[n, c, i, j] = b[c] + sum_{u,v} W[c, 0, u, v] x[n, c, i*SH - PH + u*DH, j*SW - PW + v*DW]

Derivatives (x read as 0 outside the image, dx dropped there):

    dx[n, c, i*SH - PH + u*DH, j*SW - PW + v*DW] += W[c, 0, u, v] dy[n, c, i, j]
    dW[c, 0, u, v] = sum_{n,i,j} dy[n, c, i, j] x[n, c, i*SH - PH + u*DH, j*SW - PW + v*DW]
    db[c]          = sum_{n,i,j} dy[n, c, i, j]

As im2col plus a product per group, every product would be one row deep
(1 x KH*KW by KH*KW x L): the layer measured 2.3-6.6x PyTorch's time that
way. The loops in ``kernels/depthwise.py`` add scaled rows of the padded
input instead, parallel over the (n, c) planes. ``conv.py`` sends depthwise
convolutions here unless ``set_conv_algorithm('im2col')``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import depthwise as K
from ._columns import Geometry


class DepthwiseCache(NamedTuple):
    x: np.ndarray          # (N, C, H, W), contiguous
    weight: np.ndarray     # (C, 1, KH, KW)
    has_bias: bool
    geo: Geometry
    out_size: tuple


def applicable(geo, in_channels, out_channels):
    """One input and one output channel per group, more than one group."""
    return geo.groups > 1 and geo.groups == in_channels == out_channels


def depthwise_forward(x, weight, bias, geo, out_size):
    """y (N, C, OH, OW) and the cache; x contiguous, inputs validated (see layers)."""
    n, c = x.shape[:2]
    y = np.empty((n, c) + tuple(out_size), dtype=x.dtype)
    b = np.zeros(c, dtype=x.dtype) if bias is None else bias
    K.depthwise_forward(x, weight, b, geo.stride, geo.pad_before, geo.dilation, y)
    return y, DepthwiseCache(x, weight, bias is not None, geo, tuple(out_size))


def depthwise_backward(dy, cache):
    """Return ``(dx, dweight, dbias)`` (``dbias`` None without bias)."""
    x, weight, has_bias, geo, _ = cache
    dx = np.empty_like(x)
    dw = K.depthwise_backward(x, weight, dy, geo.stride, geo.pad_before, geo.dilation, dx)
    db = dy.sum(axis=(0, 2, 3)) if has_bias else None
    return dx, dw, db
