"""The public contract (../shared/API.md): names, argument order, defaults, dtype=."""
import inspect

import numpy as np
import pytest

import nnzero.layers as L
from nnzero import gradcheck, shapes

CONTRACT = {  # class: the leading parameters, in order, with their defaults
    "Linear": [("in_features", None), ("out_features", None), ("bias", True)],
    "Conv2d": [("in_channels", None), ("out_channels", None), ("kernel_size", None),
               ("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1), ("bias", True)],
    "ConvTranspose2d": [("in_channels", None), ("out_channels", None), ("kernel_size", None),
                        ("stride", 1), ("padding", 0), ("output_padding", 0), ("groups", 1),
                        ("bias", True), ("dilation", 1)],
    "MaxPool2d": [("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1),
                  ("return_indices", False), ("ceil_mode", False)],
    "AvgPool2d": [("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False),
                  ("count_include_pad", True), ("divisor_override", None)],
    "StochasticPool2d": [("kernel_size", None), ("stride", None), ("padding", 0),
                         ("ceil_mode", False), ("rng", None)],
    "MixedPool2d": [("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False),
                    ("mode", "random"), ("granularity", "layer"), ("num_channels", None),
                    ("rng", None)],
    "Softplus": [("beta", 1.0), ("threshold", 20.0)],
    "LeakyReLU": [("negative_slope", 0.01)],
    "PReLU": [("num_parameters", 1), ("init", 0.25)],
    "RReLU": [("lower", 1 / 8), ("upper", 1 / 3), ("rng", None)],
    "ELU": [("alpha", 1.0)],
    "Swish": [("num_parameters", 1), ("init", 1.0), ("learnable", True)],
    "Maxout": [("in_features", None), ("out_features", None), ("pieces", None), ("bias", True)],
    "ChannelMaxout": [("pieces", None)],
    "GELU": [("approximate", "none")],
    "Softmax": [("dim", -1)],
    "Flatten": [("start_dim", 1)],
    "Dropout": [("p", 0.5), ("rng", None)],
    "BatchNorm2d": [("num_features", None), ("eps", 1e-5), ("momentum", 0.1), ("affine", True),
                    ("track_running_stats", True)],
    "BatchNorm1d": [("num_features", None), ("eps", 1e-5), ("momentum", 0.1), ("affine", True),
                    ("track_running_stats", True)],
}


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_constructor_signatures(name):
    params = list(inspect.signature(getattr(L, name)).parameters.values())
    got = [(p.name, None if p.default is inspect.Parameter.empty else p.default)
           for p in params[:len(CONTRACT[name])]]
    assert got == CONTRACT[name]
    assert "dtype" in inspect.signature(getattr(L, name)).parameters


@pytest.mark.parametrize("name", sorted(n for n in L.__all__ if n not in ("Module", "Parameter",
                                                                         "Sequential")))
def test_every_layer_accepts_dtype(name):
    assert "dtype" in inspect.signature(getattr(L, name)).parameters


def test_positional_rng_and_shape_and_gradcheck_signatures():
    x = np.ones((2, 1000))
    np.testing.assert_array_equal(L.Dropout(0.5, 3)(x), L.Dropout(0.5, rng=3)(x))
    np.testing.assert_array_equal(L.RReLU(0.1, 0.3, 4)(-x), L.RReLU(0.1, 0.3, rng=4)(-x))
    assert list(inspect.signature(gradcheck).parameters)[:5] == [
        "module_or_fn", "inputs", "eps", "atol", "rtol"]
    assert list(inspect.signature(shapes.pool_output_size).parameters) == [
        "size", "kernel_size", "stride", "padding", "dilation", "ceil_mode"]
    assert list(inspect.signature(shapes.conv_transpose_output_size).parameters) == [
        "size", "kernel_size", "stride", "padding", "output_padding", "dilation"]
    names = [n for n, _ in L.MixedPool2d(2, mode="learned").named_parameters()]
    assert names == ["theta"]
