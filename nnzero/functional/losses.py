"""Loss functions as forward/backward pairs.

Cross-entropy from logits z (N, C) and class indices t (N,), with label
smoothing eps (PyTorch's definition):

    logp = log_softmax(z)
    l_n  = -(1 - eps) logp[n, t_n] - eps * mean_c logp[n, c]
    dl_n/dz_n = softmax(z_n) - q_n,   q_n = (1 - eps) onehot(t_n) + eps / C

The reduction is 'mean' (divide by N), 'sum' or 'none'; the backward scales
by the upstream gradient g, which is a scalar for 'mean'/'sum' and (N,) for
'none'. Never ignore g: a loss inside a bigger graph is not always last.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .activations_extra import log_softmax_forward


class CrossEntropyCache(NamedTuple):
    logp: np.ndarray      # (N, C)
    target: np.ndarray    # (N,) int64
    label_smoothing: float
    reduction: str


def _reduce(per_sample, reduction):
    if reduction == "mean":
        return per_sample.mean() if per_sample.size else per_sample.dtype.type(np.nan)
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def cross_entropy_forward(logits, target, reduction="mean", label_smoothing=0.0):
    # logits: (N, C), target: (N,) ints in [0, C)
    logp, _ = log_softmax_forward(logits, dim=1)
    n = logits.shape[0]
    nll = -logp[np.arange(n), target]
    if label_smoothing:
        per = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)
    else:
        per = nll
    loss = np.asarray(_reduce(per, reduction), dtype=logits.dtype)
    return loss, CrossEntropyCache(logp, target, label_smoothing, reduction)


def cross_entropy_backward(dloss, cache):
    logp, target, eps, reduction = cache
    n, c = logp.shape
    grad = np.exp(logp)
    grad[np.arange(n), target] -= 1 - eps
    if eps:
        grad -= eps / c
    g = np.asarray(dloss, dtype=logp.dtype)
    if reduction == "mean":
        g = g / max(n, 1)
    if reduction == "none":
        g = g[:, None]
    return grad * g


# -- NLL: l_n = -logp[n, t_n] (inputs already log-probabilities) --------------------
def nll_forward(logp, target, reduction="mean"):
    n = logp.shape[0]
    per = -logp[np.arange(n), target]
    return np.asarray(_reduce(per, reduction), dtype=logp.dtype), (logp.shape, target,
                                                                  reduction)


def nll_backward(dloss, cache):
    shape, target, reduction = cache
    n = shape[0]
    g = np.asarray(dloss)
    if reduction == "mean":
        g = g / max(n, 1)
    grad = np.zeros(shape, dtype=g.dtype)
    grad[np.arange(n), target] = -g
    return grad


# -- MSE: l = (x - y)^2; dl/dx = 2 (x - y) ---------------------------------------------
def mse_forward(x, target, reduction="mean"):
    diff = x - target
    return np.asarray(_reduce(diff * diff, reduction), dtype=x.dtype), (diff, reduction)


def mse_backward(dloss, cache):
    diff, reduction = cache
    g = np.asarray(dloss, dtype=diff.dtype)
    if reduction == "mean":
        g = g / max(diff.size, 1)
    return 2 * diff * g


# -- BCE with logits: l = max(z, 0) - z t + log(1 + exp(-|z|)); dl/dz = sigma(z) - t ----
def bce_with_logits_forward(z, target, reduction="mean", pos_weight=None):
    """Stable binary cross-entropy from logits; ``pos_weight`` scales the positive term:
    l = -(w t log sigma(z) + (1 - t) log(1 - sigma(z)))."""
    log_sig = -(np.maximum(-z, 0) + np.log1p(np.exp(-np.abs(z))))       # log sigma(z)
    log_one_minus = -(np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))))  # log(1 - sigma(z))
    w = 1.0 if pos_weight is None else pos_weight
    per = -(w * target * log_sig + (1 - target) * log_one_minus)
    cache = (z, target, w, reduction)
    return np.asarray(_reduce(per, reduction), dtype=z.dtype), cache


def bce_with_logits_backward(dloss, cache):
    z, target, w, reduction = cache
    sig = np.where(z >= 0, 1 / (1 + np.exp(-np.abs(z))), np.exp(-np.abs(z))
                   / (1 + np.exp(-np.abs(z))))
    grad = (1 - target) * sig - w * target * (1 - sig)
    g = np.asarray(dloss, dtype=z.dtype)
    if reduction == "mean":
        g = g / max(z.size, 1)
    return (grad * g).astype(z.dtype, copy=False)
