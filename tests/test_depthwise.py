"""Depthwise convolution (groups = in = out channels): the direct path's
gradients and values, its kernels against their NumPy twins, and the
dispatch from Conv2d."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import naive_conv2d, seeds
from nnzero import gradcheck
from nnzero.functional import conv as F
from nnzero.functional.depthwise import DepthwiseCache
from nnzero.kernels import depthwise as D
from nnzero.layers import Conv2d


@st.composite
def depthwise_configs(draw):
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if draw(st.booleans()):
        padding = draw(st.sampled_from(["same", "valid"]))
        stride = (1, 1) if padding == "same" else (draw(st.integers(1, 3)),) * 2
    else:
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    return dict(n=draw(st.integers(1, 2)), c=draw(st.integers(2, 4)), kernel=kernel,
                stride=stride, padding=padding, dilation=dilation, bias=draw(st.booleans()),
                h=draw(st.integers(span[0], 7)), w=draw(st.integers(span[1], 7)),
                seed=draw(seeds()))


@given(cfg=depthwise_configs())
def test_depthwise_gradients_and_values(cfg):
    rng = np.random.default_rng(cfg["seed"])
    c = cfg["c"]
    layer = Conv2d(c, c, cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"],
                   groups=c, bias=cfg["bias"], dtype=np.float64, rng=rng)
    x = rng.standard_normal((cfg["n"], c, cfg["h"], cfg["w"]))
    _, cache = F.conv2d_forward(x, layer.weight.data, None, cfg["stride"], cfg["padding"],
                                cfg["dilation"], c)
    assert isinstance(cache, DepthwiseCache)   # the direct path, not im2col
    gradcheck(layer, x)
    geo = F.make_geometry(cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"], c)
    expected = naive_conv2d(x, layer.weight.data, None if layer.bias is None else
                            layer.bias.data, geo.stride, geo.pad_before, geo.dilation, c,
                            geo.out_size(cfg["h"], cfg["w"]))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 1, 1), (1, 2, 2), (3, 0, 1)])
def test_depthwise_matches_the_im2col_path_in_float32(stride, padding, dilation):
    rng = np.random.default_rng(0)
    layer = Conv2d(6, 6, 3, stride, padding, dilation, groups=6, rng=1)
    x = rng.standard_normal((3, 6, 11, 9)).astype(np.float32)
    results = {}
    for algorithm in ("auto", "im2col"):
        old = F.set_conv_algorithm(algorithm)
        try:
            layer.zero_grad()
            y = layer(x)
            dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
            dx = layer.backward(dy)
            results[algorithm] = (y, dx, layer.weight.grad.copy(), layer.bias.grad.copy())
        finally:
            F.set_conv_algorithm(old)
    for direct, reference in zip(results["auto"], results["im2col"]):
        assert direct.dtype == np.float32
        np.testing.assert_allclose(direct, reference, rtol=1e-4, atol=1e-4)


@given(n=st.integers(0, 2), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       p=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       out=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_depthwise_kernels_equal_numpy_twins(n, c, h, w, k, s, p, d, out, dtype, seed):
    """Any window grid, even one reaching far past the image."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c, 1) + k).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal((n, c) + out).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    ys = [np.full((n, c) + out, np.nan, dtype) for _ in range(2)]
    dxs = [np.full(x.shape, np.nan, dtype) for _ in range(2)]
    dws = [np.full((n, c) + k, np.nan, dtype) for _ in range(2)]
    for i, (fwd, bwd) in enumerate(((D.depthwise_forward_numba, D.depthwise_backward_numba),
                                    (D.depthwise_forward_numpy, D.depthwise_backward_numpy))):
        fwd(x, wt, bias, *s, *p, *d, ys[i])
        bwd(x, wt, dy, *s, *p, *d, dxs[i], dws[i])
    for a, b in ((ys[0], ys[1]), (dxs[0], dxs[1]), (dws[0], dws[1])):
        np.testing.assert_allclose(a, b, **tol)


def test_depthwise_kernels_reuse_their_scratch_across_planes():
    """More planes than scratch slices (64): what one plane leaves in its
    padded plane or its sums must not reach the next."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 30, 7, 6)) * 1e3
    wt = rng.standard_normal((30, 1, 3, 3))
    bias = rng.standard_normal(30)
    for stride, pad in (((1, 1), (1, 2)), ((2, 2), (2, 1))):
        oh = (7 + 2 * pad[0] - 3) // stride[0] + 1
        ow = (6 + 2 * pad[1] - 3) // stride[1] + 1
        dy = rng.standard_normal((5, 30, oh, ow))
        y = D.depthwise_forward(x, wt, bias, stride, pad, (1, 1), np.empty((5, 30, oh, ow)))
        y_ref = np.empty_like(y)
        D.depthwise_forward_numpy(x, wt, bias, *stride, *pad, 1, 1, y_ref)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-9)
        dx = np.empty_like(x)
        dw = D.depthwise_backward(x, wt, dy, stride, pad, (1, 1), dx)
        dx_ref, dw_ref = np.empty_like(x), np.empty((5, 30, 3, 3))
        D.depthwise_backward_numpy(x, wt, dy, *stride, *pad, 1, 1, dx_ref, dw_ref)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(dw, dw_ref.sum(axis=0).reshape(wt.shape), rtol=1e-10,
                                   atol=1e-9)


def test_depthwise_wrappers_reject_inconsistent_shapes():
    x = np.zeros((2, 3, 5, 5))
    w = np.zeros((3, 1, 3, 3))
    with pytest.raises(ValueError, match="depthwise: inconsistent shapes"):
        D.depthwise_forward(x, np.zeros((4, 1, 3, 3)), np.zeros(3), (1, 1), (0, 0), (1, 1),
                            np.empty((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="depthwise: inconsistent shapes"):
        D.depthwise_forward(x, w, np.zeros(3), (1, 1), (0, 0), (1, 1), np.empty((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="bias must have shape"):
        D.depthwise_forward(x, w, np.zeros(2), (1, 1), (0, 0), (1, 1), np.empty((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="y must be C-contiguous"):
        D.depthwise_forward(x, w, np.zeros(3), (1, 1), (0, 0), (1, 1),
                            np.empty((2, 3, 3, 6))[..., ::2])
    with pytest.raises(ValueError, match="dx must be C-contiguous"):
        D.depthwise_backward(x, w, np.zeros((2, 3, 3, 3)), (1, 1), (0, 0), (1, 1),
                             np.empty((2, 3, 5, 4)))
