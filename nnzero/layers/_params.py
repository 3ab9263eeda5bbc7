"""Shared by layers with a ``weight`` and an optional ``bias``."""
from __future__ import annotations

import numpy as np

from .._checks import as_rng
from ..init import default_layer_init_
from .module import Parameter


def weight_and_bias(weight_shape, bias_size, fan_in, dtype, rng, who):
    """Parameters initialised as PyTorch's Linear/Conv: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    ``bias_size`` None means no bias.
    """
    bias = bias_size is not None
    w = np.empty(weight_shape, dtype)
    b = np.empty(bias_size, dtype) if bias else None
    default_layer_init_(w, b, fan_in, as_rng(rng, who))
    return Parameter(w), (Parameter(b) if bias else None)


def add_grads(layer, dw, db):
    """Accumulate a backward pass's parameter gradients (as PyTorch does)."""
    layer.weight.grad += dw
    if layer.bias is not None:
        layer.bias.grad += db
