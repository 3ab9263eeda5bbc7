"""Modules: Parameters, train/eval state, rng, and the forward cache.

``from nnzero.layers import Conv2d, ReLU, Sequential`` and use them like
PyTorch's layers on NumPy arrays; ``layer.backward(dy)`` returns dL/dx and
adds dL/dparam into each parameter's ``.grad``.
"""
from .activations import (ELU, GELU, SELU, Hardswish, LeakyReLU, LogSoftmax, Mish, PReLU,
                          ReLU, RReLU, Sigmoid, SiLU, Softmax, Softplus, Swish, Tanh)
from .conv import Conv2d, ConvTranspose2d
from .linear import ChannelMaxout, Flatten, Linear, Maxout
from .module import Module, Parameter, Sequential
from .normalization import BatchNorm1d, BatchNorm2d, Dropout, Dropout2d
from .pooling import (AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, GlobalAvgPool2d,
                      MaxPool2d, MixedPool2d, StochasticPool2d)

__all__ = [
    "Module", "Parameter", "Sequential",
    "Linear", "Flatten", "Conv2d", "ConvTranspose2d",
    "MaxPool2d", "AvgPool2d", "StochasticPool2d", "MixedPool2d", "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d", "GlobalAvgPool2d",
    "BatchNorm1d", "BatchNorm2d", "Dropout", "Dropout2d", "Maxout", "ChannelMaxout",
    "Sigmoid", "Tanh", "ReLU", "Softplus", "LeakyReLU", "PReLU", "RReLU", "ELU", "Swish",
    "GELU", "SELU", "SiLU", "Mish", "Hardswish", "Softmax", "LogSoftmax",
]
