"""``summary(model, input_shape)``: Keras-style table of output shapes, parameters, FLOPs.

Output shapes of convolution and pooling layers come from ``nnzero.shapes``;
other layers are run once on zeros to learn their shape. FLOPs count a
multiply-add as 2 (convolution: 2 * C_in/groups * kH * kW per output value).
"""
from __future__ import annotations

import numpy as np

from . import layers as L
from .shapes import conv_output_size, conv_transpose_output_size, pool_output_size


def _out_shape(layer, shape):
    n = shape[0]
    if isinstance(layer, L.Conv2d):
        return (n, layer.out_channels) + tuple(layer.output_size(shape[2:]))
    if isinstance(layer, L.ConvTranspose2d):
        return (n, layer.out_channels) + tuple(conv_transpose_output_size(
            shape[2:], layer.kernel_size, layer.stride, layer.padding, layer.output_padding,
            layer.dilation))
    if isinstance(layer, (L.MaxPool2d, L.AvgPool2d, L.StochasticPool2d, L.MixedPool2d)):
        return shape[:2] + tuple(pool_output_size(shape[2:], layer.kernel_size, layer.stride,
                                                  layer.padding, layer.dilation,
                                                  layer.ceil_mode))
    probe = np.zeros((1,) + tuple(shape[1:]), dtype=layer.dtype or np.float32)
    was = layer.training
    layer.eval()
    out = layer(probe)
    layer.train(was)
    out = out[0] if isinstance(out, tuple) else out
    return (n,) + out.shape[1:]


def _flops(layer, in_shape, out_shape):
    out_size = int(np.prod(out_shape[1:]))
    if isinstance(layer, L.Conv2d):
        kh, kw = layer.kernel_size
        return 2 * out_size * (layer.in_channels // layer.groups) * kh * kw
    if isinstance(layer, L.ConvTranspose2d):
        kh, kw = layer.kernel_size
        return 2 * int(np.prod(in_shape[1:])) * (layer.out_channels // layer.groups) * kh * kw
    if isinstance(layer, (L.Linear, L.Maxout)):
        return 2 * layer.weight.data.size * int(np.prod(in_shape[1:-1] or (1,)))
    if isinstance(layer, (L.Flatten,)):
        return 0
    return out_size  # about one operation per output value


def summary(model, input_shape, print_fn=print):
    """Print (and return as a string) a table of the layers of ``model``.

    ``input_shape`` is one sample's shape, e.g. (1, 8, 8); the batch shows as N.
    """
    children = list(model) if isinstance(model, L.Sequential) else [model]
    shape = (None,) + tuple(input_shape)
    rows, total_params, total_flops = [], 0, 0
    for i, layer in enumerate(children):
        out = _out_shape(layer, (1,) + shape[1:])
        out = (None,) + tuple(out[1:])
        params = sum(p.data.size for p in layer.parameters())
        flops = _flops(layer, (1,) + shape[1:], (1,) + out[1:])
        rows.append((f"{i}: {type(layer).__name__}", "(N, " + ", ".join(map(str, out[1:])) + ")",
                     params, flops))
        total_params += params
        total_flops += flops
        shape = out
    width = max(28, max(len(r[0]) for r in rows) + 2)
    lines = [f"{'Layer (type)':<{width}}{'Output Shape':<22}{'Param #':>10}{'FLOPs':>14}",
             "=" * (width + 46)]
    for name, out, params, flops in rows:
        lines.append(f"{name:<{width}}{out:<22}{params:>10,}{flops:>14,}")
    lines += ["=" * (width + 46), f"Total params: {total_params:,}",
              f"FLOPs per sample (forward): {total_flops:,}"]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
