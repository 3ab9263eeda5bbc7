"""BatchNorm1d/BatchNorm2d and Dropout/Dropout2d Modules."""
from __future__ import annotations

import numbers

import numpy as np

from .._checks import as_float_dtype, as_rng, positive_int
from ..functional import normalization as F
from .module import Module, Parameter


class _BatchNorm(Module):
    _ranks = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=np.float32):
        super().__init__(as_float_dtype(dtype, type(self).__name__))
        who = self._name
        self.num_features = positive_int(num_features, who, "num_features")
        if not isinstance(eps, numbers.Real) or eps <= 0:
            raise ValueError(f"{who}: eps must be a positive number, got {eps!r}")
        if momentum is not None and not (isinstance(momentum, numbers.Real)
                                         and 0 <= momentum <= 1):
            raise ValueError(f"{who}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.eps, self.momentum = float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        c = self.num_features
        self.weight = Parameter(np.ones(c, self.dtype)) if affine else None
        self.bias = Parameter(np.zeros(c, self.dtype)) if affine else None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, self.dtype))
            self.register_buffer("running_var", np.ones(c, self.dtype))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def _forward(self, x):
        who = self._name
        if x.ndim not in self._ranks:
            raise ValueError(f"{who}: expected input of rank {' or '.join(map(str, self._ranks))}"
                             f" with {self.num_features} channels on axis 1, got {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{who}: expected {self.num_features} channels on axis 1 "
                             f"(num_features), got input of shape {x.shape}")
        batch_stats = self.training or not self.track_running_stats
        m = x.size // x.shape[1]
        if self.training and m <= 1:
            raise ValueError(f"{who}: expected more than 1 value per channel when training, "
                             f"got input of shape {x.shape}")
        y, cache, stats = F.batch_norm_forward(
            x, None if self.weight is None else self.weight.data,
            None if self.bias is None else self.bias.data, self.running_mean,
            self.running_var, self.eps, batch_stats)
        if self.training and self.track_running_stats and x.shape[0] > 0:
            self.num_batches_tracked = self.num_batches_tracked + 1
            f = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked
            mean, var = stats
            unbiased = var * (m / (m - 1))
            self.running_mean = ((1 - f) * self.running_mean + f * mean).astype(self.dtype)
            self.running_var = ((1 - f) * self.running_var + f * unbiased).astype(self.dtype)
        return y, cache

    def _backward(self, dy, cache):
        dx, dgamma, dbeta = F.batch_norm_backward(dy, cache)
        if self.weight is not None:
            self.weight.grad += dgamma
            self.bias.grad += dbeta
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) inputs, per channel C.

    Training (or track_running_stats=False): batch statistics (biased variance);
    the running estimates follow running = (1 - f) running + f batch with
    f = momentum (or 1/num_batches_tracked when momentum is None: a cumulative
    average) and the UNBIASED batch variance, as PyTorch. Eval: running statistics.
    """
    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) inputs, per channel (see BatchNorm1d)."""
    _ranks = (4,)


class Dropout(Module):
    """Inverted dropout: in training each element is zeroed with probability p and
    the rest scaled by 1/(1-p); eval is the identity. p = 1 gives zeros."""

    _per_channel = False

    def __init__(self, p=0.5, rng=None, inplace=False, dtype=None):
        super().__init__(dtype)
        if not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
            raise ValueError(f"{self._name}: dropout probability p must be in [0, 1], "
                             f"got {p!r}")
        self.p, self.inplace = float(p), inplace
        self.rng = as_rng(rng, self._name)

    def _forward(self, x):
        if not self.training or self.p == 0:
            return x.copy(), None
        if self._per_channel:
            if x.ndim not in (3, 4):
                raise ValueError(f"{self._name}: expected (N, C, H, W) or (C, H, W), "
                                 f"got {x.shape}")
            shape = x.shape[:-2] + (1, 1)
        else:
            shape = x.shape
        return F.dropout_forward(x, self.p, shape, self.rng)

    def _backward(self, dy, mask):
        return dy.copy() if mask is None else F.dropout_backward(dy, mask)

    def extra_repr(self):
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Channel dropout: one draw per (n, c) feature map, broadcast over H, W."""
    _per_channel = True
