"""Depthwise convolutions with 8 channels side by side in the vector lanes
(``kernels/depthwise_lanes.py``): the kernels against their NumPy twin, the
gradients through Conv2d, the dispatch, and the vectorised compilation."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import (compiled_vectorised, conv_path, grouped_arrays, naive_conv2d, seeds,
                     whole_kernel)
from nnzero import gradcheck
from nnzero.functional import conv as F
from nnzero.functional import direct
from nnzero.kernels import depthwise_lanes as DL
from nnzero.kernels import grouped as G
from nnzero.layers import Conv2d

pytestmark = pytest.mark.usefixtures("split_every_kernel_call")  # see conftest.py


def _twin(x, w, bias, dy, p, d):
    """(y, dx, dw) by ``grouped.py``'s NumPy twin with groups = C."""
    c = x.shape[1]
    y = np.empty(dy.shape, x.dtype)
    G.grouped_forward_numpy(x, w, bias, c, *p, *d, y)
    dx = np.empty_like(x)
    units = np.zeros((x.shape[0], c, 1) + w.shape[1:], x.dtype)
    G.grouped_backward_numpy(x, w, dy, c, *p, *d, dx, units, np.empty((0, 0), x.dtype))
    return y, dx, units.sum(axis=0).reshape(w.shape)


# Channel counts that fill no block, one, and one and a part, of 8 and of 16
# lanes (512-bit vectors); output grids of any size, wider than a run of 8
# too (the kernels do not need the rule's narrow rows, only the dispatch does).
@given(n=st.integers(1, 3), c=st.sampled_from([1, 3, 7, 8, 15, 16, 20, 24, 33]),
       h=st.integers(1, 8), w=st.integers(1, 8),
       k=st.sampled_from([(3, 3), (2, 3), (3, 1), (1, 2), (5, 5), (4, 2)]),
       p=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       out=st.tuples(st.integers(1, 9), st.integers(1, 11)), serial=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_lanes_kernels_equal_numpy_twin(n, c, h, w, k, p, d, out, serial, dtype, seed):
    x, wt, bias, dy = grouped_arrays(seed, n, c, 1, 1, h, w, k, out, dtype)
    y = DL.lanes_forward(x, wt, bias, c, p, d, np.full(dy.shape, np.nan, dtype), serial)
    dx, db = np.full(x.shape, np.nan, dtype), np.full(c, np.nan, dtype)
    dw = DL.lanes_backward(x, wt, dy, c, p, d, dx, serial, db=db)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-11)
    for got, expected in zip((y, dx, dw, db), _twin(x, wt, bias, dy, p, d)
                             + (dy.sum(axis=(0, 2, 3)),)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, **tol)


def test_lanes_kernels_keep_samples_and_channels_apart():
    """A block's 8 channels share every vector, and its planes are reused
    from sample to sample: large values in one sample or channel must not
    reach another's outputs or gradients, nor the channels past C of the last
    block (whose lanes hold the previous block's values) reach anything."""
    rng = np.random.default_rng(3)
    n, c = 3, 13
    x = rng.standard_normal((n, c, 5, 6))
    x[1] *= 1e6
    x[:, 3] *= 1e3
    x[:, 9] *= 1e9
    w = rng.standard_normal((c, 1, 3, 3))
    bias = rng.standard_normal(c)
    for pad in ((2, 2), (0, 3), (1, 0)):
        dy = rng.standard_normal((n, c, 5 + 2 * pad[0] - 2, 6 + 2 * pad[1] - 2))
        dy[2] *= 1e6
        y = DL.lanes_forward(x, w, bias, c, pad, (1, 1), np.empty(dy.shape))
        dx, db = np.empty_like(x), np.empty(c)
        dw = DL.lanes_backward(x, w, dy, c, pad, (1, 1), dx, db=db)
        np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
        y_ref, dx_ref, dw_ref = _twin(x, w, bias, dy, pad, (1, 1))
        for got, ref in ((y, y_ref), (dx, dx_ref)):
            for b in range(n):
                for ch in range(c):   # each plane to its own scale
                    np.testing.assert_allclose(got[b, ch], ref[b, ch], rtol=1e-12,
                                               atol=1e-12 * np.abs(ref[b, ch]).max())
        for ch in range(c):
            np.testing.assert_allclose(dw[ch], dw_ref[ch], rtol=1e-10,
                                       atol=1e-10 * np.abs(dw_ref[ch]).max())


@st.composite
def lanes_configs(draw):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    return dict(n=draw(st.integers(1, 2)), c=draw(st.sampled_from([2, 9])), kernel=kernel,
                dilation=dilation,
                padding=draw(st.one_of(st.sampled_from(["same", "valid"]),
                                       st.tuples(st.integers(0, 2), st.integers(0, 2)))),
                bias=draw(st.booleans()), h=draw(st.integers(span[0], span[0] + 3)),
                w=draw(st.integers(span[1], min(span[1] + 3, direct.LANES_MAX_WIDTH))),
                seed=draw(seeds()))


@given(cfg=lanes_configs())
def test_lanes_gradients_and_values(cfg):
    c = cfg["c"]
    rng = np.random.default_rng(cfg["seed"])
    layer = Conv2d(c, c, cfg["kernel"], 1, cfg["padding"], cfg["dilation"], groups=c,
                   bias=cfg["bias"], dtype=np.float64, rng=rng)
    x = rng.standard_normal((cfg["n"], c, cfg["h"], cfg["w"]))
    geo = F.make_geometry(cfg["kernel"], 1, cfg["padding"], cfg["dilation"], c)
    out = geo.out_size(cfg["h"], cfg["w"])
    with whole_kernel():
        layer(x)
        assert conv_path(layer._ctx.cache) == ("lanes" if out[1] <= 8 else "direct")
        gradcheck(layer, x)
    expected = naive_conv2d(x, layer.weight.data, None if layer.bias is None else
                            layer.bias.data, geo.stride, geo.pad_before, geo.dilation, c, out)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("c,o,groups,kernel,stride,out,expected", [
    (32, 32, 32, (3, 3), 1, (7, 7), True),       # MobileNet's last depthwise layers
    (32, 32, 32, (5, 5), 1, (4, 8), True),       # any kernel, rows up to 8 wide
    (32, 32, 32, (3, 3), 1, (2, 9), False),      # wider rows: grouped.py's loops
    (32, 32, 32, (3, 3), 2, (4, 4), False),      # strided: depthwise.py's loops
    (32, 64, 32, (3, 3), 1, (7, 7), False),      # a channel multiplier is not depthwise
    (32, 32, 8, (3, 3), 1, (7, 7), False),       # grouped, not depthwise
])
def test_lanes_dispatch_rule(c, o, groups, kernel, stride, out, expected):
    geo = F.make_geometry(kernel, stride, 1, 1, groups)
    assert direct.lanes(geo, c, o, out) == expected
    if expected:
        assert direct.applicable(geo, c, o, out)
        assert direct._loops(geo, c, o, out) == "lanes"


def test_lanes_wrappers_reject_bad_shapes_and_handle_empty_inputs():
    x = np.zeros((2, 8, 5, 5))
    with pytest.raises(ValueError, match="needs a depthwise weight"):   # a multiplier of 2
        DL.lanes_forward(x, np.zeros((16, 1, 3, 3)), np.zeros(16), 8, (0, 0), (1, 1),
                         np.empty((2, 16, 3, 3)))
    with pytest.raises(ValueError, match="grouped: inconsistent shapes"):
        DL.lanes_forward(x, np.zeros((4, 1, 3, 3)), np.zeros(4), 8, (0, 0), (1, 1),
                         np.empty((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="bias must have shape"):
        DL.lanes_forward(x, np.zeros((8, 1, 3, 3)), np.zeros(4), 8, (0, 0), (1, 1),
                         np.empty((2, 8, 3, 3)))
    with pytest.raises(ValueError, match="dx must be C-contiguous"):
        DL.lanes_backward(x, np.zeros((8, 1, 3, 3)), np.zeros((2, 8, 3, 3)), 8, (0, 0), (1, 1),
                          np.empty((2, 8, 5, 10))[..., ::2])
    out = np.empty((0, 8, 3, 3))
    assert DL.lanes_forward(np.empty((0, 8, 5, 5)), np.ones((8, 1, 3, 3)), np.zeros(8), 8,
                            (0, 0), (1, 1), out) is out
    dx, db = np.full((2, 8, 3, 3), np.nan), np.full(8, np.nan)
    dw = DL.lanes_backward(np.ones((2, 8, 3, 3)), np.ones((8, 1, 3, 3)),
                           np.empty((2, 8, 0, 1)), 8, (0, 0), (1, 1), dx, db=db)
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_array_equal(dw, np.zeros((8, 1, 3, 3)))
    np.testing.assert_array_equal(db, 0)


@pytest.mark.skipif(not DL.JIT_ENABLED, reason="NNZERO_JIT=0: the NumPy twin runs")
def test_lanes_kernels_run_only_what_was_compiled_vectorised(monkeypatch):
    """Every overload the calls use is one ``compile_vectorized`` compiled,
    and numba's SLP flag is left as it was (``helpers.compiled_vectorised``)."""
    def run():
        for dtype in (np.float32, np.float64):
            for n, serial in ((1, False), (3, False), (3, True)):
                x = np.ones((n, 10, 6, 6), dtype)
                w = np.ones((10, 1, 3, 3), dtype)
                y = DL.lanes_forward(x, w, np.zeros(10, dtype), 10, (1, 1), (1, 1),
                                     np.empty((n, 10, 6, 6), dtype), serial)
                np.testing.assert_allclose(y[:, :, 1:5, 1:5], 9)
                DL.lanes_backward(x, w, y, 10, (1, 1), (1, 1), np.empty_like(x), serial)
    kernels = (DL._lanes_forward_range, DL._lanes_backward_range)
    assert compiled_vectorised(monkeypatch, DL, kernels, run) == 4
