"""Conv2d and ConvTranspose2d Modules (the math is in ``functional/conv.py``)."""
from __future__ import annotations

import contextlib
import math
import operator
from typing import NamedTuple

import numpy as np

from .._checks import as_float_dtype, nonnegative_pair, positive_int, positive_pair
from ..functional import conv as F
from ..functional import padding as P
from ..functional._conv_checks import check_spatial
from ..shapes import check_output_padding, conv_output_size, conv_transpose_output_size
from ._params import add_grads, weight_and_bias
from .module import Module


@contextlib.contextmanager
def _buffers_of(layer):
    """The layer's reusable buffers, held by one call at a time: the call takes
    them from the layer and gives them back. A call from another Python thread
    meanwhile (serving a model from threads) works in buffers of its own;
    sharing them, each call wrote its columns over the other's and both
    returned wrong outputs. (The dict operations are atomic: no lock to keep
    out of pickles and copies.)"""
    buffers = layer.__dict__.pop("_workspace", None)
    if buffers is None:
        buffers = {}
    try:
        yield buffers
    finally:
        layer.__dict__["_workspace"] = buffers


def _batched(x, who, channels):
    """Accept (N, C, H, W) or unbatched (C, H, W); check the channel count."""
    if x.ndim not in (3, 4):
        raise ValueError(f"{who}: expected input of shape (N, {channels}, H, W) or "
                         f"({channels}, H, W), got {x.shape}")
    batched = x if x.ndim == 4 else x[None]
    if batched.shape[1] != channels:
        raise ValueError(f"{who}: expected input of shape (N, {channels}, H, W), got "
                         f"{x.shape} ({batched.shape[1]} channels)")
    check_spatial(x, who, "input")
    return batched


def _check_output_fits(layer, who, xb, out_size):
    """Refuse an output that no array could hold (a padding of 10**9 at
    stride 1, say): numpy's own refusal named neither the layer nor why."""
    shape = (xb.shape[0], layer.out_channels) + tuple(out_size)
    values = math.prod(shape)
    if values * np.dtype(layer.dtype).itemsize > np.iinfo(np.intp).max:
        raise ValueError(f"{who}: the output would have shape {shape} ({values} values), more "
                         f"than any array can hold; got stride={layer.stride}, padding="
                         f"{layer.padding}, dilation={layer.dilation} on an input of shape "
                         f"{tuple(xb.shape)}")


def _check_groups(groups, in_channels, out_channels, who):
    groups = positive_int(groups, who, "groups")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if value % groups:
            raise ValueError(f"{who}: {name} must be divisible by groups, got "
                             f"{name}={value}, groups={groups}")
    return groups


def _set_common(layer, who, in_channels, out_channels, kernel_size, stride, dilation):
    """Check and store the arguments both convolutions share."""
    layer.in_channels = positive_int(in_channels, who, "in_channels")
    layer.out_channels = positive_int(out_channels, who, "out_channels")
    layer.kernel_size = positive_pair(kernel_size, who, "kernel_size")
    layer.stride = positive_pair(stride, who, "stride")
    layer.dilation = positive_pair(dilation, who, "dilation")


def _conv_repr(self):
    """PyTorch's repr: the arguments that differ from their defaults."""
    s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
         f"stride={self.stride}")
    for name, default in (("padding", (0, 0)), ("output_padding", (0, 0)),
                          ("dilation", (1, 1)), ("groups", 1)):
        value = getattr(self, name, default)
        if value != default:
            s += f", {name}={value}"
    s += ", bias=False" if self.bias is None else ""
    mode = getattr(self, "padding_mode", "zeros")
    return s + (f", padding_mode={mode}" if mode != "zeros" else "")


class _PaddedCache(NamedTuple):
    """Conv2d with padding_mode != 'zeros': the convolution of the padded input."""
    conv: tuple
    pad: tuple


class Conv2d(Module):
    """2-D convolution (cross-correlation) of an (N, C_in, H, W) batch.

    y[n, o] = bias[o] + sum_c weight[o, c] (*) x[n, g*C_in/G + c]  per group g.

    Shape: (N, C_in, H, W) -> (N, C_out, H_out, W_out) with
    H_out = (H + 2*padding - dilation*(kernel_size - 1) - 1) // stride + 1
    (``nnzero.shapes.conv_output_size``); an unbatched (C_in, H, W) works too.
    ``padding`` is an int, a pair, 'valid' or 'same' (stride 1 only; an odd
    total is split with the extra row/column at the bottom/right).
    ``padding_mode`` fills that padding: 'zeros' (default), 'reflect' (mirror
    without repeating the edge; padding < input size), 'replicate' (repeat the
    edge) or 'circular' (wrap around; padding <= input size), as PyTorch: the
    input is padded explicitly (``functional/padding.py``), then convolved
    without padding, and the backward pass folds the padding's gradient back.
    ``weight`` (C_out, C_in/groups, kH, kW) and ``bias`` (C_out,) start as
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C_in/groups*kH*kW (PyTorch).

    Memory: in training mode the forward pass keeps the whole batch's columns
    (up to the im2col budget) in the layer's own buffer for the backward
    pass; every other buffer comes from a pool shared by all layers. In eval
    mode nothing is kept but x: a backward pass rebuilds what it needs.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", dtype=np.float32,
                 rng=None):
        super().__init__(as_float_dtype(dtype, "Conv2d"))
        who = "Conv2d"
        _set_common(self, who, in_channels, out_channels, kernel_size, stride, dilation)
        self.groups = _check_groups(groups, self.in_channels, self.out_channels, who)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"Conv2d: padding string must be 'valid' or 'same', "
                                 f"got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' needs stride 1, got "
                                 f"stride={self.stride}")
            self.padding = padding
        else:
            self.padding = nonnegative_pair(padding, who, "padding")
        if padding_mode not in P.PADDING_MODES:
            raise ValueError(f"Conv2d: padding_mode must be one of {P.PADDING_MODES}, "
                             f"got {padding_mode!r}")
        self.padding_mode = padding_mode
        kh, kw = self.kernel_size
        self.weight, self.bias = weight_and_bias(
            (self.out_channels, self.in_channels // self.groups, kh, kw),
            self.out_channels if bias else None,
            self.in_channels // self.groups * kh * kw, self.dtype, rng, who)
        self._workspace = {}  # column buffers reused from one call to the next

    def output_size(self, size):
        """Spatial output size for an (H, W) input, from ``nnzero.shapes``."""
        return conv_output_size(size, self.kernel_size, self.stride, self.padding,
                                self.dilation)

    def _forward(self, x):
        xb = _batched(x, "Conv2d", self.in_channels)
        try:
            out_size = self.output_size(xb.shape[2:])
        except ValueError as err:
            raise ValueError(f"Conv2d: the (dilated) kernel does not fit the padded input "
                             f"of shape {x.shape}: {err}") from None
        _check_output_fits(self, "Conv2d", xb, out_size)
        padding, pad_cache = self.padding, None
        if self.padding_mode != "zeros":
            geo = F.make_geometry(self.kernel_size, self.stride, self.padding, self.dilation)
            pads = tuple(zip(geo.pad_before, geo.pad_after))   # ((top, bottom), (left, right))
            if any(map(any, pads)):
                P.check_padding_fits(pads, xb.shape[2:], self.padding_mode, "Conv2d")
                xb, pad_cache = P.pad2d_forward(xb, pads, self.padding_mode)
                padding = 0
        with _buffers_of(self) as buffers:
            y, cache = F.conv2d_forward(xb, self.weight.data,
                                        None if self.bias is None else self.bias.data,
                                        self.stride, padding, self.dilation, self.groups,
                                        workspace=buffers, keep_columns=self.training)
        if pad_cache is not None:
            cache = _PaddedCache(cache, pad_cache)
        return (y if x.ndim == 4 else y[0]), cache

    def _backward(self, dy, cache):
        padded = isinstance(cache, _PaddedCache)
        with _buffers_of(self) as buffers:
            dx, dw, db = F.conv2d_backward(dy if dy.ndim == 4 else dy[None],
                                           cache.conv if padded else cache, workspace=buffers)
        if padded:
            dx = P.pad2d_backward(dx, cache.pad)
        add_grads(self, dw, db)
        return dx

    extra_repr = _conv_repr


class ConvTranspose2d(Module):
    """Transposed convolution: the input-gradient of a Conv2d, as a layer.

    Shape: (N, C_in, H, W) -> (N, C_out, H_out, W_out) with
    H_out = (H - 1)*stride - 2*padding + dilation*(kernel_size - 1) + output_padding + 1
    (``nnzero.shapes.conv_transpose_output_size``). ``forward(x, output_size)``
    picks output_padding to reach a requested (H, W) instead (PyTorch's rule).
    ``weight`` is (C_in, C_out/groups, kH, kW); ``bias`` (C_out,). Init
    U(-1/sqrt(k), 1/sqrt(k)), k = C_out/groups*kH*kW, as PyTorch. Memory as
    for Conv2d: in eval mode nothing is kept for a backward pass but x.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 dtype=np.float32, rng=None):
        super().__init__(as_float_dtype(dtype, "ConvTranspose2d"))
        who = "ConvTranspose2d"
        _set_common(self, who, in_channels, out_channels, kernel_size, stride, dilation)
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: padding must be an int or a pair, got "
                             f"{padding!r} (string padding is a Conv2d option)")
        self.padding = nonnegative_pair(padding, who, "padding")
        self.output_padding = check_output_padding(output_padding, self.stride,
                                                   self.dilation, who)
        self.groups = _check_groups(groups, self.in_channels, self.out_channels, who)
        if padding_mode != "zeros":
            raise ValueError(f"ConvTranspose2d: only padding_mode='zeros' is supported, "
                             f"got {padding_mode!r}")
        kh, kw = self.kernel_size
        self.weight, self.bias = weight_and_bias(
            (self.in_channels, self.out_channels // self.groups, kh, kw),
            self.out_channels if bias else None,
            self.out_channels // self.groups * kh * kw, self.dtype, rng, who)
        self._workspace = {}  # column buffers reused from one call to the next

    def output_size(self, size, output_padding=None):
        op = self.output_padding if output_padding is None else output_padding
        return conv_transpose_output_size(size, self.kernel_size, self.stride, self.padding,
                                          op, self.dilation)

    def _output_padding_for(self, x, output_size):
        """PyTorch's rule: output_padding = requested - minimum, within [min, min + stride - 1]."""
        who = "ConvTranspose2d"
        try:   # ints only: int() would truncate 17.9 or parse '17' (PyTorch refuses both)
            sizes = [operator.index(v) for v in output_size]
        except TypeError:
            raise TypeError(f"{who}: output_size must be a sequence of ints, got "
                            f"{output_size!r}") from None
        if len(sizes) not in (2, x.ndim):
            raise ValueError(f"{who}: output_size must have 2 or {x.ndim} elements for a "
                             f"{x.ndim}-D input, got {len(sizes)}")
        sizes = sizes[-2:]
        mins = [(h - 1) * s - 2 * p + d * (k - 1) + 1 for h, s, p, d, k in
                zip(x.shape[-2:], self.stride, self.padding, self.dilation, self.kernel_size)]
        maxs = [m + s - 1 for m, s in zip(mins, self.stride)]
        if any(not lo <= r <= hi for r, lo, hi in zip(sizes, mins, maxs)):
            raise ValueError(f"{who}: requested an output size of {sizes}, but valid sizes "
                             f"range from {mins} to {maxs} (for an input of spatial size "
                             f"{tuple(x.shape[-2:])})")
        return tuple(r - m for r, m in zip(sizes, mins))

    def _forward(self, x, output_size=None):
        xb = _batched(x, "ConvTranspose2d", self.in_channels)
        op = self.output_padding if output_size is None else \
            self._output_padding_for(x, output_size)
        try:
            out_size = self.output_size(xb.shape[2:], op)
        except ValueError as err:
            raise ValueError(f"ConvTranspose2d: input of shape {x.shape} gives no output: "
                             f"{err}") from None
        _check_output_fits(self, "ConvTranspose2d", xb, out_size)
        with _buffers_of(self) as buffers:
            y, cache = F.conv_transpose2d_forward(xb, self.weight.data,
                                                 None if self.bias is None else self.bias.data,
                                                 self.stride, self.padding, op, self.dilation,
                                                 self.groups, workspace=buffers,
                                                 keep_columns=self.training)
        return (y if x.ndim == 4 else y[0]), cache

    def _backward(self, dy, cache):
        with _buffers_of(self) as buffers:
            dx, dw, db = F.conv_transpose2d_backward(dy if dy.ndim == 4 else dy[None], cache,
                                                     workspace=buffers)
        add_grads(self, dw, db)
        return dx

    extra_repr = _conv_repr

