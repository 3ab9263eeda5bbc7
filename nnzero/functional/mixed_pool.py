"""Mixed max-average pooling: one window, two poolings, a mixing weight.

With f_max = MaxPool2d(x) and f_avg = AvgPool2d(x, count_include_pad=True)
over the same windows (so padding and ceil_mode mean what they mean there):

    y = a * f_max + (1 - a) * f_avg

* random (Yu et al. 2014): a = lambda in {0, 1}, drawn per layer, channel or
  region in training; the draw is fixed for the backward pass.
* learned (Lee et al. 2016, "mixed"): a = sigmoid(theta), theta per layer (1,)
  or per channel (C,):  dL/dtheta = sum dy (f_max - f_avg) * a (1 - a).
* gated (Lee et al. 2016): a = sigmoid(w . window) per output, w (KH*KW,) or
  (C, KH*KW) in row-major window order, padded cells entering as 0:
  dL/dw = sum dy (f_max - f_avg) a (1 - a) window, and the input gets that
  gate term too: dL/dx += col2im(w * dy (f_max - f_avg) a (1 - a)).

In every mode dL/dx = a * (max-pool gradient of dy) + (1 - a) * (average-pool
gradient of dy) (+ the gate term), with a fixed per output.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels.im2col import col2im, im2col
from .activations import sigmoid_slope, stable_sigmoid
from .pooling import (avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward,
                      max_pool2d_forward)


class MixedCache(NamedTuple):
    max_cache: object
    avg_cache: object
    alpha: object        # broadcastable to y, or a Python float 0/1
    diff: object         # f_max - f_avg (learned/gated) or None
    gate: object         # (cols, weight, per_channel) for gated, else None


def _parts(x, kernel_size, stride, padding, ceil_mode, who, need_max=True, need_avg=True):
    ym, cm = max_pool2d_forward(x, kernel_size, stride, padding, 1, ceil_mode, who) \
        if need_max else (None, None)
    ya, ca = avg_pool2d_forward(x, kernel_size, stride, padding, ceil_mode, True, None, who) \
        if need_avg else (None, None)
    return ym, cm, ya, ca


def mixed_pool2d_forward(x, alpha, kernel_size, stride=None, padding=0, ceil_mode=False,
                         who="mixed_pool2d"):
    """y = alpha f_max + (1 - alpha) f_avg for a fixed ``alpha``: a float (0 or 1
    computes only one pooling) or an array broadcastable to the output."""
    if np.isscalar(alpha) and alpha in (0, 1):
        ym, cm, ya, ca = _parts(x, kernel_size, stride, padding, ceil_mode, who,
                                need_max=alpha == 1, need_avg=alpha == 0)
        return (ym if alpha == 1 else ya), MixedCache(cm, ca, float(alpha), None, None)
    ym, cm, ya, ca = _parts(x, kernel_size, stride, padding, ceil_mode, who)
    alpha = np.asarray(alpha, dtype=x.dtype)
    y = alpha * ym + (1 - alpha) * ya
    return y.astype(x.dtype, copy=False), MixedCache(cm, ca, alpha, ym - ya, None)


def mixed_pool2d_backward(dy, cache):
    """dL/dx for a fixed alpha (the random mode, and the input part of the others)."""
    cm, ca, alpha = cache.max_cache, cache.avg_cache, cache.alpha
    if isinstance(alpha, float):
        return max_pool2d_backward(dy, cm) if alpha == 1 else avg_pool2d_backward(dy, ca)
    dx = max_pool2d_backward(alpha * dy, cm)
    dx += avg_pool2d_backward((1 - alpha) * dy, ca)
    return dx


def learned_alpha(theta, x_ndim=4):
    """alpha = sigmoid(theta) shaped to broadcast over (N, C, OH, OW)."""
    a = stable_sigmoid(theta)
    return a.reshape(1, -1, 1, 1) if theta.shape[0] > 1 else a.reshape(1, 1, 1, 1)


def learned_theta_grad(dy, cache, theta):
    """dL/dtheta = sum of dy (f_max - f_avg) over what shares theta, times a (1 - a)."""
    g = dy * cache.diff
    per = g.sum(axis=(0, 2, 3)) if theta.shape[0] > 1 else np.atleast_1d(g.sum())
    return (per * sigmoid_slope(theta)).astype(theta.dtype)


def gated_pool2d_forward(x, weight, kernel_size, stride=None, padding=0, ceil_mode=False,
                         who="gated_pool2d"):
    """The gated mix: a = sigmoid(w . window) per output; weight (K,) or (C, K)."""
    from .._checks import pair
    ym, cm, ya, ca = _parts(x, kernel_size, stride, padding, ceil_mode, who)
    n, c, oh, ow = ym.shape
    k = pair(kernel_size, who, "kernel_size")
    s = k if stride is None else pair(stride, who, "stride")
    p = pair(padding, who, "padding")
    planes = np.ascontiguousarray(x).reshape(n * c, 1, x.shape[2], x.shape[3])
    cols = im2col(planes, k, s, p, (1, 1), (oh, ow))          # (N*C, KH*KW, OH*OW)
    cols = cols.reshape(n, c, k[0] * k[1], oh * ow)
    per_channel = weight.ndim == 2
    if per_channel:
        z = np.einsum("ck,nckl->ncl", weight, cols)
    else:
        z = np.einsum("k,nckl->ncl", weight, cols)
    alpha = stable_sigmoid(z).reshape(n, c, oh, ow).astype(x.dtype)
    y = alpha * ym + (1 - alpha) * ya
    gate = (cols, weight, per_channel, k, s, p, x.shape)
    return y.astype(x.dtype, copy=False), MixedCache(cm, ca, alpha, ym - ya, gate)


def gated_pool2d_backward(dy, cache):
    """Return ``(dx, dweight)``."""
    cols, weight, per_channel, k, s, p, x_shape = cache.gate
    n, c, oh, ow = dy.shape
    alpha = cache.alpha
    dz = (dy * cache.diff * alpha * (1 - alpha)).reshape(n, c, oh * ow)   # dL/d(w . window)
    if per_channel:
        dw = np.einsum("ncl,nckl->ck", dz, cols)
        dcols = np.einsum("ck,ncl->nckl", weight, dz)
    else:
        dw = np.einsum("ncl,nckl->k", dz, cols)
        dcols = np.einsum("k,ncl->nckl", weight, dz)
    dcols = np.ascontiguousarray(dcols, dtype=dy.dtype).reshape(n * c, k[0] * k[1], oh * ow)
    dx = mixed_pool2d_backward(dy, cache)
    dx += col2im(dcols, (n * c, 1) + tuple(x_shape[2:]), k, s, p, (1, 1),
                 (oh, ow)).reshape(x_shape)
    return dx, dw.astype(weight.dtype)
