"""Activation Modules: thin wrappers over ``functional.activations*``.

Parameter-free activations keep the input's float dtype (or cast to
``dtype=`` when one is given); PReLU and Swish hold parameters and compute in
their ``dtype`` (float32 by default). ``inplace=`` is accepted for PyTorch
compatibility and ignored: nnzero never modifies the caller's array.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._checks import as_float_dtype, as_rng, normalize_dim, positive_int
from ..functional import activations as A
from ..functional import activations_extra as E
from .module import Module, Parameter


class _Elementwise(Module):
    """An activation given by a functional pair that takes no arguments."""

    _pair = None  # (forward, backward), set by each subclass

    def __init__(self, inplace=False, dtype=None):
        super().__init__(dtype)
        self.inplace = inplace

    def _forward(self, x):
        return self._pair[0](x)

    def _backward(self, dy, cache):
        return self._pair[1](dy, cache)


class Sigmoid(_Elementwise):
    """y = 1 / (1 + exp(-x)).  Shape: any, output has the input's shape."""
    _pair = (staticmethod(A.sigmoid_forward), staticmethod(A.sigmoid_backward))


class Tanh(_Elementwise):
    """y = tanh(x)."""
    _pair = (staticmethod(A.tanh_forward), staticmethod(A.tanh_backward))


class ReLU(_Elementwise):
    """y = max(0, x); the derivative at 0 is 0."""
    _pair = (staticmethod(A.relu_forward), staticmethod(A.relu_backward))


class SELU(_Elementwise):
    """y = scale * (x if x > 0 else alpha * (exp(x) - 1)) (Klambauer et al. 2017)."""
    _pair = (staticmethod(E.selu_forward), staticmethod(E.selu_backward))


class SiLU(_Elementwise):
    """y = x * sigmoid(x) (Swish with beta = 1)."""
    _pair = (staticmethod(E.silu_forward), staticmethod(E.silu_backward))


class Mish(_Elementwise):
    """y = x * tanh(softplus(x)) (Misra 2019)."""
    _pair = (staticmethod(E.mish_forward), staticmethod(E.mish_backward))


class Hardswish(_Elementwise):
    """y = x * relu6(x + 3) / 6; derivative 0 at -3 and 1 at 3 (PyTorch 2.13)."""
    _pair = (staticmethod(E.hardswish_forward), staticmethod(E.hardswish_backward))


def _check_real(value, who, arg):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{who}: {arg} must be a finite real number, got {value!r}")
    return float(value)


class LeakyReLU(Module):
    """y = x if x >= 0 else negative_slope * x; derivative at 0 is negative_slope."""

    def __init__(self, negative_slope=0.01, inplace=False, dtype=None):
        super().__init__(dtype)
        self.negative_slope = _check_real(negative_slope, "LeakyReLU", "negative_slope")
        self.inplace = inplace

    def _forward(self, x):
        return A.leaky_relu_forward(x, self.negative_slope)

    def _backward(self, dy, cache):
        return A.leaky_relu_backward(dy, cache)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Softplus(Module):
    """y = log(1 + exp(beta x)) / beta, linear where beta x > threshold.

    beta == 0 is refused (PyTorch returns inf there).
    """

    def __init__(self, beta=1.0, threshold=20.0, dtype=None):
        super().__init__(dtype)
        self.beta = _check_real(beta, "Softplus", "beta")
        if self.beta == 0:
            raise ValueError("Softplus: beta must be non-zero, got 0 (log(1+exp(0 x))/0 is inf)")
        self.threshold = _check_real(threshold, "Softplus", "threshold")

    def _forward(self, x):
        return A.softplus_forward(x, self.beta, self.threshold)

    def _backward(self, dy, cache):
        return A.softplus_backward(dy, cache)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class ELU(Module):
    """y = x if x > 0 else alpha * (exp(x) - 1) (Clevert et al. 2015)."""

    def __init__(self, alpha=1.0, inplace=False, dtype=None):
        super().__init__(dtype)
        self.alpha = _check_real(alpha, "ELU", "alpha")
        self.inplace = inplace

    def _forward(self, x):
        return A.elu_forward(x, self.alpha)

    def _backward(self, dy, cache):
        return A.elu_backward(dy, cache)

    def extra_repr(self):
        return f"alpha={self.alpha}"



class GELU(Module):
    """y = x * Phi(x) (exact erf form) or its tanh approximation."""

    def __init__(self, approximate="none", dtype=None):
        super().__init__(dtype)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _forward(self, x):
        return E.gelu_forward(x, self.approximate)

    def _backward(self, dy, cache):
        return E.gelu_backward(dy, cache)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class _SoftmaxBase(Module):
    _pair = None

    def __init__(self, dim=-1, dtype=None):
        super().__init__(dtype)
        if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
            raise TypeError(f"{self._name}: dim must be an int, got {dim!r}")
        self.dim = int(dim)

    def _forward(self, x):
        return self._pair[0](x, normalize_dim(self.dim, x.ndim, self._name))

    def _backward(self, dy, cache):
        return self._pair[1](dy, cache)

    def extra_repr(self):
        return f"dim={self.dim}"


class Softmax(_SoftmaxBase):
    """y = exp(x) / sum(exp(x)) along ``dim`` (computed as exp(x - logsumexp))."""
    _pair = (staticmethod(E.softmax_forward), staticmethod(E.softmax_backward))


class LogSoftmax(_SoftmaxBase):
    """y = x - logsumexp(x) along ``dim``."""
    _pair = (staticmethod(E.log_softmax_forward), staticmethod(E.log_softmax_backward))


class RReLU(Module):
    """Randomized leaky ReLU (Xu et al. 2015), PyTorch's form.

    Training: each element with x <= 0 gets its own slope a ~ U(lower, upper),
    drawn from the layer's ``rng`` and kept for backward. Eval: the slope is
    (lower + upper) / 2.
    """

    def __init__(self, lower=1 / 8, upper=1 / 3, rng=None, inplace=False, dtype=None):
        super().__init__(dtype)
        self.lower = _check_real(lower, "RReLU", "lower")
        self.upper = _check_real(upper, "RReLU", "upper")
        if self.lower > self.upper:
            raise ValueError(f"RReLU: lower must be <= upper, got lower={lower}, upper={upper}")
        self.inplace = inplace
        self.rng = as_rng(rng, "RReLU")

    def _forward(self, x):
        return A.rrelu_forward(x, self.lower, self.upper, self.training, self.rng)

    def _backward(self, dy, cache):
        return A.rrelu_backward(dy, cache)

    def extra_repr(self):
        return f"lower={self.lower}, upper={self.upper}"


class _ChannelParam(Module):
    """Shared by PReLU and Swish: one parameter, or one per channel (axis 1)."""

    def __init__(self, num_parameters, dtype):
        super().__init__(as_float_dtype(dtype, type(self).__name__))
        self.num_parameters = positive_int(num_parameters, self._name, "num_parameters")

    def _check_channels(self, x):
        channels = x.shape[1] if x.ndim >= 2 else 1
        if self.num_parameters != 1 and self.num_parameters != channels:
            raise ValueError(
                f"{self._name}: num_parameters must be 1 or the channel count (axis 1); "
                f"got num_parameters={self.num_parameters} and an input of shape {x.shape} "
                f"with {channels} channel(s)")


class PReLU(_ChannelParam):
    """y = x if x >= 0 else a * x with a learnable (He et al. 2015).

    ``weight`` has shape (num_parameters,): 1 (shared) or C (per channel,
    axis 1). Its gradient sums over batch and spatial positions. The paper
    (and PyTorch) advise no weight decay on it.
    """

    def __init__(self, num_parameters=1, init=0.25, dtype=np.float32):
        super().__init__(num_parameters, dtype)
        self.init = _check_real(init, "PReLU", "init")
        self.weight = Parameter(np.full(self.num_parameters, self.init, dtype=self.dtype))

    def _forward(self, x):
        self._check_channels(x)
        return A.prelu_forward(x, self.weight.data)

    def _backward(self, dy, cache):
        dx, dw = A.prelu_backward(dy, cache)
        self.weight.grad += dw
        return dx

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class Swish(_ChannelParam):
    """y = x * sigmoid(beta * x) (Ramachandran et al. 2017).

    ``beta`` has shape (num_parameters,), initialised to ``init``; it is a
    Parameter unless ``learnable=False``, in which case it is a fixed buffer.
    """

    def __init__(self, num_parameters=1, init=1.0, learnable=True, dtype=np.float32):
        super().__init__(num_parameters, dtype)
        self.init = _check_real(init, "Swish", "init")
        self.learnable = bool(learnable)
        beta = np.full(self.num_parameters, self.init, dtype=self.dtype)
        if self.learnable:
            self.beta = Parameter(beta)
        else:
            self.register_buffer("beta", beta)

    def _beta(self):
        return self.beta.data if self.learnable else self.beta

    def _forward(self, x):
        self._check_channels(x)
        return A.swish_forward(x, self._beta())

    def _backward(self, dy, cache):
        dx, dbeta = A.swish_backward(dy, cache)
        if self.learnable:
            self.beta.grad += dbeta
        return dx

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}, learnable={self.learnable}"
