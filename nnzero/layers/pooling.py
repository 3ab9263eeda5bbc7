"""Pooling Modules: max, average, stochastic, mixed, adaptive and global.

All take (N, C, H, W) or an unbatched (C, H, W) and keep the input's float
dtype (MixedPool2d's learned and gated modes hold parameters and compute in
their ``dtype``). Output size: ``nnzero.shapes.pool_output_size``. The math is
in ``functional/pooling.py`` and ``functional/mixed_pool.py``.
"""
from __future__ import annotations

import numpy as np

from .._checks import as_float_dtype, as_rng, positive_int, positive_pair
from ..functional import mixed_pool as M
from ..functional import pooling as P
from ..shapes import check_pool_padding, pool_output_size
from .module import Module, Parameter


class _Pool2d(Module):
    """Shared argument checking and the unbatched-input convention."""

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode, dtype):
        super().__init__(dtype)
        who = self._name
        self.kernel_size = positive_pair(kernel_size, who, "kernel_size")
        self.stride = self.kernel_size if stride is None else positive_pair(stride, who,
                                                                            "stride")
        self.padding = check_pool_padding(padding, self.kernel_size, who)
        self.dilation = positive_pair(dilation, who, "dilation")
        self.ceil_mode = bool(ceil_mode)

    def output_size(self, size):
        return pool_output_size(size, self.kernel_size, self.stride, self.padding,
                                self.dilation, self.ceil_mode)

    def _batch(self, x):
        if x.ndim not in (3, 4):
            raise ValueError(f"{self._name}: expected input of shape (N, C, H, W) or "
                             f"(C, H, W), got {x.shape}")
        return x if x.ndim == 4 else x[None]

    @staticmethod
    def _unbatch(y, x):
        return y if x.ndim == 4 else y[0]

    @staticmethod
    def _batch_dy(dy):
        return dy if dy.ndim == 4 else dy[None]

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        return s + f", ceil_mode={self.ceil_mode}"


class MaxPool2d(_Pool2d):
    """y = max over each window; padding acts as -inf (never selected).

    Ties send the gradient to the first maximum in row-major window order;
    overlapping windows (stride < kernel) add their gradients. With
    ``return_indices`` the forward returns ``(y, indices)``: int64 flat positions
    h*W + w in each input plane, as PyTorch's. ``backward`` takes ``dy`` only.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False, dtype=None):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, dtype)
        self.return_indices = bool(return_indices)

    def _forward(self, x):
        y, cache = P.max_pool2d_forward(self._batch(x), self.kernel_size, self.stride,
                                        self.padding, self.dilation, self.ceil_mode,
                                        self._name)
        y = self._unbatch(y, x)
        if self.return_indices:
            return (y, self._unbatch(cache.idx.astype(np.int64), x)), cache
        return y, cache

    def _backward(self, dy, cache):
        return P.max_pool2d_backward(self._batch_dy(dy), cache)


class AvgPool2d(_Pool2d):
    """y = window sum / divisor, with PyTorch's divisor rules (see functional/pooling.py)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None, dtype=None):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, dtype)
        if divisor_override is not None:
            if (not isinstance(divisor_override, (int, np.integer))
                    or isinstance(divisor_override, bool) or divisor_override == 0):
                raise ValueError(f"AvgPool2d: divisor_override must be a non-zero int or "
                                 f"None, got {divisor_override!r}")
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override

    def _forward(self, x):
        y, cache = P.avg_pool2d_forward(self._batch(x), self.kernel_size, self.stride,
                                        self.padding, self.ceil_mode, self.count_include_pad,
                                        self.divisor_override, self._name)
        return self._unbatch(y, x), cache

    def _backward(self, dy, cache):
        return P.avg_pool2d_backward(self._batch_dy(dy), cache)

    def extra_repr(self):
        s = super().extra_repr() + f", count_include_pad={self.count_include_pad}"
        if self.divisor_override is not None:
            s += f", divisor_override={self.divisor_override}"
        return s


class StochasticPool2d(_Pool2d):
    """Stochastic pooling (Zeiler & Fergus 2013) for non-negative inputs.

    Training: each window outputs one of its cells, cell i with probability
    a_i / sum(a), drawn from ``rng``; the gradient goes to that cell.
    Eval: y = sum(p_i a_i) = sum(a^2) / sum(a), with its exact derivative.
    An all-zero window gives 0; padded cells count as 0 and are never drawn.
    A negative input raises ValueError.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, rng=None,
                 dtype=None):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, dtype)
        self.rng = as_rng(rng, "StochasticPool2d")

    def _forward(self, x):
        y, cache = P.stochastic_pool2d_forward(self._batch(x), self.kernel_size, self.stride,
                                               self.padding, self.ceil_mode, self.training,
                                               self.rng, self._name)
        return self._unbatch(y, x), cache

    def _backward(self, dy, cache):
        return P.stochastic_pool2d_backward(self._batch_dy(dy), cache)


_MODES = ("random", "learned", "gated")
_GRANULARITY = {"random": ("layer", "channel", "region"), "learned": ("layer", "channel"),
                "gated": ("layer", "channel")}


class MixedPool2d(_Pool2d):
    """y = a * MaxPool2d(x) + (1 - a) * AvgPool2d(x) over the same windows.

    mode='random' (Yu et al. 2014): a in {0, 1} drawn with probability 1/2 per
    ``granularity`` ('layer', 'channel' or 'region' = each output) in training;
    the counts of each choice are kept (buffers ``count_max``, ``count_avg``)
    and eval uses the more frequent one (max on a tie).
    mode='learned' (Lee et al. 2016): a = sigmoid(theta), Parameter ``theta``
    of shape (1,) ('layer') or (num_channels,) ('channel'), initialised to 0.
    mode='gated': a = sigmoid(w . window) per output, Parameter ``weight`` of
    shape (kH*kW,) or (num_channels, kH*kW), initialised to 0 (a = 1/2).
    ``num_channels`` is required, and only allowed, for learned or gated
    modes with granularity 'channel'.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, mode="random",
                 granularity="layer", num_channels=None, rng=None, dtype=None):
        who = "MixedPool2d"
        if mode not in _MODES:
            raise ValueError(f"{who}: mode must be one of {_MODES}, got {mode!r}")
        if granularity not in _GRANULARITY[mode]:
            raise ValueError(f"{who}: granularity for mode={mode!r} must be one of "
                             f"{_GRANULARITY[mode]}, got {granularity!r}")
        needs_channels = mode != "random" and granularity == "channel"
        if needs_channels and num_channels is None:
            raise ValueError(f"{who}: mode={mode!r} with granularity='channel' needs "
                             f"num_channels (so its parameters exist before the first forward)")
        if not needs_channels and num_channels is not None:
            raise ValueError(f"{who}: num_channels is only for learned or gated modes with "
                             f"granularity='channel', got num_channels={num_channels!r} with "
                             f"mode={mode!r}, granularity={granularity!r}")
        has_params = mode != "random"
        super().__init__(kernel_size, stride, padding, 1, ceil_mode,
                         as_float_dtype(np.float32 if dtype is None else dtype, who)
                         if has_params else dtype)
        self.mode, self.granularity = mode, granularity
        self.num_channels = None if num_channels is None else positive_int(
            num_channels, who, "num_channels")
        self.rng = as_rng(rng, who)
        k = self.kernel_size[0] * self.kernel_size[1]
        if mode == "learned":
            self.theta = Parameter(np.zeros(self.num_channels or 1, dtype=self.dtype))
        elif mode == "gated":
            shape = (self.num_channels, k) if self.num_channels else (k,)
            self.weight = Parameter(np.zeros(shape, dtype=self.dtype))
        else:
            shape = () if granularity == "layer" else 0  # shaped at the first forward
            self.register_buffer("count_max", np.zeros(shape, dtype=np.int64))
            self.register_buffer("count_avg", np.zeros_like(self.count_max))

    def _check_channels(self, x):
        if self.num_channels is not None and x.shape[1] != self.num_channels:
            raise ValueError(f"MixedPool2d: expected {self.num_channels} channels "
                             f"(num_channels), got input of shape {x.shape}")

    def _random_alpha(self, xb):
        n, c = xb.shape[:2]
        out = pool_output_size(xb.shape[2:], self.kernel_size, self.stride, self.padding, 1,
                               self.ceil_mode) if self.granularity == "region" else None
        if self.training:
            if self.granularity == "layer":
                lam = 1.0 if self.rng.random() < 0.5 else 0.0
                self.count_max = self.count_max + int(lam)
                self.count_avg = self.count_avg + int(1 - lam)
                return lam
            shape = (1, c, 1, 1) if self.granularity == "channel" else (n, c) + out
            lam = (self.rng.random(shape) < 0.5).astype(xb.dtype)
            counts = lam.sum(axis=0).reshape(-1 if self.granularity == "channel" else (c,) + out)
            total = np.full_like(counts, lam.shape[0])
            if self.count_max.shape != counts.shape:
                self.count_max = np.zeros(counts.shape, dtype=np.int64)
                self.count_avg = np.zeros(counts.shape, dtype=np.int64)
            self.count_max = self.count_max + counts.astype(np.int64)
            self.count_avg = self.count_avg + (total - counts).astype(np.int64)
            return lam
        # eval: the choice made more often in training (max on a tie)
        cmax, cavg = self.count_max, self.count_avg
        want = (c,) if self.granularity == "channel" else ((c,) + out if out else ())
        if cmax.shape != want:  # never trained at this shape: fall back to the totals
            cmax, cavg = cmax.sum(), cavg.sum()
        use_max = (cmax >= cavg)
        if use_max.ndim == 0:
            return 1.0 if use_max else 0.0
        return use_max.astype(xb.dtype).reshape((1, c, 1, 1) if use_max.ndim == 1
                                                else (1,) + use_max.shape)

    def _forward(self, x):
        xb = self._batch(x)
        self._check_channels(xb)
        args = (self.kernel_size, self.stride, self.padding, self.ceil_mode, self._name)
        if self.mode == "random":
            y, cache = M.mixed_pool2d_forward(xb, self._random_alpha(xb), *args)
        elif self.mode == "learned":
            y, cache = M.mixed_pool2d_forward(xb, M.learned_alpha(self.theta.data), *args)
        else:
            y, cache = M.gated_pool2d_forward(xb, self.weight.data, *args)
        return self._unbatch(y, x), cache

    def _backward(self, dy, cache):
        dy = self._batch_dy(dy)
        if self.mode == "gated":
            dx, dw = M.gated_pool2d_backward(dy, cache)
            self.weight.grad += dw
            return dx
        if self.mode == "learned":
            self.theta.grad += M.learned_theta_grad(dy, cache, self.theta.data)
        return M.mixed_pool2d_backward(dy, cache)

    def extra_repr(self):
        s = super().extra_repr() + f", mode={self.mode!r}, granularity={self.granularity!r}"
        return s + (f", num_channels={self.num_channels}" if self.num_channels else "")


class _AdaptivePool2d(Module):
    _kind = None

    def __init__(self, output_size, dtype=None):
        super().__init__(dtype)
        if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
            self.output_size = tuple(None if v is None else positive_int(v, self._name,
                                                                          "output_size")
                                     for v in output_size)
        else:
            self.output_size = (positive_int(output_size, self._name, "output_size"),) * 2

    def _forward(self, x):
        if x.ndim not in (3, 4) or min(x.shape[-3:]) < 1:
            raise ValueError(f"{self._name}: expected a non-empty input of shape "
                             f"(N, C, H, W) or (C, H, W), got {x.shape}")
        xb = x if x.ndim == 4 else x[None]
        out = tuple(xb.shape[2 + i] if v is None else v for i, v in enumerate(self.output_size))
        y, cache = P.adaptive_pool2d_forward(xb, out, self._kind)
        return (y if x.ndim == 4 else y[0]), cache

    def _backward(self, dy, cache):
        return P.adaptive_pool2d_backward(dy if dy.ndim == 4 else dy[None], cache)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool2d(_AdaptivePool2d):
    """Average over PyTorch's adaptive windows: output i covers input rows
    [floor(i*H/OH), ceil((i+1)*H/OH)). ``None`` in output_size keeps that size."""
    _kind = "avg"


class AdaptiveMaxPool2d(_AdaptivePool2d):
    """Max over PyTorch's adaptive windows (see AdaptiveAvgPool2d)."""
    _kind = "max"


class GlobalAvgPool2d(Module):
    """Mean over all spatial positions: (N, C, H, W) -> (N, C), ready for a Linear.

    (``AdaptiveAvgPool2d(1)`` gives the same values as (N, C, 1, 1).)
    """

    def __init__(self, dtype=None):
        super().__init__(dtype)

    def _forward(self, x):
        if x.ndim != 4 or min(x.shape[2:]) < 1:
            raise ValueError(f"GlobalAvgPool2d: expected input of shape (N, C, H, W) with "
                             f"H, W >= 1, got {x.shape}")
        return x.mean(axis=(2, 3)), x.shape

    def _backward(self, dy, shape):
        scale = dy / (shape[2] * shape[3])
        return np.broadcast_to(scale[:, :, None, None], shape).copy()

