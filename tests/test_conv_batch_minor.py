"""Convolution with batch-minor columns (functional/conv_batch_minor.py): the same
answers as one product per sample, for every option, and when it is chosen."""
import numba
import numpy as np
import pytest
from hypothesis import given

from helpers import check_path_against_im2col, conv_algorithm, conv_configs, fits, naive_conv2d
from nnzero import gradcheck
from nnzero.functional import conv as F
from nnzero.functional import conv_batch_minor as B
from nnzero.layers import Conv2d

F64 = np.float64


def _layer(cfg, rng):
    return Conv2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                  cfg["dilation"], cfg["groups"], bias=cfg["bias"], dtype=F64, rng=rng)


@given(cfg=conv_configs())
def test_both_layouts_agree_and_the_per_sample_one_is_gradient_checked(cfg):
    """Every drawn option through the batch-minor functions (called directly, so
    that grouped layers the direct loops would take are covered too) equals
    one product per sample; the
    per-sample layout ('im2col') gets its own gradient check, since on these
    small planes 'auto' takes the batch-minor one (checked in test_conv.py)."""
    if not fits(cfg):
        return
    rng = np.random.default_rng(cfg["seed"])
    layer = _layer(cfg, rng)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    with conv_algorithm("im2col"):
        gradcheck(layer, x)
        y, cache = F.conv2d_forward(x, layer.weight.data, None if layer.bias is None else
                                    layer.bias.data, cfg["stride"], cfg["padding"],
                                    cfg["dilation"], cfg["groups"])
    assert isinstance(cache, F.ConvCache)
    dy = rng.standard_normal(y.shape)
    grads = F.conv2d_backward(dy, cache)
    geo = F.make_geometry(cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"],
                          cfg["groups"])
    y2, cache2 = B.forward(x, layer.weight.data, None if layer.bias is None else
                           layer.bias.data, geo, y.shape[2:])
    np.testing.assert_allclose(y2, y, rtol=1e-10, atol=1e-12)
    for got, want in zip(B.backward(dy, cache2), grads):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n,rides", [(5, True), (1, False)])
def test_bias_in_the_products_or_apart(n, rides):
    """With N*L >= BIAS_RIDES_FROM * K the bias rides in the products (a ones
    row under the columns); below it, it is added to y and summed from dy.
    Both are gradient-checked on the batch-minor path and equal one product
    per sample."""
    rng = np.random.default_rng(5)
    layer = Conv2d(2, 3, 3, padding=1, dtype=F64, rng=1)   # K = 18, L = 16 on 4x4
    x = rng.standard_normal((n, 2, 4, 4))
    assert B._bias_rides(True, 1, False, n * 16, 18) == rides
    check_path_against_im2col(layer, x, "auto", B.BatchMinorCache, rng)


def test_chosen_for_small_planes_unless_the_direct_loops_take_them():
    rng = np.random.default_rng(0)
    side = int(np.sqrt(B.MAX_LENGTH))
    assert side * side == B.MAX_LENGTH                         # 14x14
    cases = [  # (layer, input side, batch-minor?)
        (Conv2d(4, 6, 3, padding=1, dtype=F64, rng=0), side, True),
        (Conv2d(4, 6, 3, padding=1, dtype=F64, rng=0), side + 1, False),
        (Conv2d(4, 6, 3, stride=2, padding=1, dtype=F64, rng=0), 2 * side, True),
        # pointwise: x is the columns; batch-minor only for a large weight (O*C > 1024*L)
        (Conv2d(4, 6, 1, dtype=F64, rng=0), 4, False),
        (Conv2d(4, 4097, 1, dtype=F64, rng=0), 4, True),     # 16388 > 1024*16
        (Conv2d(4, 4096, 1, dtype=F64, rng=0), 4, False),    # 16384: not above
        (Conv2d(4, 6, 1, dtype=F64, rng=0), 3, True),        # under 4x4 planes: always
        (Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=F64, rng=0), 8, True),
        (Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=F64, rng=0), 2 * side + 1, False),
        (Conv2d(4, 6, 3, padding=1, groups=2, dtype=F64, rng=0), 8, False),   # direct loops
    ]
    for layer, size, expected in cases:
        for n in (3, 2):   # a smaller batch after a larger one: the workspace is reshaped
            x = rng.standard_normal((n, 4, size, size))
            y = layer(x)
            assert isinstance(layer._ctx.cache, B.BatchMinorCache) == expected
            ref = naive_conv2d(x, layer.weight.data, layer.bias.data, layer.stride,
                               layer.padding, layer.dilation, layer.groups, y.shape[2:])
            np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
        with conv_algorithm("im2col"):
            layer(x)
            assert not isinstance(layer._ctx.cache, B.BatchMinorCache)


def test_16x16_outputs_take_it_only_for_larger_ungrouped_kernels():
    """The wider rule (WIDER_LENGTH): 16x16 outputs go batch-minor when the layer
    is ungrouped, its kernel larger than 1x1 and its work at least 2^27
    multiply-adds; 17x17 never does."""
    geo = F.make_geometry((3, 3), 2, 1)
    big = (4, 128, 32, 32)                                  # 4*128*128*256*9 = 2^27 * 1.125
    assert B.applicable((16, 16), geo, big, 128)
    assert not B.applicable((17, 17), geo, big, 128)
    assert not B.applicable((16, 16), geo, (4, 4, 32, 32), 6)          # small
    assert not B.applicable((16, 16), F.make_geometry((3, 3), 2, 1, groups=2), big, 128)
    assert not B.applicable((16, 16), F.make_geometry((1, 1), 2, 0), (64,) + big[1:], 512)
    pointwise = F.make_geometry((1, 1), 1, 0)
    assert B.applicable((14, 14), pointwise, (1, 256, 14, 14), 1024)   # O*C > 1024*196
    assert not B.applicable((14, 14), pointwise, (1, 96, 14, 14), 576)
    rng = np.random.default_rng(3)
    layer = Conv2d(128, 128, 3, stride=2, padding=1, rng=0)
    x = rng.standard_normal(big).astype(np.float32)
    y = layer(x)
    assert isinstance(layer._ctx.cache, B.BatchMinorCache)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    grads = [p.grad.copy() for p in layer.parameters()]
    layer.zero_grad()
    with conv_algorithm("im2col"):   # one product per sample: the same answers
        scale = np.abs(y).max()
        np.testing.assert_allclose(layer(x), y, rtol=0, atol=2e-6 * scale)
        np.testing.assert_allclose(layer.backward(dy), dx, rtol=0, atol=2e-6 * np.abs(dx).max())
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_allclose(p.grad, g, rtol=0, atol=2e-6 * np.abs(g).max())


@pytest.mark.parametrize("pointwise", [False, True])
def test_backward_keeps_the_forward_split_of_the_batch(pointwise):
    """The backward pass reads each thread's columns where the forward wrote them,
    even when the thread count changed in between."""
    rng = np.random.default_rng(1)
    layer = Conv2d(3, 5, 1 if pointwise else 3, padding=0 if pointwise else 1, dtype=F64,
                   rng=2)
    # a small pointwise layer takes these products on planes under 4x4 only
    x = rng.standard_normal((5, 3, 3, 3) if pointwise else (5, 3, 6, 6))
    threads = numba.get_num_threads()
    if threads < 2:
        pytest.skip("needs two threads to split the batch")
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    grads = [p.grad.copy() for p in layer.parameters()]
    layer.zero_grad()
    layer(x)
    assert isinstance(layer._ctx.cache, B.BatchMinorCache)
    numba.set_num_threads(1)
    try:
        dx1 = layer.backward(dy)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_allclose(dx1, dx, rtol=1e-12)
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-12)
