"""Convolutions whose padded planes would dwarf their arrays run tap by tap
(``functional/conv_taps.py``): strides, paddings and dilations far beyond the
image give PyTorch's outputs and gradients in little memory, where the other
paths needed planes of gigabytes (or were refused by numpy)."""
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given

from helpers import (conv_configs, conv_path, drawn_conv_transpose2d, fits, naive_conv2d,
                     naive_conv_transpose2d, whole_kernel)
from nnzero import gradcheck
from nnzero.functional import conv as F
from nnzero.functional import conv_taps
from nnzero.layers import Conv2d, ConvTranspose2d

F64 = np.float64
EXACT = dict(rtol=1e-10, atol=1e-12)
BIG = 10 ** 9


@contextmanager
def every_layer_by_taps():
    """Send every convolution down the tap-by-tap path, whatever its plane."""
    old = conv_taps.PLANE_FLOOR, conv_taps.PLANE_RATIO
    conv_taps.PLANE_FLOOR, conv_taps.PLANE_RATIO = -1, 0
    try:
        yield
    finally:
        conv_taps.PLANE_FLOOR, conv_taps.PLANE_RATIO = old


def _grads(layer, x, dy):
    """(y, dx, dweight, dbias or None) of a layer on x, for dy."""
    layer.zero_grad()
    y = layer(x)
    dx = layer.backward(dy)
    return y, dx, layer.weight.grad.copy(), None if layer.bias is None else layer.bias.grad.copy()


def _same(got, expected):
    for a, b in zip(got, expected):
        if b is None:
            assert a is None
        else:
            np.testing.assert_allclose(a, b, **EXACT)


@given(cfg=conv_configs())
def test_conv2d_by_taps_equals_the_other_paths(cfg):
    """On ordinary layers too (every option drawn), so the runs' arithmetic is
    checked wherever the other paths are."""
    if not fits(cfg):
        return
    rng = np.random.default_rng(cfg["seed"])
    layer = Conv2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                   cfg["dilation"], cfg["groups"], bias=cfg["bias"], dtype=F64, rng=rng)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    with whole_kernel():
        expected = _grads(layer, x, dy := rng.standard_normal(layer(x).shape))
    with every_layer_by_taps():
        got = _grads(layer, x, dy)
        assert conv_path(layer._ctx.cache) == "taps"
    _same(got, expected)


@given(cfg=conv_configs(transposed=True))
def test_conv_transpose2d_by_taps_equals_the_other_paths(cfg):
    s, d = cfg["stride"], cfg["dilation"]
    drawn = drawn_conv_transpose2d(cfg, (min(s[0], d[0]) - 1, 0))   # output_padding on one side
    if drawn is None:
        return
    layer, x, rng = drawn
    dy = rng.standard_normal(layer(x).shape)
    expected = _grads(layer, x, dy)
    with every_layer_by_taps():
        got = _grads(layer, x, dy)
        assert conv_path(layer._ctx.cache) == "taps"
    _same(got, expected)


# (in, out, groups, kernel, stride, padding, dilation): PyTorch computes each
CONV_CASES = [
    (4, 6, 1, 3, 30000, 30000, 1),        # a 3x3 output; a 60003-row plane before
    (4, 6, 1, 3, BIG, BIG, 1),            # numpy refused the plane's size
    (4, 6, 1, 3, 1000, 30000, 1000),      # a 59x59 output, one live tap a row
    (4, 4, 4, 3, 30000, 30000, 1),        # depthwise (it was killed for memory)
    (4, 8, 2, (3, 2), (BIG, 7), (BIG, 1), (1, 1)),   # one side ordinary
    (4, 6, 1, 3, BIG, 30000, 1000),       # every window in the padding: the bias
]


@pytest.mark.parametrize("c, o, g, k, s, p, d", CONV_CASES)
def test_conv2d_far_past_the_image(c, o, g, k, s, p, d):
    rng = np.random.default_rng(0)
    layer = Conv2d(c, o, k, stride=s, padding=p, dilation=d, groups=g, dtype=F64, rng=1)
    x = rng.standard_normal((2, c, 8, 7))
    tracemalloc.start()
    try:
        y = layer(x)
        dx = layer.backward(dy := rng.standard_normal(y.shape))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert conv_path(layer._ctx.cache) == "taps"
    assert peak < 2 ** 20 + 40 * y.nbytes   # a few copies of the arrays, not a plane
    geo = F.make_geometry(k, s, p, d, g)
    np.testing.assert_allclose(y, naive_conv2d(x, layer.weight.data, layer.bias.data, geo.stride,
                                               geo.pad_before, geo.dilation, g, y.shape[2:]),
                               **EXACT)
    assert dx.shape == x.shape
    np.testing.assert_allclose(layer.bias.grad, dy.sum(axis=(0, 2, 3)), **EXACT)
    gradcheck(layer, x)


CONVT_CASES = [
    # (in, out, groups, kernel, stride, padding, dilation)
    (4, 6, 1, 3, 1, 30000, 30000),        # only the centre tap lands: a 7x7 output
    (4, 6, 1, 3, 3, BIG, BIG),            # numpy refused the uncropped output
    (4, 4, 4, 3, 1, 30000, 30000),        # depthwise
    (4, 8, 2, 3, BIG, 4 * BIG, BIG),      # 1x1 output: taps of rows i + u = 4 land on it
    (2, 3, 1, (2, 3), (30000, 2), (90000, 1), (1, 1)),   # rows far out, columns ordinary
]


@pytest.mark.parametrize("c, o, g, k, s, p, d", CONVT_CASES)
def test_conv_transpose2d_far_past_the_image(c, o, g, k, s, p, d):
    rng = np.random.default_rng(0)
    layer = ConvTranspose2d(c, o, k, stride=s, padding=p, dilation=d, groups=g, dtype=F64,
                            rng=1)
    x = rng.standard_normal((2, c, 7, 7))
    tracemalloc.start()
    try:
        y = layer(x)
        layer.backward(rng.standard_normal(y.shape))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert conv_path(layer._ctx.cache) == "taps"
    assert peak < 2 ** 20 + 40 * (x.nbytes + y.nbytes)
    geo = F.make_geometry(k, s, p, d, g)
    np.testing.assert_allclose(y, naive_conv_transpose2d(x, layer.weight.data, layer.bias.data,
                                                         geo.stride, geo.pad_before,
                                                         geo.dilation, g, y.shape[2:]),
                               **EXACT)
    gradcheck(layer, x)


def test_float32_layers_far_past_the_image_stay_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    for layer in (Conv2d(4, 6, 3, stride=30000, padding=30000, rng=0),
                  ConvTranspose2d(4, 6, 3, padding=30000, dilation=30000, rng=0)):
        y = layer(x)
        dx = layer.backward(np.ones_like(y))
        assert conv_path(layer._ctx.cache) == "taps"
        assert y.dtype == dx.dtype == layer.weight.grad.dtype == np.float32


def test_an_empty_batch_far_past_the_image():
    for layer in (Conv2d(4, 6, 3, stride=30000, padding=30000, dtype=F64, rng=0),
                  ConvTranspose2d(4, 6, 3, padding=30000, dilation=30000, dtype=F64, rng=0)):
        y = layer(np.zeros((0, 4, 8, 8)))
        dx = layer.backward(np.zeros(y.shape))
        assert conv_path(layer._ctx.cache) == "taps"
        assert y.shape[:2] == (0, 6) and dx.shape == (0, 4, 8, 8)
        assert not layer.weight.grad.any() and not layer.bias.grad.any()


def test_which_layers_go_tap_by_tap():
    """Only planes out of all proportion to the arrays; no ordinary layer."""
    def conv(k, s, p, d, size):
        geo = F.make_geometry(k, s, p, d)
        return conv_taps.degenerate(conv_taps.conv_plane(geo, size), size, geo.out_size(*size))
    assert conv(3, 30000, 30000, 1, (8, 8))
    assert conv(3, 1, 3000, 1, (8, 8)) is False   # a 6006x6006 output: the plane is its size
    assert not conv(3, 1, 1, 1, (224, 224))
    assert not conv(7, 2, 3, 1, (224, 224))
    assert not conv(3, 1, 24, 24, (17, 17))       # DeepLab's rate 24, all taps kept
    assert not conv(3, 2, 1, 1, (1, 1))


def test_an_output_no_array_can_hold_is_refused_by_name():
    """Padding 10**9 at stride 1 asks for a 2*10**9-sided output: a clear
    ValueError from the layer, before any buffer is sized."""
    x = np.ones((2, 3, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"Conv2d: the output would have shape \(2, 6, "
                                         r"2000000006, 2000000006\).*more than any array"):
        Conv2d(3, 6, 3, padding=BIG)(x)
    with pytest.raises(ValueError, match=r"ConvTranspose2d: the output would have shape "
                                         r"\(2, 6, 7000000001, 7000000001\)"):
        ConvTranspose2d(3, 6, 3, stride=BIG, padding=1)(x)
