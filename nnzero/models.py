"""Small reference models for ``python -m nnzero train``."""
from __future__ import annotations

from .layers import (BatchNorm2d, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Linear, MaxPool2d,
                     ReLU, Sequential)


def conv_block(c_in, c_out, rng):
    """Conv 3x3 (same padding) - BatchNorm - ReLU - MaxPool 2x2."""
    return [Conv2d(c_in, c_out, 3, padding=1, bias=False, rng=rng), BatchNorm2d(c_out),
            ReLU(), MaxPool2d(2)]


def cnn(in_shape, num_classes, rng, widths=(32, 64), dropout=0.2):
    """Conv-BatchNorm-ReLU-Pool blocks, then global average pooling and a Linear."""
    c, h, w = in_shape
    layers = []
    for width in widths:
        layers += conv_block(c, width, rng)
        c = width
    layers += [GlobalAvgPool2d(), Dropout(dropout, rng=rng), Linear(c, num_classes, rng=rng)]
    return Sequential(*layers)


def mlp(in_shape, num_classes, rng, hidden=128):
    features = 1
    for d in in_shape:
        features *= d
    return Sequential(Flatten(), Linear(features, hidden, rng=rng), ReLU(),
                      Linear(hidden, num_classes, rng=rng))


MODELS = {"cnn": cnn, "mlp": mlp}
