"""Modern activations (GELU, SELU, SiLU, Mish, Hardswish) and softmax.

Same conventions as ``activations.py``: ``(y, cache) = *_forward(x)``,
``dx = *_backward(dy, cache)``. ``Phi`` is the standard normal CDF and ``phi``
its density.
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.elementwise import erf
from .activations import stable_sigmoid, stable_softplus

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# -- GELU --------------------------------------------------------------------------
#   exact: y = x Phi(x) = x (1 + erf(x / sqrt 2)) / 2;  dy/dx = Phi(x) + x phi(x)
#   tanh:  u = sqrt(2/pi) (x + 0.044715 x^3);  y = x (1 + tanh u) / 2
#          dy/dx = (1 + tanh u)/2 + x (1 - tanh^2 u) sqrt(2/pi) (1 + 3*0.044715 x^2) / 2
def gelu_forward(x, approximate="none"):
    if approximate == "tanh":
        t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))
        return 0.5 * x * (1 + t), (x, t, None)
    cdf = 0.5 * (1 + erf(x * _INV_SQRT_2))
    return x * cdf, (x, None, cdf)


def gelu_backward(dy, cache):
    x, t, cdf = cache
    if cdf is None:
        du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x * x)
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
    return dy * (cdf + x * pdf)


# -- SELU: y = scale x (x > 0), scale alpha (exp(x) - 1) otherwise -----------------------
def selu_forward(x):
    y = SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))
    return y, x


def selu_backward(dy, x):
    return dy * np.where(x > 0, SELU_SCALE, SELU_SCALE * SELU_ALPHA * np.exp(np.minimum(x, 0)))


# -- SiLU: y = x sigma(x); dy/dx = sigma(x) (1 + x (1 - sigma(x))) -------------------------
def silu_forward(x):
    s = stable_sigmoid(x)
    return x * s, (x, s)


def silu_backward(dy, cache):
    x, s = cache
    return dy * (s * (1 + x * (1 - s)))


# -- Mish: y = x tanh(softplus(x)); dy/dx = t + x (1 - t^2) sigma(x), t = tanh(softplus x) --
def mish_forward(x):
    t = np.tanh(stable_softplus(x))
    return x * t, (x, t)


def mish_backward(dy, cache):
    x, t = cache
    return dy * (t + x * (1 - t * t) * stable_sigmoid(x))


# -- Hardswish: y = 0 (x <= -3), x (x >= 3), x (x + 3) / 6 between ---------------------
#   dy/dx = 0 (x <= -3), 1 (x >= 3), x/3 + 1/2 strictly between (PyTorch 2.13)
def hardswish_forward(x):
    y = np.where(x <= -3, 0, np.where(x >= 3, x, x * (x + 3) / 6))
    return y.astype(x.dtype, copy=False), x


def hardswish_backward(dy, x):
    return np.where(x <= -3, 0, np.where(x >= 3, dy, dy * (x / 3 + 0.5)))


# -- Softmax along ``dim`` ---------------------------------------------------------
#   y = exp(x - logsumexp(x));  dx = y (dy - sum_dim(dy y))
#   log_softmax: y = x - logsumexp(x);  dx = dy - softmax(x) sum_dim(dy)
def _logsumexp(x, dim):
    m = np.max(x, axis=dim, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    return m + np.log(np.sum(np.exp(x - m), axis=dim, keepdims=True))


def softmax_forward(x, dim=-1):
    y = np.exp(x - _logsumexp(x, dim))
    return y, (y, dim)


def softmax_backward(dy, cache):
    y, dim = cache
    return y * (dy - np.sum(dy * y, axis=dim, keepdims=True))


def log_softmax_forward(x, dim=-1):
    y = x - _logsumexp(x, dim)
    return y, (y, dim)


def log_softmax_backward(dy, cache):
    y, dim = cache
    return dy - np.exp(y) * np.sum(dy, axis=dim, keepdims=True)
