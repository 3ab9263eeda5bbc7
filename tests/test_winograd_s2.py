"""Winograd's F(4x4, 2x2) over the phases of a stride-2 convolution
(kernels/winograd_s2.py): the matrices compute a two-tap correlation, the
transforms and products give the stride-2 convolution and its gradients, and
Conv2d takes the path where its rule says (the kernels' NumPy twins:
test_kernels_conv.py; the layer's gradients by this path: test_conv.py)."""
import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import check_tile_algebra, float64_im2col, naive_conv2d, seeds
from nnzero.functional import conv as F
from nnzero.functional import winograd_rules
from nnzero.kernels import winograd_s2 as Wk
from nnzero.layers import Conv2d

pytestmark = pytest.mark.usefixtures("split_every_kernel_call")  # see conftest.py

F64 = np.float64


def _out(size, pad, k):
    return (size + 2 * pad - k) // 2 + 1


def test_the_matrices_compute_a_two_tap_correlation():
    """A^T [(G g) . (B^T d)] = (d_i g0 + d_{i+1} g1 for i = 0 ... 3)."""
    d, g = np.array([1.0, -2.0, 3.5, 0.25, 4.0]), np.array([0.5, -3.0])
    expected = [d[i] * g[0] + d[i + 1] * g[1] for i in range(4)]
    np.testing.assert_allclose(Wk.AT @ ((Wk.G @ g) * (Wk.BT @ d)), expected, rtol=1e-14)


@given(k=st.sampled_from([3, 4]), seed=seeds())
def test_phase_weights_split_every_tap_once_and_their_gradient_is_the_adjoint(k, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((2, 3, k, k))
    wp = Wk.weight_to_phases(w)
    assert wp.shape == (2, 12, 2, 2)
    assert np.count_nonzero(wp) == w.size and np.isclose(np.sum(wp), np.sum(w))
    # <W'(w), e> = <w, W'^T(e)> for any e: weight_from_phases is the adjoint
    e = rng.standard_normal(wp.shape)
    np.testing.assert_allclose(np.sum(wp * e), np.sum(w * Wk.weight_from_phases(e, k)))
    np.testing.assert_array_equal(Wk.weight_from_phases(wp, k), w)


@given(n=st.integers(1, 3), c=st.integers(1, 3), o=st.integers(1, 3), h=st.integers(3, 14),
       w=st.integers(3, 14), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       k=st.sampled_from([3, 4]), seed=seeds())
def test_transforms_and_products_give_the_convolution_and_its_gradients(n, c, o, h, w, pad, k,
                                                                       seed):
    """Forward through the kernels and the 25 products against the direct sum,
    and the backward kernels against that sum's directional derivatives."""
    oh, ow = _out(h, pad[0], k), _out(w, pad[1], k)
    if oh < 1 or ow < 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, k, k))

    def conv(x_, w_):
        return naive_conv2d(x_, w_, np.zeros(o), (2, 2), pad, (1, 1), 1, (oh, ow))

    check_tile_algebra(Wk, conv, x, wt, pad, (oh, ow), rng, split=Wk.weight_to_phases,
                       join=lambda dw: Wk.weight_from_phases(dw, k))


def test_auto_takes_it_for_wide_4x4_kernels_only_and_float32_agrees():
    """winograd_rules.WINOGRAD_STRIDE2_RULES: 4x4 kernels, outputs from 8x8, 16 channels,
    4 samples per thread (winograd_rules.WINOGRAD_BATCH_MINOR_SAMPLES)."""
    n = winograd_rules.WINOGRAD_BATCH_MINOR_SAMPLES * numba.get_num_threads()
    for c, o, size, k, batch, takes in [(16, 32, 16, 4, n, True), (32, 64, 16, 4, n, True),
                                        (32, 64, 16, 4, n - 1, False), (32, 64, 16, 4, 1, False),
                                        (8, 64, 16, 4, n, False), (64, 64, 8, 4, n, False),
                                        (64, 64, 16, 3, n, False)]:
        layer = Conv2d(c, o, k, stride=2, padding=1, rng=0)
        layer(np.zeros((batch, c, size, size), np.float32))
        assert isinstance(layer._ctx.cache, F.winograd.WinogradCache) is takes, (c, o, size, k)
    rng = np.random.default_rng(0)
    layer = Conv2d(32, 48, 4, stride=2, padding=1, rng=0)
    x = rng.standard_normal((n, 32, 34, 30)).astype(np.float32)
    y = layer(x)
    assert isinstance(layer._ctx.cache, F.winograd.WinogradCache)
    np.testing.assert_allclose(y, float64_im2col(layer, x), rtol=1e-4,
                               atol=1e-4)   # float32 rounding only
