"""Conv2d drops the kernel rows and columns that only ever meet zero padding
(``functional/_columns.py: live_taps``): the same outputs and gradients as
the whole kernel, and atrous layers on small maps cost a fraction."""
import numpy as np
import pytest
from hypothesis import given

from helpers import dead_tap_configs, drawn_conv2d, naive_conv2d, whole_kernel
from nnzero import gradcheck
from nnzero.functional import conv as F
from nnzero.functional._columns import live_taps
from nnzero.layers import Conv2d

F64 = np.float64


def _live(kernel, stride, padding, dilation, size):
    """(kernel, pad_before, dilation, first tap) of the trimmed geometry, or None."""
    trimmed = live_taps(F.make_geometry(kernel, stride, padding, dilation), size)
    if trimmed is None:
        return None
    geo, first = trimmed
    return geo.kernel, geo.pad_before, geo.dilation, first


def test_which_taps_are_live():
    # DeepLab's atrous rates on a 17x17 map: only the centre tap meets the image
    assert _live(3, 1, 24, 24, (17, 17)) == ((1, 1), (0, 0), (1, 1), (1, 1))
    assert _live(3, 1, 12, 12, (17, 17)) is None             # 12 < 17: every tap live
    assert _live(3, 1, "same", 10 ** 12, (5, 5)) == ((1, 1), (0, 0), (1, 1), (1, 1))
    # a 1-pixel-high image: the rows above and below are padding
    assert _live(3, 1, 1, 1, (1, 8)) == ((1, 3), (0, 1), (1, 1), (1, 0))
    # stride 2 over a 1-pixel side: rows 0 and 2 meet it (output rows 1 and 0),
    # row 1 never does (it would need output row 1/2); kept between them
    assert _live((3, 1), (2, 1), (2, 0), (1, 1), (1, 3)) is None
    # tap 0 dead above the image, tap 1 live at input row 1: trimming it would
    # need negative padding, so it stays; tap 2 (row 5) is past the image
    assert _live((3, 1), (10, 1), (3, 0), (4, 1), (5, 3)) == ((2, 1), (3, 0), (4, 1), (0, 0))
    # every window in the padding (the output is the bias): nothing to trim to
    assert _live(1, 3, 1, 1, (1, 1)) is None


def test_a_huge_dilation_runs_as_its_centre_tap():
    """A 'same' layer with a dilation far beyond the image (PyTorch computes it;
    the padded copy of the input ran out of memory) is its centre tap, a 1x1
    convolution, and the other taps' gradients are 0."""
    rng = np.random.default_rng(0)
    layer = Conv2d(3, 4, 3, padding="same", dilation=10 ** 12, dtype=F64, rng=1)
    centre = Conv2d(3, 4, 1, dtype=F64, rng=1)
    centre.weight.data[...] = layer.weight.data[:, :, 1:2, 1:2]
    centre.bias.data[...] = layer.bias.data
    x = rng.standard_normal((2, 3, 5, 6))
    y = layer(x)
    np.testing.assert_allclose(y, centre(x), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(layer.backward(dy), centre.backward(dy), rtol=1e-12, atol=1e-12)
    dead = np.ones((3, 3), dtype=bool)
    dead[1, 1] = False
    assert np.all(layer.weight.grad[:, :, dead] == 0)
    np.testing.assert_allclose(layer.weight.grad[:, :, 1:2, 1:2], centre.weight.grad,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, centre.bias.grad, rtol=1e-12, atol=1e-12)


@given(cfg=dead_tap_configs())
def test_trimmed_kernels_give_the_whole_kernels_outputs_and_gradients(cfg):
    layer, x, rng = drawn_conv2d(cfg)
    geo = F.make_geometry(cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"],
                          cfg["groups"])
    y = layer(x)
    assert isinstance(layer._ctx.cache, F.TrimmedCache) == (live_taps(geo, x.shape[2:])
                                                            is not None)
    np.testing.assert_allclose(y, naive_conv2d(
        x, layer.weight.data, None if layer.bias is None else layer.bias.data, geo.stride,
        geo.pad_before, geo.dilation, geo.groups, geo.out_size(cfg["h"], cfg["w"])),
        rtol=1e-10, atol=1e-12)
    gradcheck(layer, x)
    dy = rng.standard_normal(y.shape)
    layer.zero_grad()
    dx = layer.backward(dy)
    grads = [p.grad.copy() for p in layer.parameters()]
    with whole_kernel():
        layer.zero_grad()
        np.testing.assert_allclose(layer(x), y, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.backward(dy), dx, rtol=1e-10, atol=1e-12)
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
def test_a_forced_algorithm_runs_the_whole_kernel(algorithm):
    """Forcing an algorithm keeps every tap (the reference runs, and the tests
    of each path's loops on 1-pixel sides, rely on it)."""
    layer = Conv2d(2, 2, 3, padding=1, dtype=F64, rng=0)
    x = np.ones((1, 2, 1, 6))
    old = F.set_conv_algorithm(algorithm)
    try:
        y = layer(x)
        assert not isinstance(layer._ctx.cache, F.TrimmedCache)
    finally:
        F.set_conv_algorithm(old)
    np.testing.assert_allclose(layer(x), y, rtol=1e-12, atol=1e-12)
    assert isinstance(layer._ctx.cache, F.TrimmedCache)
