"""Winograd with the threads splitting each step rather than the batch
(``winograd.py``: ``by_positions``; the rule in ``winograd_rules.py``), and
the filter-transform kernels every family uses (``kernels/winograd_filter.py``)."""
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import check_path_against_im2col, conv_algorithm, seeds, whole_kernel
from nnzero.functional import conv as F
from nnzero.functional import winograd, winograd_rules
from nnzero.kernels import winograd_filter as WF
from nnzero.layers import Conv2d

pytestmark = pytest.mark.usefixtures("split_every_kernel_call")  # see conftest.py

F64 = np.float64
FAMILIES = sorted(winograd._FAMILIES)
# (kernel, stride) of a Conv2d each family runs
LAYER = {"F(2x2,3x3)": (3, 1), "F(4x4,3x3)": (3, 1), "F(3x3,2x2)": (2, 1),
         "F(4x4,2x2)/2": (4, 2)}


def _positions_everywhere(family):
    """Every layer runs by ``family`` with the steps split over the threads."""
    return (mock.patch.object(winograd_rules, "_rule_family", lambda *a: family),
            mock.patch.object(F, "winograd_by_positions", lambda *a: True))


@pytest.mark.parametrize("family", FAMILIES)
@given(n=st.integers(1, 3), c=st.integers(1, 3), o=st.integers(1, 3), h=st.integers(1, 11),
       w=st.integers(1, 11), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       bias=st.booleans(), seed=seeds())
def test_by_positions_gradients_and_agreement_with_im2col(family, n, c, o, h, w, pad, bias,
                                                          seed):
    k, s = LAYER[family]
    if h + 2 * pad[0] < k or w + 2 * pad[1] < k:
        return
    rng = np.random.default_rng(seed)
    layer = Conv2d(c, o, k, stride=s, padding=pad, bias=bias, dtype=F64, rng=rng)
    patch_family, patch_positions = _positions_everywhere(family)
    with patch_family, patch_positions:
        check_path_against_im2col(layer, rng.standard_normal((n, c, h, w)), "auto",
                                  winograd.WinogradCache, rng, family=family)
        with whole_kernel():   # every tap (see check_path_against_im2col)
            layer(rng.standard_normal((n, c, h, w)))
        assert layer._ctx.cache.by_positions


@pytest.mark.parametrize("family", FAMILIES)
def test_by_positions_equals_by_samples(family):
    """The same products and transforms, shared out differently: float32
    results equal to rounding (the products' sums are split alike)."""
    k, s = LAYER[family]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 12, 9, 10)).astype(np.float32)
    got = {}
    for by in (False, True):
        layer = Conv2d(12, 7, k, stride=s, padding=1, rng=2)
        with mock.patch.object(winograd_rules, "_rule_family", lambda *a: family), \
                mock.patch.object(F, "winograd_by_positions", lambda *a, by=by: by):
            y = layer(x)
            assert layer._ctx.cache.by_positions == by and layer._ctx.cache.bounds[-1] == 5
            dx = layer.backward(np.cos(y))
        got[by] = (y, dx, layer.weight.grad, layer.bias.grad)
    for a, b in zip(got[False], got[True]):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())


def test_by_positions_in_eval_mode_transforms_the_tiles_again():
    """Eval mode keeps x, not V; a backward pass after another layer has
    written over the pool's tiles gives the training-mode gradients."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8, 10, 10))
    patch_family, patch_positions = _positions_everywhere("F(2x2,3x3)")
    with patch_family, patch_positions:
        train = Conv2d(8, 8, 3, padding=1, dtype=F64, rng=1)
        infer = Conv2d(8, 8, 3, padding=1, dtype=F64, rng=1).eval()
        y = train(x)
        dy = rng.standard_normal(y.shape)
        dx = train.backward(dy)
        np.testing.assert_array_equal(infer(x), y)
        assert infer._ctx.cache.by_positions and infer._ctx.cache.v is None
        Conv2d(8, 8, 3, padding=1, dtype=F64, rng=2).eval()(x + 1)
        np.testing.assert_allclose(infer.backward(dy), dx, rtol=1e-12, atol=1e-12)
    for got, want in zip(infer.parameters(), train.parameters()):
        np.testing.assert_allclose(got.grad, want.grad, rtol=1e-12, atol=1e-12)


def test_by_positions_refuses_a_shuffle():
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match="shuffle"):
        winograd.winograd_forward(x, np.zeros((2, 2, 2, 2)), (0, 0), (3, 3),
                                  np.zeros((1, 2, 3, 3)), shuffle=((0, 0), (0, 0)),
                                  family="F(3x3,2x2)", by_positions=True)


def _choice(n, c, h, threads=2, kernel=3, stride=1):
    """(family, by_positions) auto picks for an N x C x H x H layer, C -> C,
    padding 1."""
    geo = F.make_geometry(kernel, stride, 1)
    out = geo.out_size(h, h)

    def bounds(m):
        t = max(1, min(threads, m))
        return [m * i // t for i in range(t + 1)]

    with mock.patch.object(winograd_rules, "piece_bounds", bounds), \
            conv_algorithm("auto"):
        family = winograd_rules.winograd_family(geo, (n, c, h, h), c, out, 4)
        return family, winograd_rules.winograd_by_positions(family, (n, c, h, h), c, out)


def test_the_rules_pick_the_split_measured_faster():
    assert _choice(32, 512, 4) == ("F(2x2,3x3)", True)      # conv_small: 4x4 outputs
    assert _choice(16, 512, 4) == (None, False)              # 8 samples a thread
    assert _choice(32, 256, 4) == (None, False)              # 256 channels
    assert _choice(32, 256, 8) == ("F(4x4,3x3)", True)       # 64 tiles a thread
    assert _choice(12, 256, 8) == ("F(4x4,3x3)", True)       # 6 samples a thread
    assert _choice(8, 256, 8) == (None, False)               # 4: batch-minor columns
    assert _choice(32, 512, 8) == ("F(2x2,3x3)", True)       # 256 tiles, 512 channels
    assert _choice(32, 256, 16) == ("F(4x4,3x3)", False)     # 256 tiles, 256 channels
    assert _choice(32, 64, 8) == ("F(4x4,3x3)", False)       # 64 channels
    assert _choice(32, 64, 32) == ("F(4x4,3x3)", False)
    assert _choice(1, 64, 56) == ("F(2x2,3x3)", True)        # one sample: a thread idle
    assert _choice(1, 64, 56, threads=1) == ("F(2x2,3x3)", False)
    s2 = "F(4x4,2x2)/2"                                      # 4x4 kernels at stride 2
    assert _choice(16, 64, 16, kernel=4, stride=2) == (s2, True)    # 32 tiles a thread
    assert _choice(32, 64, 32, kernel=4, stride=2) == (s2, False)   # 256 (conv_k4s2)
    assert _choice(32, 32, 16, kernel=4, stride=2) == (s2, False)   # 32 channels
