"""Batch normalization and dropout as forward/backward pairs.

Batch normalization over the batch and spatial axes (per channel c):

    mu = mean(x), var = mean((x - mu)^2)             (biased, over m = N*H*W values)
    xhat = (x - mu) / sqrt(var + eps);   y = gamma xhat + beta

    dbeta = sum dy;   dgamma = sum dy xhat
    dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat mean(dy xhat))   (batch statistics)
    dx = gamma / sqrt(running_var + eps) * dy                                (running statistics)

Inverted dropout: y = x m / (1 - p), m ~ Bernoulli(1 - p); dx = dy m / (1 - p).
p = 1 outputs zeros (and zero gradient) instead of 0 * inf.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class BatchNormCache(NamedTuple):
    xhat: np.ndarray
    gamma: object          # (C,) or None
    inv_std: np.ndarray    # (C,)
    axes: tuple
    batch_stats: bool


def _shape(c, ndim):
    return (1, c) + (1,) * (ndim - 2)


def batch_norm_forward(x, gamma, beta, running_mean, running_var, eps, batch_stats):
    """``batch_stats``: normalise with this batch's statistics (training, or no
    running statistics) and return them; else use the running ones.

    Returns ``(y, cache, (mean, biased_var))`` (the statistics are None in the
    running-statistics mode).
    """
    c = x.shape[1]
    axes = (0,) + tuple(range(2, x.ndim))
    view = _shape(c, x.ndim)
    if batch_stats:
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        stats = (mean, var)
    else:
        mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        stats = None
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xhat = (x - mean.reshape(view)) * inv_std.reshape(view)
    y = xhat * gamma.reshape(view) + beta.reshape(view) if gamma is not None else xhat
    return y.astype(x.dtype, copy=False), BatchNormCache(xhat, gamma, inv_std, axes,
                                                        batch_stats), stats


def batch_norm_backward(dy, cache):
    """Return ``(dx, dgamma, dbeta)`` (the last two None without affine parameters)."""
    xhat, gamma, inv_std, axes, batch_stats = cache
    view = _shape(xhat.shape[1], xhat.ndim)
    dgamma = (dy * xhat).sum(axis=axes) if gamma is not None else None
    dbeta = dy.sum(axis=axes) if gamma is not None else None
    scale = inv_std if gamma is None else gamma * inv_std
    if batch_stats:
        mean_dy = dy.mean(axis=axes, keepdims=True)
        mean_dy_xhat = (dy * xhat).mean(axis=axes, keepdims=True)
        dx = scale.reshape(view) * (dy - mean_dy - xhat * mean_dy_xhat)
    else:
        dx = scale.reshape(view) * dy
    return dx.astype(dy.dtype, copy=False), dgamma, dbeta


def dropout_forward(x, p, mask_shape, rng):
    """``mask_shape`` broadcasts to x: x.shape for Dropout, (N, C, 1, 1) for Dropout2d."""
    if p >= 1.0:
        return np.zeros_like(x), np.zeros(mask_shape, dtype=x.dtype)
    keep = (rng.random(mask_shape) >= p).astype(x.dtype) / x.dtype.type(1.0 - p)
    return x * keep, keep


def dropout_backward(dy, scaled_mask):
    return dy * scaled_mask
