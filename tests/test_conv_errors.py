"""Conv2d and ConvTranspose2d refuse bad configurations and inputs with a
ValueError or TypeError naming the layer, the argument, what it got and what
it needs (the functional convolutions' own checks: test_conv_functional.py)."""
import re

import numpy as np
import pytest

from nnzero.functional import conv as F
from nnzero.layers import Conv2d, ConvTranspose2d

F64 = np.float64


@pytest.mark.parametrize("make,x,err,match", [
    (lambda: Conv2d(3, 4, 3), np.zeros((3, 5)), ValueError,
     r"Conv2d: expected input of shape \(N, 3, H, W\) or \(3, H, W\), got \(3, 5\)"),
    (lambda: Conv2d(4, 4, 3), np.zeros((1, 3, 5, 5)), ValueError,
     r"expected input of shape \(N, 4, H, W\), got \(1, 3, 5, 5\) \(3 channels\)"),
    (lambda: Conv2d(3, 4, 7), np.zeros((1, 3, 5, 5)), ValueError, "kernel does not fit"),
    (lambda: Conv2d(3, 4, 3, dilation=3), np.zeros((1, 3, 6, 6)), ValueError,
     "kernel does not fit"),
    (lambda: Conv2d(3, 4, 3), np.zeros((1, 3, 5, 5), dtype=np.uint8), TypeError,
     r"astype\(np.float32\) / 255"),
    (lambda: ConvTranspose2d(3, 4, 3, padding=3), np.zeros((1, 3, 1, 1)), ValueError,
     "gives no output"),
])
def test_forward_errors(make, x, err, match):
    with pytest.raises(err, match=match):
        make()(x)


@pytest.mark.parametrize("make,err,match", [
    (lambda: Conv2d(3, 4, 3, groups=2), ValueError,
     "in_channels must be divisible by groups, got in_channels=3, groups=2"),
    (lambda: Conv2d(4, 3, 3, groups=2), ValueError, "out_channels must be divisible by groups"),
    (lambda: Conv2d(4, 4, 3, groups=0), ValueError, "groups must be a positive int"),
    (lambda: Conv2d(3, 4, 0), ValueError, "kernel_size must be positive"),
    (lambda: Conv2d(3, 4, 3, stride=0), ValueError, "stride must be positive"),
    (lambda: Conv2d(3, 4, 3, dilation=(1, 0)), ValueError, "dilation must be positive"),
    (lambda: Conv2d(3, 4, 3, padding=-1), ValueError, "padding must be non-negative"),
    (lambda: Conv2d(3, 4, 3, stride=2, padding="same"), ValueError,
     "padding='same' needs stride 1"),
    (lambda: Conv2d(3, 4, 3, padding="full"), ValueError, "'valid' or 'same', got 'full'"),
    (lambda: ConvTranspose2d(3, 4, 3, padding_mode="reflect"), ValueError,
     "only padding_mode='zeros'"),
    (lambda: ConvTranspose2d(3, 4, 3, stride=2, output_padding=2), ValueError,
     "output_padding must be smaller than either stride or dilation"),
    (lambda: ConvTranspose2d(3, 4, 3, padding="same"), ValueError, "padding must be an int"),
    (lambda: Conv2d(3, 4, 2.5), TypeError, "kernel_size must be an int or a pair"),
])
def test_constructor_errors(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_empty_images_only_in_an_empty_batch():
    """As in PyTorch, an empty batch may hold images of any size, even empty
    ones that padding gives an output; the same images in a batch are refused
    (their output would be the bias alone, a convolution over nothing)."""
    conv = Conv2d(2, 3, 1, padding=1, dtype=F64, rng=0)
    t = ConvTranspose2d(2, 3, 3, dtype=F64, rng=0)
    for layer in (conv, t):
        layer.zero_grad()
        assert layer(np.zeros((0, 2, 0, 4))).shape == (0, 3, 2, 6)
        assert layer.backward(np.zeros((0, 3, 2, 6))).shape == (0, 2, 0, 4)
        assert not layer.weight.grad.any() and not layer.bias.grad.any()
        name = type(layer).__name__
        for shape in ((1, 2, 0, 4), (3, 2, 4, 0), (2, 0, 4)):
            with pytest.raises(ValueError, match=rf"{name}: input of shape {re.escape(str(shape))}"
                                                 r" has an empty spatial axis"):
                layer(np.zeros(shape))


@pytest.mark.parametrize("nbytes,err,match", [
    (0, ValueError, "nbytes must be positive, got 0"),
    (-5, ValueError, "nbytes must be positive, got -5"),
    (1.5, TypeError, "nbytes must be an int, got 1.5"),
    ("10", TypeError, "nbytes must be an int, got '10'"),
    (True, TypeError, "nbytes must be an int, got True"),
])
def test_im2col_budget_errors(nbytes, err, match):
    old = F.im2col_budget()
    with pytest.raises(err, match=f"set_im2col_budget: {match}"):
        F.set_im2col_budget(nbytes)
    assert F.im2col_budget() == old   # a refused budget leaves the old one


@pytest.mark.parametrize("value,expect", [
    (3, (3, 3)), ((2, 5), (2, 5)), ([2, 5], (2, 5)), (np.int64(4), (4, 4)),
    ((np.int32(1), 2), (1, 2)), (np.array([6, 7]), (6, 7))])
def test_int_and_pair_arguments_come_back_as_python_int_pairs(value, expect):
    got = Conv2d(2, 2, value, padding=value).padding
    assert got == expect and all(type(v) is int for v in got)
    # the stride reaches the convolution as parsed: a 1x1 kernel swapping the
    # channels (one scaled by 3) samples x every expect[0] rows, expect[1] columns
    x = np.arange(2 * 9 * 9, dtype=float).reshape(1, 2, 9, 9)
    weight = np.array([[0.0, 1.0], [3.0, 0.0]]).reshape(2, 2, 1, 1)
    got = F.conv2d_forward(x, weight, stride=value)[0]
    sampled = x[:, :, ::expect[0], ::expect[1]]
    np.testing.assert_array_equal(got, np.concatenate([sampled[:, 1:], 3 * sampled[:, :1]], 1))


@pytest.mark.parametrize("value", [True, (True, 1), (1, np.bool_(True)), 2.0, (1, 2.0),
                                   (1, 2, 3), "2", None])
def test_bools_floats_and_other_shapes_are_not_int_pairs(value):
    with pytest.raises(TypeError, match=r"Conv2d: stride must be an int or a pair of ints, "
                                        r"got " + re.escape(repr(value))):
        Conv2d(2, 2, 1, stride=value)
