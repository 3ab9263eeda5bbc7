"""Winograd's F(4x4, 3x3) (kernels/winograd_f43.py): the matrices compute a
three-tap correlation, the transforms and products give the convolution and
its gradients, and Conv2d by it agrees with im2col (the kernels' NumPy twins:
test_kernels_conv.py)."""
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import check_path_against_im2col, check_tile_algebra, naive_conv2d, seeds
from nnzero.functional import conv as F
from nnzero.functional import winograd_rules
from nnzero.kernels import winograd_f43 as Wk
from nnzero.layers import Conv2d

pytestmark = pytest.mark.usefixtures("split_every_kernel_call")  # see conftest.py

F64 = np.float64


def test_the_matrices_compute_a_three_tap_correlation():
    d, g = np.array([1.0, -2.0, 3.5, 0.25, 4.0, -1.5]), np.array([0.5, -3.0, 2.0])
    expected = [d[i:i + 3] @ g for i in range(4)]
    np.testing.assert_allclose(Wk.AT @ ((Wk.G @ g) * (Wk.BT @ d)), expected, rtol=1e-14)


@given(n=st.integers(1, 3), c=st.integers(1, 3), o=st.integers(1, 3), h=st.integers(1, 13),
       w=st.integers(1, 13), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       seed=seeds())
def test_transforms_and_products_give_the_convolution_and_its_gradients(n, c, o, h, w, pad,
                                                                       seed):
    oh, ow = h + 2 * pad[0] - 2, w + 2 * pad[1] - 2
    if oh < 1 or ow < 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, 3, 3))

    def conv(x_, w_):
        return naive_conv2d(x_, w_, np.zeros(o), (1, 1), pad, (1, 1), 1, (oh, ow))

    check_tile_algebra(Wk, conv, x, wt, pad, (oh, ow), rng)


@given(n=st.integers(1, 2), c=st.integers(1, 3), o=st.integers(1, 3), h=st.integers(1, 10),
       w=st.integers(1, 10), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       bias=st.booleans(), seed=seeds())
def test_conv2d_path_gradients_and_agreement_with_im2col(n, c, o, h, w, pad, bias, seed):
    if h + 2 * pad[0] < 3 or w + 2 * pad[1] < 3:
        return
    rng = np.random.default_rng(seed)
    layer = Conv2d(c, o, 3, padding=pad, bias=bias, dtype=F64, rng=rng)
    # any size, width and batch
    with mock.patch.object(winograd_rules, "WINOGRAD_F43_RULES", ((1, 1),)), \
            mock.patch.object(winograd_rules, "WINOGRAD_BATCH_MINOR_SAMPLES", 1):
        check_path_against_im2col(layer, rng.standard_normal((n, c, h, w)), "auto",
                                  F.winograd.WinogradCache, rng, family="F(4x4,3x3)")


def test_a_nan_stays_in_the_tiles_that_read_it():
    """A NaN in the input reaches every output of the 4x4 tiles whose 6x6
    input tile holds it (more than the windows that hold it: the transforms
    mix a tile's values), and nothing else; im2col gives exactly the windows
    (PyTorch's pattern)."""
    layer = Conv2d(8, 8, 3, padding=1, rng=0)
    x = np.random.default_rng(0).random((8, 8, 16, 16)).astype(np.float32)
    x[3, 5, 6, 9] = np.nan
    windows = np.zeros((16, 16), dtype=bool)
    windows[5:8, 8:11] = True                  # the outputs whose 3x3 window holds (6, 9)
    tiles = np.zeros((16, 16), dtype=bool)     # 4x4 output tiles reading rows 4t-1 ... 4t+4
    for t in range(4):
        for q in range(4):
            if 4 * t - 1 <= 6 <= 4 * t + 4 and 4 * q - 1 <= 9 <= 4 * q + 4:
                tiles[4 * t:4 * t + 4, 4 * q:4 * q + 4] = True
    expect = np.zeros((8, 8, 16, 16), dtype=bool)
    with np.errstate(invalid="ignore"):
        y = layer(x)
        assert layer._ctx.cache.family == "F(4x4,3x3)"
        expect[3] = tiles
        np.testing.assert_array_equal(np.isnan(y), expect)
        old = F.set_conv_algorithm("im2col")
        try:
            y = layer(x)
        finally:
            F.set_conv_algorithm(old)
    expect[3] = windows
    np.testing.assert_array_equal(np.isnan(y), expect)
