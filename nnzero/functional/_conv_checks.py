"""Argument checks of the functional convolutions, at their entry points.

The kernels trust their callers (``kernels/``), and the layers check their
own arguments, but ``conv2d_forward`` and the rest are public too: called
directly with an impossible geometry, a weight that does not match the
input, or an upstream gradient of the wrong shape, they must raise a clear
error rather than index past an array inside a kernel (a dy larger than the
output once made the Winograd gradient transforms write past their buffers).
Each error names the function, the argument, what it got and what it needs.
"""
from __future__ import annotations

import numpy as np

from .._checks import as_float_array, nonnegative_pair, positive_int, positive_pair
from ..shapes import check_output_padding, conv_output_size, conv_transpose_output_size


_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _float4d(a, who, arg, layout, dtype=None):
    """a as a 4-D float32 or float64 array (of ``dtype``, when given: x's)."""
    a = as_float_array(a, who, arg)
    if a.dtype not in _DTYPES:
        raise TypeError(f"{who}: {arg} must be float32 or float64, got {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{who}: {arg} must have x's dtype {dtype}, got {a.dtype}")
    if a.ndim != 4:
        raise ValueError(f"{who}: {arg} must have shape {layout}, got {a.shape}")
    return a


def check_spatial(x, who, arg="x"):
    """Refuse an empty image (H or W of 0) in a non-empty batch, as PyTorch
    does: padding could still give it an output, all bias, of a convolution
    over nothing. An empty batch of any image size is allowed."""
    if (x.ndim == 3 or x.shape[0]) and 0 in x.shape[-2:]:
        raise ValueError(f"{who}: {arg} of shape {x.shape} has an empty spatial axis; "
                         f"H and W must be at least 1 (only the batch may be empty)")


def _weight(weight, who, layout, dtype):
    """weight as a 4-D array of x's dtype with no empty axis."""
    weight = _float4d(weight, who, "weight", layout, dtype)
    if 0 in weight.shape:
        raise ValueError(f"{who}: weight must have no empty axis (at least one channel each "
                         f"way and a kernel of at least 1x1), got {weight.shape}")
    return weight


def _bias(bias, o, dtype, who):
    if bias is None:
        return
    bias = as_float_array(bias, who, "bias")
    if bias.dtype != dtype:
        raise TypeError(f"{who}: bias must have x's dtype {dtype}, got {bias.dtype}")
    if bias.shape != (o,):
        raise ValueError(f"{who}: bias must have shape ({o},) (one per output channel), "
                         f"got {bias.shape}")


def check_conv2d(x, weight, bias, stride, padding, dilation, groups):
    """x (N, C, H, W) float32 or float64, weight (O, C/groups, KH, KW) and bias
    (O,) or None of x's dtype (PyTorch's rule too), and a geometry with an
    output of at least 1x1. Returns x and weight as arrays."""
    who = "conv2d_forward"
    x = _float4d(x, who, "x", "(N, C, H, W)")
    check_spatial(x, who)
    weight = _weight(weight, who, "(O, C/groups, KH, KW)", x.dtype)
    g = positive_int(groups, who, "groups")
    o, cg = weight.shape[:2]
    if x.shape[1] != cg * g or o % g:
        raise ValueError(f"{who}: weight of shape {weight.shape} with groups={g} needs x with "
                         f"{cg * g} channels and O divisible by groups, got x of shape "
                         f"{x.shape}")
    _bias(bias, o, x.dtype, who)
    positive_pair(stride, who, "stride")
    positive_pair(dilation, who, "dilation")
    if not isinstance(padding, str):
        nonnegative_pair(padding, who, "padding")
    try:
        conv_output_size(x.shape[2:], weight.shape[2:], stride, padding, dilation)
    except ValueError as err:
        raise ValueError(f"{who}: x of shape {x.shape}, weight of shape {weight.shape}: "
                         f"{err}") from None
    return x, weight


def check_conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation, groups):
    """x (N, C, H, W) float32 or float64, weight (C, O/groups, KH, KW) and bias
    (O,) or None of x's dtype, an output_padding PyTorch allows and an output
    of at least 1x1. Returns x and weight as arrays."""
    who = "conv_transpose2d_forward"
    x = _float4d(x, who, "x", "(N, C, H, W)")
    check_spatial(x, who)
    weight = _weight(weight, who, "(C, O/groups, KH, KW)", x.dtype)
    g = positive_int(groups, who, "groups")
    if x.shape[1] != weight.shape[0] or weight.shape[0] % g:
        raise ValueError(f"{who}: weight of shape {weight.shape} with groups={g} needs x with "
                         f"{weight.shape[0]} channels, divisible by groups, got x of shape "
                         f"{x.shape}")
    _bias(bias, weight.shape[1] * g, x.dtype, who)
    s = positive_pair(stride, who, "stride")
    d = positive_pair(dilation, who, "dilation")
    nonnegative_pair(padding, who, "padding")
    check_output_padding(output_padding, s, d, who)
    try:
        conv_transpose_output_size(x.shape[2:], weight.shape[2:], s, padding, output_padding, d)
    except ValueError as err:
        raise ValueError(f"{who}: x of shape {x.shape}, weight of shape {weight.shape}: "
                         f"{err}") from None
    return x, weight


def check_dy(dy, out_shape, dtype, who):
    """dy as a contiguous array of the forward's dtype, if it has the
    forward output's shape ``out_shape``."""
    dy = as_float_array(dy, who, "dy")
    if dy.shape != tuple(out_shape):
        raise ValueError(f"{who}: dy must have the shape of the forward's output "
                         f"{tuple(out_shape)}, got {dy.shape}")
    return np.ascontiguousarray(dy, dtype=dtype)
