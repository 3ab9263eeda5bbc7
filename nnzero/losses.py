"""Loss Modules: ``loss = criterion(logits, target)``, then ``criterion.backward()``.

``backward(dloss=1.0)`` returns dL/dlogits scaled by the upstream gradient
``dloss`` (a scalar for reduction 'mean'/'sum', shape (N,) for 'none').
"""
from __future__ import annotations

import numbers

import numpy as np

from .functional import losses as F
from .layers.module import Module

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    def __init__(self, reduction="mean", dtype=None):
        super().__init__(dtype)
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{self._name}: reduction must be one of {_REDUCTIONS}, "
                             f"got {reduction!r}")
        self.reduction = reduction

    def backward(self, dy=None):
        if dy is None and self._ctx is not None:
            dy = np.ones(self._ctx.out_shape, dtype=self._ctx.dtype)
        return super().backward(dy)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


def _class_targets(target, logits, who):
    target = np.asarray(target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"{who}: target must hold integer class indices, got dtype "
                        f"{target.dtype}; use target.astype(np.int64)")
    if logits.ndim != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"{who}: expected logits (N, C) and target (N,), got "
                         f"{logits.shape} and {target.shape}")
    if target.size and (target.min() < 0 or target.max() >= logits.shape[1]):
        raise ValueError(f"{who}: target classes must lie in [0, {logits.shape[1] - 1}], "
                         f"got values in [{target.min()}, {target.max()}]")
    return target.astype(np.int64, copy=False)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits (N, C) and class indices (N,)."""

    def __init__(self, reduction="mean", label_smoothing=0.0, dtype=None):
        super().__init__(reduction, dtype)
        if (not isinstance(label_smoothing, numbers.Real)
                or not 0.0 <= label_smoothing <= 1.0):
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], "
                             f"got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def _forward(self, logits, target):
        target = _class_targets(target, logits, self._name)
        return F.cross_entropy_forward(logits, target, self.reduction, self.label_smoothing)

    def _backward(self, dy, cache):
        return F.cross_entropy_backward(dy, cache)

    def extra_repr(self):
        extra = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return super().extra_repr() + extra


class NLLLoss(_Loss):
    """Negative log-likelihood of class indices, from log-probabilities (N, C)."""

    def _forward(self, logp, target):
        return F.nll_forward(logp, _class_targets(target, logp, self._name), self.reduction)

    def _backward(self, dy, cache):
        return F.nll_backward(dy, cache)


def _float_targets(target, x, who):
    target = np.asarray(target)
    if target.dtype.kind != "f":
        target = target.astype(x.dtype)
    if target.shape != x.shape:
        raise ValueError(f"{who}: target must have the input's shape {x.shape}, got "
                         f"{target.shape}")
    return target.astype(x.dtype, copy=False)


class MSELoss(_Loss):
    """Mean squared error (x - target)^2."""

    def _forward(self, x, target):
        return F.mse_forward(x, _float_targets(target, x, self._name), self.reduction)

    def _backward(self, dy, cache):
        return F.mse_backward(dy, cache)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], computed
    stably from the logits; optional ``pos_weight`` (broadcast over the last axis)."""

    def __init__(self, reduction="mean", pos_weight=None, dtype=None):
        super().__init__(reduction, dtype)
        self.pos_weight = None if pos_weight is None else np.asarray(pos_weight, np.float64)

    def _forward(self, z, target):
        t = _float_targets(target, z, self._name)
        w = None if self.pos_weight is None else self.pos_weight.astype(z.dtype)
        return F.bce_with_logits_forward(z, t, self.reduction, w)

    def _backward(self, dy, cache):
        return F.bce_with_logits_backward(dy, cache)
