"""Transposed convolution by a stride-1 convolution and a pixel shuffle
(functional/subpixel.py): which layers take it, and that it gives what the
col2im path and finite differences give."""
from unittest import mock

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import conv_algorithm, seeds
from nnzero import gradcheck
from nnzero.functional import conv as F
from nnzero.functional import subpixel
from nnzero.functional._columns import make_geometry
from nnzero.layers import ConvTranspose2d

F64 = np.float64


def _run(layer, x, dy, size=None):
    """(y, dx, parameter gradients, the cache's type) of one forward and backward."""
    layer.zero_grad()
    y = layer(x) if size is None else layer(x, output_size=size)
    kind = type(layer._ctx.cache)
    dx = layer.backward(dy)
    return y, dx, [p.grad.copy() for p in layer.parameters()], kind


def _agree(a, b, rtol=1e-10, atol=1e-12):
    for u, v in zip(a[:2] + tuple(a[2]), b[:2] + tuple(b[2])):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


def _output_size(cfg):
    """The transposed layer's (OH, OW) for a drawn configuration."""
    return [(i - 1) * s - 2 * p + k + op for i, s, p, k, op in
            zip((cfg["h"], cfg["w"]), cfg["stride"], cfg["padding"], cfg["kernel"],
                cfg["output_padding"])]


@st.composite
def subpixel_configs(draw):
    """Layers the sub-pixel path takes: stride S >= 2 dividing the kernel, P < K."""
    stride = (draw(st.integers(1, 3)), draw(st.integers(2, 3)))
    if draw(st.booleans()):
        stride = stride[::-1]
    kernel = tuple(s * draw(st.integers(1, 2)) for s in stride)
    padding = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    groups = draw(st.integers(1, 2))
    return dict(n=draw(st.integers(1, 3)), c=groups * draw(st.integers(1, 2)),
                o=groups * draw(st.integers(1, 2)), kernel=kernel, stride=stride,
                padding=padding, groups=groups, bias=draw(st.booleans()),
                h=draw(st.integers(1, 5)), w=draw(st.integers(1, 5)),
                output_padding=tuple(draw(st.integers(0, s - 1)) for s in stride),
                seed=draw(seeds()))


@given(cfg=subpixel_configs())
def test_gradients_and_agreement_with_the_col2im_path(cfg):
    size = _output_size(cfg)
    if min(size) < 1:
        return
    rng = np.random.default_rng(cfg["seed"])
    layer = ConvTranspose2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                            cfg["output_padding"], cfg["groups"], cfg["bias"], dtype=F64,
                            rng=rng)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    dy = rng.standard_normal((cfg["n"], cfg["o"], *size))
    with mock.patch.object(subpixel, "cheaper", lambda *args: True):   # every layer drawn
        fast = _run(layer, x, dy)
        assert fast[3] is subpixel.SubpixelCache
        assert fast[0].shape[2:] == tuple(size)
        gradcheck(layer, x)
    with conv_algorithm("im2col"):
        slow = _run(layer, x, dy)
    assert slow[3] is not subpixel.SubpixelCache
    _agree(fast, slow)


@pytest.mark.parametrize("kernel, stride, padding, dilation, takes", [
    (4, 2, 1, 1, True),          # the usual 2x upsampling
    (2, 2, 0, 1, True),          # a 1x1 convolution and a shuffle
    ((6, 4), (3, 2), (5, 0), 1, True),
    (3, 2, 1, 1, False),         # the stride does not divide the kernel
    (4, 1, 1, 1, False),         # stride 1: col2im runs at stride 1 already
    (4, 2, 4, 1, False),         # P >= K would need a negative padding
    (4, 2, 1, 2, False),         # dilated
    ((4, 3), (2, 2), 1, 1, False),
])
def test_which_layers_take_the_subpixel_path(kernel, stride, padding, dilation, takes):
    geo = make_geometry(kernel, stride, padding, dilation)
    assert subpixel.applicable(geo, (40, 40)) is takes
    layer = ConvTranspose2d(2, 3, kernel, stride, padding, dilation=dilation, dtype=F64, rng=0)
    layer(np.zeros((1, 2, 6, 6)))
    assert (type(layer._ctx.cache) is subpixel.SubpixelCache) is takes


@pytest.mark.parametrize("c, o, h, takes", [
    (64, 32, 16, True),     # convT_up: the columns from x are the smaller
    (32, 32, 16, True),
    (128, 32, 16, False),   # many input channels for few outputs: col2im's are
    (256, 3, 8, False),
])
def test_the_cost_model_sends_wide_inputs_to_col2im(c, o, h, takes):
    """The im2col form's cost model (Winograd, which comes first, held off)."""
    geo = make_geometry(4, 2, 1)
    size = (2 * h, 2 * h)
    assert subpixel.cheaper(geo, (1, c, h, h), o, size) is takes
    with mock.patch.object(subpixel, "winograd_pays", lambda *args: False):
        _, cache = F.conv_transpose2d_forward(np.zeros((1, c, h, h), np.float32),
                                              np.zeros((c, o, 4, 4), np.float32), None, 2, 1)
    assert (type(cache) is subpixel.SubpixelCache) is takes
    # a 1x1 form (K = S) never builds columns: it takes the sub-pixel path
    assert subpixel.cheaper(make_geometry(2, 2, 0), (1, 256, 16, 16), 8, (32, 32))


@pytest.mark.parametrize("budget", [1, 10 ** 9])
def test_chunks_output_size_and_float32(budget):
    """A one-sample budget (columns rebuilt in the backward pass) and output_size
    give the col2im path's answer; float32 agrees to float32 rounding."""
    rng = np.random.default_rng(3)
    layer = ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2, dtype=F64, rng=1)
    x = rng.standard_normal((5, 4, 7, 7))
    dy = rng.standard_normal((5, 6, 15, 15))
    old = F.set_im2col_budget(budget)
    try:
        fast = _run(layer, x, dy, size=(15, 15))
    finally:
        F.set_im2col_budget(old)
    assert fast[3] is subpixel.SubpixelCache
    with conv_algorithm("im2col"):
        slow = _run(layer, x, dy, size=(15, 15))
    _agree(fast, slow)
    single = ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2, rng=1)
    _agree(_run(single, x.astype(np.float32), dy.astype(np.float32), size=(15, 15)), slow,
           rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_odd_layouts_threads_and_repeated_calls(threads):
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("numba has a single thread here")
    old = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        rng = np.random.default_rng(5)
        layer = ConvTranspose2d(3, 4, 2, stride=2, dtype=F64, rng=0)   # the 1x1 form
        x = rng.standard_normal((4, 3, 5, 6))
        dy = rng.standard_normal((4, 4, 10, 12))
        ref = _run(layer, x, dy)
        with conv_algorithm("im2col"):
            _agree(_run(layer, x, dy), ref)
        for odd_x, odd_dy in [(np.asfortranarray(x), np.asfortranarray(dy)),
                              (x[::-1].copy()[::-1], dy[:, :, ::-1].copy()[:, :, ::-1])]:
            _agree(_run(layer, odd_x, odd_dy), ref)
        _agree(_run(layer, x, dy), ref)   # the workspace's buffers reused
    finally:
        numba.set_num_threads(old)


@st.composite
def winograd_configs(draw):
    """Layers whose stride-1 convolution is 2x2 (kernel 2S per axis), no groups."""
    stride = (draw(st.integers(1, 3)), draw(st.integers(2, 3)))
    if draw(st.booleans()):
        stride = stride[::-1]
    kernel = tuple(2 * s for s in stride)
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 3)), o=draw(st.integers(1, 3)),
                kernel=kernel, stride=stride,
                padding=tuple(draw(st.integers(0, k - 1)) for k in kernel),
                bias=draw(st.booleans()), h=draw(st.integers(1, 6)), w=draw(st.integers(1, 6)),
                output_padding=tuple(draw(st.integers(0, s - 1)) for s in stride),
                seed=draw(seeds()))


@given(cfg=winograd_configs())
def test_winograd_form_gradients_and_agreement_with_the_col2im_path(cfg):
    """'winograd' runs every such layer's stride-1 convolution as F(3x3, 2x2),
    the shuffle folded into its output tiles."""
    size = _output_size(cfg)
    if min(size) < 1:
        return
    rng = np.random.default_rng(cfg["seed"])
    layer = ConvTranspose2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                            cfg["output_padding"], bias=cfg["bias"], dtype=F64, rng=rng)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    dy = rng.standard_normal((cfg["n"], cfg["o"], *size))
    with conv_algorithm("winograd"):
        fast = _run(layer, x, dy)
        assert fast[3] is subpixel.SubpixelCache and layer._ctx.cache.wino is not None
        gradcheck(layer, x)
    with conv_algorithm("im2col"):
        slow = _run(layer, x, dy)
    assert slow[3] is not subpixel.SubpixelCache
    _agree(fast, slow)


@pytest.mark.parametrize("c, o, h, kernel, stride, takes", [
    (64, 32, 16, 4, 2, True),     # convT_up
    (64, 32, 8, 4, 2, True),
    (64, 32, 6, 4, 2, False),     # too small an input
    (64, 16, 16, 4, 2, False),    # too few output channels
    (32, 32, 16, 4, 2, False),    # too few input channels
    (64, 32, 16, 6, 3, True),     # J = 2 at stride 3
    (64, 32, 16, 2, 2, False),    # J = 1: no convolution to speak of
    (64, 32, 16, 8, 2, False),    # J = 4
])
def test_auto_takes_winograd_for_wide_two_tap_layers(c, o, h, kernel, stride, takes):
    rng = np.random.default_rng(4)
    layer = ConvTranspose2d(c, o, kernel, stride, 1, rng=0)
    x = rng.standard_normal((2, c, h, h)).astype(np.float32)
    y = layer(x)
    assert (getattr(layer._ctx.cache, "wino", None) is not None) is takes
    if takes:   # float32 rounding away from the col2im path
        dy = rng.standard_normal(y.shape).astype(np.float32)
        fast = _run(layer, x, dy)
        with conv_algorithm("im2col"):
            slow = _run(layer, x, dy)
        _agree(fast, slow, rtol=1e-4, atol=1e-4)
        old = F.set_im2col_budget(1)   # its tiles do not fit: the im2col form instead
        try:
            layer(x)
            assert getattr(layer._ctx.cache, "wino", None) is None
        finally:
            F.set_im2col_budget(old)
