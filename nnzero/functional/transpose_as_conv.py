"""A stride-1 transposed convolution as the convolution it equals.

Notation as in ``conv_transpose.py``, per spatial dimension, stride 1: output
row Y receives input row ih through kernel tap u when Y = ih - P + u*D, so

    y[n, o, Y] = sum_{c,u} W[c, o, u] x[n, c, Y + P - u*D]

and with u' = K-1-u that is a convolution (``conv.py``) of x with the
flipped, transposed kernel and padding P' = D*(K-1) - P before (P' +
output_padding after):

    y[n, o, Y] = sum_{c,u'} W'[o, c, u'] x[n, c, Y - P' + u'*D],
    W'[o, c, u'] = W[c, o, K-1-u']                     (per group)

It can then take every fast path of a convolution: Winograd, the direct
loops of grouped and depthwise layers, batch-minor columns on small planes,
instead of col2im, which adds O*K*K columns back per input position. Its
backward pass is the convolution's, with dW' flipped and transposed back.

Which is faster, measured forward+backward (two threads, interleaved, 7
rounds, float32, N=16, 3x3 kernels unless said; this path / col2im):
depthwise 64 channels on 32x32 0.13; 8 groups of 4 channels 0.74; by
Winograd 64 -> 64 on 16x16 0.57-0.62, on 32x32 0.59, 128 -> 64 0.62, 64
-> 32 0.50, 128 -> 32 0.81, 256 -> 64 on 8x8 0.83, 32 -> 32 0.67, 128 ->
128 on 8x8 0.59, but 64 -> 16 1.07-1.10 and on 32x32 1.13, 32 -> 8 1.48
(few output channels make col2im's columns small); by im2col, where the
columns come from x: 32 -> 64 channels 5x5 0.81, dilation 2 0.77, 1x1 64
-> 128 0.87, but 64 -> 64 5x5 1.07.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import conv, direct
from ._columns import ALGORITHM, Geometry
from .winograd_rules import winograd_family

# Winograd pays for the convolution form from this many output channels on
# (see the measurements above).
WINOGRAD_MIN_OUT = 32


class AsConvCache(NamedTuple):
    inner: object          # the convolution's cache
    weight_shape: tuple    # the transposed convolution's (C, O/G, KH, KW)
    groups: int


def _conv_weight(weight, groups):
    """W' (O, C/G, KH, KW) of a transposed convolution's W (C, O/G, KH, KW)."""
    c, og, kh, kw = weight.shape
    w = weight.reshape(groups, c // groups, og, kh, kw).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(w.reshape(groups * og, c // groups, kh, kw)[:, :, ::-1, ::-1])


def _transposed_grad(dw_conv, weight_shape, groups):
    """dW (C, O/G, KH, KW) from the convolution's dW' (the inverse of _conv_weight)."""
    c, og, kh, kw = weight_shape
    dw = dw_conv[:, :, ::-1, ::-1].reshape(groups, og, c // groups, kh, kw)
    return np.ascontiguousarray(dw.transpose(0, 2, 1, 3, 4).reshape(weight_shape))


def geometry(geo, output_padding):
    """The convolution's geometry for a stride-1 transposed one, or None (any
    stride above 1, or padding beyond D*(K-1), which would need a negative one)."""
    if geo.stride != (1, 1):
        return None
    before = tuple(d * (k - 1) - p for d, k, p in zip(geo.dilation, geo.kernel, geo.pad_before))
    if min(before) < 0:
        return None
    after = tuple(b + e for b, e in zip(before, output_padding))
    return Geometry(geo.kernel, (1, 1), before, after, geo.dilation, geo.groups)


def pays(conv_geo, x_shape, o, size, itemsize):
    """Whether the convolution form should beat col2im (see the module docstring)."""
    if ALGORITHM[0] == "im2col":
        return False
    c = x_shape[1]
    if direct.applicable(conv_geo, c, o, size):
        return True
    if winograd_family(conv_geo, x_shape, o, size, itemsize):
        return o >= WINOGRAD_MIN_OUT
    return c < o


def forward(x, weight, bias, conv_geo, workspace=None, keep_columns=True):
    """y and the cache of the transposed convolution computed as ``conv_geo``'s
    convolution (x contiguous, arguments checked)."""
    y, cache = conv.conv2d_by_geometry(x, _conv_weight(weight, conv_geo.groups), bias,
                                       conv_geo, workspace, keep_columns)
    return y, AsConvCache(cache, weight.shape, conv_geo.groups)


def output_of(cache):
    """The forward's output shape and dtype."""
    return conv.output_of(cache.inner)


def backward(dy, cache, workspace=None):
    """``(dx, dweight, dbias)``; dy checked by the caller."""
    dx, dw_conv, db = conv.conv2d_backward(dy, cache.inner, workspace)
    return dx, _transposed_grad(dw_conv, cache.weight_shape, cache.groups), db
