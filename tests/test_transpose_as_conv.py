"""Stride-1 transposed convolutions computed as the convolution they equal
(``functional/transpose_as_conv.py``): the same outputs and gradients as the
col2im path, and the path taken where it was measured faster."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import conv_algorithm, conv_path, seeds
from nnzero import gradcheck
from nnzero.functional.transpose_as_conv import AsConvCache
from nnzero.layers import ConvTranspose2d

F64 = np.float64


@st.composite
def stride_one_configs(draw):
    """A small stride-1 transposed convolution: groups, channels, kernel,
    dilation, input size, padding up to D*(K-1) + 1 (past D*(K-1) it stays
    on col2im) short of cropping the whole output, output_padding below the
    dilation."""
    groups = draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    padding = tuple(draw(st.integers(0, min(d * (k - 1) + 1, (n - 1 + d * (k - 1)) // 2)))
                    for d, k, n in zip(dilation, kernel, (h, w)))
    output_padding = tuple(draw(st.integers(0, d - 1)) for d in dilation)
    return dict(n=draw(st.integers(1, 3)), c=groups * draw(st.integers(1, 3)),
                o=groups * draw(st.integers(1, 3)), groups=groups, kernel=kernel,
                padding=padding, output_padding=output_padding, dilation=dilation, h=h, w=w,
                bias=draw(st.booleans()), seed=draw(seeds()))


def _layer(cfg, rng):
    return ConvTranspose2d(cfg["c"], cfg["o"], cfg["kernel"], 1, cfg["padding"],
                           cfg["output_padding"], cfg["groups"], bias=cfg["bias"],
                           dilation=cfg["dilation"], dtype=F64, rng=rng)


@given(cfg=stride_one_configs())
def test_stride_one_gives_the_col2im_paths_outputs_and_gradients(cfg):
    rng = np.random.default_rng(cfg["seed"])
    layer = _layer(cfg, rng)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    y = layer(x)
    gradcheck(layer, x)
    dy = rng.standard_normal(y.shape)
    layer.zero_grad()
    dx = layer.backward(dy)
    grads = [p.grad.copy() for p in layer.parameters()]
    with conv_algorithm("im2col"):   # the col2im path, every stride
        layer.zero_grad()
        np.testing.assert_allclose(layer(x), y, rtol=1e-10, atol=1e-12)
        assert conv_path(layer._ctx.cache) == "col2im"
        np.testing.assert_allclose(layer.backward(dy), dx, rtol=1e-10, atol=1e-12)
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-10, atol=1e-12)


# (C, O, groups, kernel, padding, H, the path 'auto' takes)
CASES = [
    (64, 64, 64, 3, 1, 12, "as-conv direct"),            # depthwise
    (16, 16, 4, 3, 1, 12, "as-conv blocked"),            # groups of 4 channels
    (64, 64, 4, 3, 1, 12, "as-conv blocked"),            # ... of 16: dy channels last
    (12, 12, 4, 3, 1, 12, "as-conv direct"),             # ... of 3: grouped.py's loops
    (32, 32, 1, 3, 1, 16, "as-conv F(2x2,3x3)"),         # Winograd, 32 outputs
    (64, 16, 1, 3, 1, 16, "col2im"),                     # Winograd, but 16 outputs
    (16, 32, 1, 5, 2, 16, "as-conv im2col"),             # columns from the smaller side
    (32, 16, 1, 5, 2, 16, "col2im"),
    (16, 32, 1, 3, 3, 16, "col2im"),                     # padding past D*(K-1)
]


@pytest.mark.parametrize("c,o,groups,k,p,h,path", CASES)
def test_auto_takes_the_measured_path_and_agrees_in_float32(c, o, groups, k, p, h, path):
    rng = np.random.default_rng(c + o + k)
    layer = ConvTranspose2d(c, o, k, 1, p, groups=groups, rng=rng)
    x = rng.standard_normal((2, c, h, h)).astype(np.float32)
    y = layer(x)
    assert conv_path(layer._ctx.cache) == path
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = [y, layer.backward(dy), layer.weight.grad.copy(), layer.bias.grad.copy()]
    layer.zero_grad()
    with conv_algorithm("im2col"):
        ref = [layer(x), layer.backward(dy), layer.weight.grad, layer.bias.grad]
    for a, b in zip(got, ref):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())


def test_the_weight_gradient_comes_back_in_the_transposed_layout():
    """W is (C, O/G, KH, KW), the convolution's W' (O, C/G, KH, KW) flipped: with
    groups and a non-square kernel, every entry of dW lands where col2im's does."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 5, 5))
    dy = rng.standard_normal((2, 6, 6, 7))   # random: a sum of the outputs hides errors
    grads = []
    for algorithm in ("auto", "im2col"):
        with conv_algorithm(algorithm):
            layer = ConvTranspose2d(4, 6, (2, 3), 1, groups=2, bias=False, dtype=F64, rng=0)
            layer(x)
            layer.backward(dy)
            assert isinstance(layer._ctx.cache, AsConvCache) == (algorithm == "auto")
            grads.append(layer.weight.grad)
    assert grads[0].shape == (4, 3, 2, 3)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-12, atol=1e-12)
