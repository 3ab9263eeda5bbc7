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
