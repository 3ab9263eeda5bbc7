"""Weight initialisers, PyTorch's formulas, filling arrays in place.

Each function takes the array to fill and ``rng`` (a Generator or an int
seed); none reads NumPy's global random state. They return the array.

fan_in / fan_out of a weight of shape (out, in, *kernel) are
``in * prod(kernel)`` and ``out * prod(kernel)``.
"""
from __future__ import annotations

import math

import numpy as np

from ._checks import as_rng


def calculate_fan_in_and_fan_out(shape):
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need a weight of at least 2 dimensions, "
                         f"got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for an activation (PyTorch's table)."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"init.calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _fill_uniform(array, bound, rng):
    array[...] = rng.uniform(-bound, bound, size=array.shape)
    return array


def _fill_normal(array, std, rng):
    array[...] = rng.normal(0.0, std, size=array.shape)
    return array


def uniform_(array, a=0.0, b=1.0, rng=None):
    array[...] = as_rng(rng, "init.uniform_").uniform(a, b, size=array.shape)
    return array


def normal_(array, mean=0.0, std=1.0, rng=None):
    array[...] = as_rng(rng, "init.normal_").normal(mean, std, size=array.shape)
    return array


def zeros_(array):
    array[...] = 0
    return array


def ones_(array):
    array[...] = 1
    return array


def constant_(array, value):
    array[...] = value
    return array


def _fan(shape, mode):
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")


def kaiming_uniform_(array, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """U(-b, b) with b = gain * sqrt(3 / fan). PyTorch's layers use a = sqrt(5),
    which makes b = 1 / sqrt(fan_in)."""
    gain = calculate_gain(nonlinearity, a)
    bound = math.sqrt(3.0) * gain / math.sqrt(_fan(array.shape, mode))
    return _fill_uniform(array, bound, as_rng(rng, "init.kaiming_uniform_"))


def kaiming_normal_(array, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    gain = calculate_gain(nonlinearity, a)
    std = gain / math.sqrt(_fan(array.shape, mode))
    return _fill_normal(array, std, as_rng(rng, "init.kaiming_normal_"))


def xavier_uniform_(array, gain=1.0, rng=None):
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(array.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _fill_uniform(array, bound, as_rng(rng, "init.xavier_uniform_"))


def xavier_normal_(array, gain=1.0, rng=None):
    fan_in, fan_out = calculate_fan_in_and_fan_out(array.shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _fill_normal(array, std, as_rng(rng, "init.xavier_normal_"))


def default_layer_init_(weight, bias, fan_in, rng):
    """PyTorch's Linear/Conv default: weight kaiming_uniform(a=sqrt 5), bias
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)); both reduce to bound 1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    _fill_uniform(weight, bound, rng)
    if bias is not None:
        _fill_uniform(bias, bound, rng)
