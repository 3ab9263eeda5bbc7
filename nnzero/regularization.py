"""Explicit regularization: L1 and L2 penalties on parameters.

    L2:  R = (lambda / 2) sum w^2      dR/dw = lambda w
    L1:  R = lambda sum |w|            dR/dw = lambda sign(w)   (sign(0) = 0)

Add the penalty's gradient to the data gradient before the optimizer step
(``add_*_grad``) and its value to the reported loss. Biases, normalization
scales and shifts and PReLU slopes are usually left out (He et al. 2015):
``decay_parameters(model)`` returns the weights of Linear and convolution layers
only.
"""
from __future__ import annotations

import numpy as np


def l2_penalty(params, lam):
    return 0.5 * lam * sum(float(np.sum(p.data.astype(np.float64) ** 2)) for p in params)


def add_l2_grad(params, lam):
    for p in params:
        p.grad += lam * p.data


def l1_penalty(params, lam):
    return lam * sum(float(np.sum(np.abs(p.data.astype(np.float64)))) for p in params)


def add_l1_grad(params, lam):
    for p in params:
        p.grad += lam * np.sign(p.data)


def decay_parameters(model):
    """The parameters a weight penalty should see: ``weight`` of Linear, Conv and
    Maxout layers (not biases, BatchNorm, PReLU, Swish or pooling parameters)."""
    from .layers import Conv2d, ConvTranspose2d, Linear, Maxout
    kinds = (Linear, Conv2d, ConvTranspose2d, Maxout)
    return [m.weight for m in model.modules() if isinstance(m, kinds)]
