"""The classic activations as forward/backward pairs.

Each ``*_forward(x, ...)`` returns ``(y, cache)``; each ``*_backward(dy, cache)``
returns ``dx`` (and the parameter gradients, for PReLU and Swish). Notation:
``sigma(t) = 1 / (1 + exp(-t))``. Derivatives at kinks are PyTorch's.

Numerical care: nothing here evaluates ``exp`` of a large positive number.
Sigmoid goes through ``z = exp(-|t|)``, softplus through ``log1p(exp(-|t|))``
and ELU through ``expm1(min(x, 0))``, so inputs up to |x| = 1e4 (and beyond)
give finite outputs and gradients without overflow warnings.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import elementwise as K


def stable_sigmoid(t):
    """sigma(t) without overflow: 1/(1+z) for t >= 0, z/(1+z) for t < 0, z = exp(-|t|)."""
    t = np.asarray(t)
    if t.dtype in (np.float32, np.float64):
        return K.sigmoid(t)  # one fused pass (the NumPy twin is the formula above)
    z = np.exp(-np.abs(t))
    return np.where(t >= 0, 1 / (1 + z), z / (1 + z))


def sigmoid_slope(t):
    """sigma'(t) = sigma(t)(1 - sigma(t)) = z / (1 + z)^2 with z = exp(-|t|)."""
    z = np.exp(-np.abs(t))
    return z / ((1 + z) * (1 + z))


def stable_softplus(t):
    """log(1 + exp(t)) = max(t, 0) + log1p(exp(-|t|))."""
    return np.maximum(t, 0) + np.log1p(np.exp(-np.abs(t)))


# -- Sigmoid: y = sigma(x); dy/dx = y (1 - y) ------------------------------
def sigmoid_forward(x):
    y = stable_sigmoid(x)
    return y, y


def sigmoid_backward(dy, y):
    return dy * y * (1 - y)


# -- Tanh: y = tanh(x); dy/dx = 1 - y^2 -----------------------------------------
def tanh_forward(x):
    y = np.tanh(x)
    return y, y


def tanh_backward(dy, y):
    return dy * (1 - y * y)


# -- ReLU: y = max(0, x); dy/dx = [x > 0] (0 at the kink) ------------------------
def relu_forward(x):
    return np.maximum(x, 0), x  # np.maximum keeps NaN, as PyTorch does


def relu_backward(dy, x):
    return K.relu_backward(x, dy)  # np.where(x > 0, dy, 0), fused


# -- LeakyReLU: y = x (x >= 0), slope*x otherwise; dy/dx = 1 (x > 0), slope ---------
def leaky_relu_forward(x, negative_slope=0.01):
    # at x == 0 both branches give 0, so the select may test x > 0
    return K.leaky_select(x, x, negative_slope), (x, negative_slope)


def leaky_relu_backward(dy, cache):
    x, slope = cache
    return K.leaky_select(x, dy, slope)  # np.where(x > 0, dy, slope * dy), fused


# -- Softplus (PyTorch form) ---------------------------------------------------
#   y = log(1 + exp(beta x)) / beta  where beta x <= threshold, else y = x
#   dy/dx = sigma(beta x)            where beta x <= threshold, else 1
def softplus_forward(x, beta=1.0, threshold=20.0):
    bx = beta * x
    linear = bx > threshold
    y = np.where(linear, x, stable_softplus(bx) / beta)
    return y, (bx, linear)


def softplus_backward(dy, cache):
    bx, linear = cache
    return np.where(linear, dy, dy * stable_sigmoid(bx))


# -- ELU: y = x (x > 0), alpha (exp(x) - 1) otherwise; dy/dx = 1, alpha exp(x) -------
def elu_forward(x, alpha=1.0):
    neg = np.minimum(x, 0)
    y = np.where(x > 0, x, alpha * np.expm1(neg))
    return y, (x, alpha)


def elu_backward(dy, cache):
    x, alpha = cache
    return np.where(x > 0, dy, dy * (alpha * np.exp(np.minimum(x, 0))))


# -- Channel-wise parameters (PReLU, Swish) ----------------------------------------
def channel_view(param, x_ndim):
    """Broadcast a (1,) or (C,) parameter along axis 1 (no channel axis below 2-D)."""
    if param.shape[0] == 1 or x_ndim < 2:
        return param.reshape((1,) * max(x_ndim, 1)) if x_ndim else param.reshape(())
    return param.reshape((1, -1) + (1,) * (x_ndim - 2))


def reduce_to_channel(g, num_parameters):
    """Sum a full-shape gradient over every axis but the channel axis (axis 1)."""
    if num_parameters == 1:
        return np.atleast_1d(g.sum(dtype=g.dtype))
    axes = (0,) + tuple(range(2, g.ndim))
    return g.sum(axis=axes, dtype=g.dtype)


# -- PReLU (He et al. 2015): y = x (x >= 0), a_c x otherwise --------------------------
#   dy/dx = 1 (x > 0), a_c otherwise;  dL/da_c = sum over channel c of dy * min(x, 0)
class PReLUCache(NamedTuple):
    x: np.ndarray
    weight: np.ndarray


def prelu_forward(x, weight):
    a = channel_view(weight, x.ndim)
    return np.where(x >= 0, x, a * x), PReLUCache(x, weight)


def prelu_backward(dy, cache):
    x, weight = cache
    a = channel_view(weight, x.ndim)
    dx = np.where(x > 0, dy, a * dy)
    dw = reduce_to_channel(dy * np.minimum(x, 0), weight.shape[0])
    return dx, dw


# -- RReLU (Xu et al. 2015, PyTorch's form) ---------------------------------------
#   training: slope a ~ U(lower, upper) per element, y = x (x > 0), a x (x <= 0)
#   eval:     a = (lower + upper) / 2
#   dy/dx = the same per-element factor ("noise"), which the cache keeps.
def rrelu_forward(x, lower=1 / 8, upper=1 / 3, training=False, rng=None):
    if training:
        draw_dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.float64
        slopes = lower + (upper - lower) * rng.random(x.shape, dtype=draw_dtype)
        noise = np.where(x > 0, 1, slopes).astype(x.dtype, copy=False)
    else:
        noise = np.where(x > 0, 1, (lower + upper) / 2).astype(x.dtype, copy=False)
    return x * noise, noise


def rrelu_backward(dy, noise):
    return dy * noise


# -- Swish (Ramachandran et al. 2017): y = x sigma(beta x) ------------------------------
#   s = sigma(beta x);  dy/dx = s + beta x s (1 - s);  dy/dbeta = x^2 s (1 - s)
class SwishCache(NamedTuple):
    x: np.ndarray
    beta: np.ndarray
    s: np.ndarray
    slope: np.ndarray  # s (1 - s), computed without cancellation


def swish_forward(x, beta):
    bx = channel_view(beta, x.ndim) * x
    s = stable_sigmoid(bx)
    return x * s, SwishCache(x, beta, s, sigmoid_slope(bx))


def swish_backward(dy, cache):
    x, beta, s, slope = cache
    b = channel_view(beta, x.ndim)
    dx = dy * (s + b * x * slope)
    dbeta = reduce_to_channel(dy * x * x * slope, beta.shape[0])
    return dx, dbeta
