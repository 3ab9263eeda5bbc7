"""Conv2d and ConvTranspose2d: gradients, a naive reference, the adjoint
property, shapes, layouts and errors (the column budget and bias row:
test_conv_columns.py)."""
import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import (check_path_against_im2col, conv_algorithm, conv_configs, drawn_conv2d,
                     fits, float64_im2col, naive_conv2d, naive_conv_transpose2d, seeds)
from nnzero import gradcheck
from nnzero.functional import conv as F
from nnzero.functional import winograd_rules
from nnzero.layers import Conv2d, ConvTranspose2d
from nnzero.shapes import conv_transpose_output_size

F64 = np.float64


@given(cfg=conv_configs())
def test_conv2d_gradients_and_values(cfg):
    if not fits(cfg):
        with pytest.raises(ValueError, match="Conv2d: the \\(dilated\\) kernel does not fit"):
            Conv2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                   cfg["dilation"], cfg["groups"])(np.zeros((1, cfg["c"], cfg["h"], cfg["w"])))
        return
    layer, x, _ = drawn_conv2d(cfg)
    gradcheck(layer, x)
    geo = F.make_geometry(cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"],
                          cfg["groups"])
    out = geo.out_size(cfg["h"], cfg["w"])
    assert out == layer.output_size((cfg["h"], cfg["w"]))
    expected = naive_conv2d(x, layer.weight.data, None if layer.bias is None else
                            layer.bias.data, geo.stride, geo.pad_before, geo.dilation,
                            geo.groups, out)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-10, atol=1e-12)


@given(cfg=conv_configs(transposed=True), data=st.data())
def test_conv_transpose2d_gradients_output_padding_and_size(cfg, data):
    s, d = cfg["stride"], cfg["dilation"]
    op = tuple(data.draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
    args = (cfg["c"], cfg["o"], cfg["kernel"], s, cfg["padding"], op, cfg["groups"],
            cfg["bias"], d)
    try:
        size = conv_transpose_output_size((cfg["h"], cfg["w"]), cfg["kernel"], s,
                                          cfg["padding"], op, d)
    except ValueError:
        with pytest.raises(ValueError, match="ConvTranspose2d: input of shape"):
            ConvTranspose2d(*args)(np.zeros((1, cfg["c"], cfg["h"], cfg["w"])))
        return
    rng = np.random.default_rng(cfg["seed"])
    layer = ConvTranspose2d(*args, dtype=F64, rng=rng)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    y = layer(x)
    bias = None if layer.bias is None else layer.bias.data
    ref = naive_conv_transpose2d(x, layer.weight.data, bias, s, cfg["padding"], d,
                                 cfg["groups"], size)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-12)
    gradcheck(layer, x)
    # output_size picks output_padding in [0, stride): reach every size in range
    mins = [(size - 1) * si - 2 * p + di * (k - 1) + 1 for size, si, p, di, k in
            zip((cfg["h"], cfg["w"]), s, cfg["padding"], d, cfg["kernel"])]
    if any(lo + si - 1 < 1 for lo, si in zip(mins, s)):
        return
    want = tuple(data.draw(st.integers(max(lo, 1), lo + si - 1)) for lo, si in zip(mins, s))
    y2 = layer(x, output_size=want)
    np.testing.assert_allclose(y2, naive_conv_transpose2d(x, layer.weight.data, bias, s,
                                                          cfg["padding"], d, cfg["groups"],
                                                          want), rtol=1e-10, atol=1e-12)
    gradcheck(layer, (x, want))


@given(cfg=conv_configs(transposed=True))
def test_adjoint_property(cfg):
    """<conv2d(x), y> == <x, conv_transpose2d(y)> for the same weight, no bias."""
    if not fits(cfg):
        return
    rng = np.random.default_rng(cfg["seed"])
    g = cfg["groups"]
    w = rng.standard_normal((cfg["o"], cfg["c"] // g) + cfg["kernel"])
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    geo = F.make_geometry(cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"], g)
    y, _ = F.conv2d_forward(x, w, None, cfg["stride"], cfg["padding"], cfg["dilation"], g)
    z = rng.standard_normal(y.shape)
    # the output_padding that maps back to x's size
    op = tuple(size + 2 * p - d * (k - 1) - 1 - (o - 1) * s for size, p, d, k, o, s in zip(
        x.shape[2:], geo.pad_before, geo.dilation, geo.kernel, y.shape[2:], geo.stride))
    xt, _ = F.conv_transpose2d_forward(z, w, None, cfg["stride"], cfg["padding"], op,
                                       cfg["dilation"], g)
    assert xt.shape == x.shape
    np.testing.assert_allclose(np.sum(y * z), np.sum(x * xt), rtol=1e-10)


def test_notes_example_cifar_sized_input():
    layer = Conv2d(3, 6, 3, 1, 0, rng=0)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    y = layer(x)
    assert y.shape == (4, 6, 30, 30) and y.dtype == np.float32
    # one output position by hand: the 3x3 patch at (7, 11) against every filter
    patch = x[:, :, 7:10, 11:14].astype(np.float64)
    want = np.einsum("ncuv,ocuv->no", patch, layer.weight.data) + layer.bias.data
    np.testing.assert_allclose(y[:, :, 7, 11], want, rtol=1e-5, atol=1e-5)
    # the backward pass for dy = 1 by hand: dW[o, c, u, v] sums the 30x30 cells
    # offset (u, v) reads, db the 4*30*30 positions, and dx[n, c, p, q] sums the
    # weights of every (o, u, v) whose window reaches (p, q)
    dx = layer.backward(np.ones_like(y))
    x64, w64 = x.astype(np.float64), layer.weight.data.astype(np.float64)
    dw = np.empty((3, 3, 3))
    want_dx = np.zeros((3, 32, 32))
    for u in range(3):
        for v in range(3):
            dw[:, u, v] = x64[:, :, u:u + 30, v:v + 30].sum(axis=(0, 2, 3))
            want_dx[:, u:u + 30, v:v + 30] += w64[:, :, u, v].sum(axis=0)[:, None, None]
    for o in range(6):
        np.testing.assert_allclose(layer.weight.grad[o], dw, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(layer.bias.grad, np.full(6, 4 * 30 * 30.0), rtol=1e-6)
    np.testing.assert_allclose(dx, np.broadcast_to(want_dx, x.shape), rtol=1e-5, atol=1e-5)


def test_unbatched_input_and_empty_batch():
    layer = Conv2d(2, 3, 3, padding=1, dtype=F64, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 5, 5))
    y = layer(x)
    assert y.shape == (3, 5, 5)
    np.testing.assert_allclose(y, layer(x[None])[0])
    gradcheck(layer, x)
    assert layer(np.zeros((0, 2, 5, 5))).shape == (0, 3, 5, 5)
    layer.zero_grad()   # an empty batch has no samples to split: zero gradients
    assert layer.backward(np.zeros((0, 3, 5, 5))).shape == (0, 2, 5, 5)
    assert not layer.weight.grad.any() and not layer.bias.grad.any()
    t = ConvTranspose2d(2, 3, 2, stride=2, dtype=F64, rng=0)
    assert t(x).shape == (3, 10, 10)
    np.testing.assert_allclose(t(x), t(x[None])[0])
    gradcheck(t, x)


@pytest.mark.parametrize("algorithm", ["auto", "im2col", "winograd"])
def test_every_path_takes_an_empty_batch(algorithm):
    """An empty batch gives empty outputs and zero gradients on every path
    (forced 'winograd' sends 3x3 and 4x4 stride-2 layers to F(4x4, 2x2) over
    the phases, whose kernels divide by N)."""
    with conv_algorithm(algorithm):
        for cls, k, s, g in [(Conv2d, 3, 1, 1), (Conv2d, 3, 2, 1), (Conv2d, 4, 2, 1),
                             (Conv2d, 2, 1, 1), (Conv2d, 1, 1, 1), (Conv2d, 3, 1, 4),
                             (Conv2d, 3, 2, 16), (ConvTranspose2d, 4, 2, 1),
                             (ConvTranspose2d, 3, 2, 1)]:
            layer = cls(16, 16, k, stride=s, padding=k // 2, groups=g, rng=0)
            y = layer(np.zeros((0, 16, 20, 20), np.float32))
            assert y.shape[:2] == (0, 16) and min(y.shape[2:]) > 0, (cls, k, s, g)
            layer.zero_grad()
            assert layer.backward(np.zeros_like(y)).shape == (0, 16, 20, 20)
            assert not layer.weight.grad.any() and not layer.bias.grad.any()


def test_batch_minor_winograd_families_take_an_empty_batch():
    """F(4x4, 3x3) is taken only for 4 samples per thread and up, so its empty
    batch is tried directly, with the stride-2 family's."""
    x = np.zeros((0, 4, 12, 12))
    for family, k, s in [("F(4x4,3x3)", 3, 1), ("F(4x4,2x2)/2", 3, 2), ("F(4x4,2x2)/2", 4, 2)]:
        out = ((12 + 2 - k) // s + 1,) * 2
        y = np.zeros((0, 4) + out)
        cache = F.winograd.winograd_forward(x, np.ones((4, 4, k, k)), (1, 1), out, y,
                                            family=family)
        dx = np.empty_like(x)
        dw, db = F.winograd.winograd_backward(y, cache, dx, bias=True)
        assert dw.shape == (4, 4, k, k) and not dw.any(), family
        assert db.shape == (4,) and not db.any(), family


@pytest.mark.parametrize("make,algorithm,path", [
    (lambda: Conv2d(3, 4, 3, stride=2, padding=1, dtype=F64, rng=0), "auto", "BatchMinorCache"),
    (lambda: Conv2d(3, 4, 3, stride=2, padding=1, dtype=F64, rng=0), "im2col", "ConvCache"),
    (lambda: Conv2d(3, 4, 1, dtype=F64, rng=0), "im2col", "ConvCache"),             # pointwise
    (lambda: Conv2d(3, 4, 3, padding=1, dtype=F64, rng=0), "winograd", "WinogradCache"),
    (lambda: Conv2d(3, 4, 4, stride=2, padding=1, dtype=F64, rng=0), "winograd",
     "WinogradCache"),                                                               # phases
    (lambda: ConvTranspose2d(3, 4, 3, stride=2, padding=1, dtype=F64, rng=0), "auto",
     "ConvTransposeCache"),
    (lambda: ConvTranspose2d(3, 4, 4, stride=2, padding=1, dtype=F64, rng=0), "auto",
     "SubpixelCache"),
    (lambda: Conv2d(4, 8, 3, padding=1, groups=4, dtype=F64, rng=0), "auto", "DirectCache"),
    (lambda: Conv2d(4, 4, 3, stride=2, padding=1, groups=4, dtype=F64, rng=0), "auto",
     "DirectCache"),                                                                 # depthwise
], ids=["conv", "conv-im2col", "pointwise", "winograd", "winograd-phases", "convT",
        "convT-subpixel", "grouped", "depthwise"])
def test_odd_memory_layouts_give_the_same_answer(make, algorithm, path):
    """Reversed, Fortran-order and strided views of x and dy give exactly the
    contiguous answer, on every path the layers take."""
    rng = np.random.default_rng(0)
    layer = make()
    x = rng.standard_normal((2, layer.in_channels, 7, 8))
    with conv_algorithm(algorithm):
        ref_y = layer(x)
        assert type(layer._ctx.cache).__name__ == path
        dy = rng.standard_normal(ref_y.shape)
        ref_dx = layer.backward(dy)
        ref_grads = [p.grad.copy() for p in layer.parameters()]
        for xv, dyv in [(x[:, :, ::-1, ::-1].copy()[:, :, ::-1, ::-1], dy[..., ::-1][..., ::-1]),
                        (np.asfortranarray(x), np.asfortranarray(dy)),
                        (np.repeat(x, 2, axis=3)[..., ::2], np.repeat(dy, 2, axis=3)[..., ::2])]:
            layer.zero_grad()
            np.testing.assert_array_equal(layer(xv), ref_y)
            np.testing.assert_array_equal(layer.backward(dyv), ref_dx)
            for p, ref in zip(layer.parameters(), ref_grads):
                np.testing.assert_array_equal(p.grad, ref)


def test_default_init_and_weight_layout():
    c = Conv2d(4, 8, (3, 5), groups=2, rng=0)
    assert c.weight.shape == (8, 2, 3, 5) and c.bias.shape == (8,)
    bound = 1 / np.sqrt(2 * 3 * 5)
    assert np.abs(c.weight.data).max() <= bound < 1.1 * np.abs(c.weight.data).max()
    assert np.abs(c.bias.data).max() <= bound
    t = ConvTranspose2d(4, 6, 3, groups=2, rng=0)
    assert t.weight.shape == (4, 3, 3, 3) and t.bias.shape == (6,)
    bound = 1 / np.sqrt(3 * 9)
    assert np.abs(t.weight.data).max() <= bound < 1.1 * np.abs(t.weight.data).max()
    assert np.abs(t.bias.data).max() <= bound


def test_repr():
    assert repr(Conv2d(3, 6, 3)) == "Conv2d(3, 6, kernel_size=(3, 3), stride=(1, 1))"
    assert repr(Conv2d(4, 4, 3, padding="same", groups=2, bias=False)) == (
        "Conv2d(4, 4, kernel_size=(3, 3), stride=(1, 1), padding=same, groups=2, bias=False)")
    assert repr(ConvTranspose2d(4, 2, 4, stride=2, padding=1)) == (
        "ConvTranspose2d(4, 2, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))")


def test_output_size_errors():
    layer = ConvTranspose2d(2, 2, 3, stride=2, padding=1)
    x = np.zeros((1, 2, 5, 5), dtype=np.float32)
    with pytest.raises(ValueError, match=r"requested an output size of \[11, 11\], but valid "
                                         r"sizes range from \[9, 9\] to \[10, 10\]"):
        layer(x, output_size=(11, 11))
    with pytest.raises(ValueError, match="output_size must have 2 or 4 elements"):
        layer(x, output_size=(1, 9, 9))
    # ints only, as PyTorch: 9.9 is not truncated to 9, nor '9' parsed
    for bad in ((9.9, 9), (9.0, 9), ("9", "9"), 9):
        with pytest.raises(TypeError, match="output_size must be a sequence of ints"):
            layer(x, output_size=bad)
    assert layer(x, output_size=(np.int64(9), 9)).shape == (1, 2, 9, 9)
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5)).astype(np.float32)
    y = layer(x, output_size=(1, 2, 10, 10))
    assert y.shape == (1, 2, 10, 10)
    # the same as asking for output_padding=1 directly
    fixed = ConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1)
    fixed.load_state_dict(layer.state_dict())
    np.testing.assert_allclose(y, fixed(x), rtol=1e-6)
    dy = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(layer.backward(dy), fixed.backward(dy), rtol=1e-6)
    np.testing.assert_allclose(layer.weight.grad, fixed.weight.grad, rtol=1e-6)
    np.testing.assert_allclose(layer.bias.grad, fixed.bias.grad, rtol=1e-6)
    double = ConvTranspose2d(2, 2, 3, stride=2, padding=1, dtype=F64, rng=0)
    gradcheck(double, (x.astype(F64), (10, 10)))   # forward(x, output_size)


@pytest.mark.parametrize("stride,kernels", [(1, [2, 3]), (2, [3, 4])])
@given(n=st.integers(1, 2), c=st.integers(1, 3), o=st.integers(1, 3), h=st.integers(1, 9),
       w=st.integers(1, 9), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       data=st.data(), bias=st.booleans(), seed=seeds())
def test_winograd_path_gradients_and_agreement(stride, kernels, n, c, o, h, w, pad, data, bias,
                                               seed):
    """The default family of each (kernel, stride): F(2x2, 3x3) for 3x3 kernels,
    F(3x3, 2x2) for 2x2 ones, F(4x4, 2x2) over the phases for 3x3 and 4x4
    kernels at stride 2."""
    kernel = data.draw(st.sampled_from(kernels), label="kernel")
    if h + 2 * pad[0] < kernel or w + 2 * pad[1] < kernel:
        return
    rng = np.random.default_rng(seed)
    layer = Conv2d(c, o, kernel, stride=stride, padding=pad, bias=bias, dtype=F64, rng=rng)
    check_path_against_im2col(layer, rng.standard_normal((n, c, h, w)), "winograd",
                              F.winograd.WinogradCache, rng,
                              family=F.winograd.DEFAULT[kernel, stride])


def _family(layer):
    cache = layer._ctx.cache
    return cache.family if isinstance(cache, F.winograd.WinogradCache) else None


def test_auto_picks_winograd_for_wide_3x3_and_float32_agrees():
    """winograd_rules.WINOGRAD_F43_RULES first (outputs from 7x7, 8 to 256 channels, 4
    samples per thread; SMALL_PLANE_SAMPLES on outputs up to 8x8 with 128
    channels or more), then WINOGRAD_RULES (with WINOGRAD_MIN_SAVED); each
    family's float32 result against float64."""
    f43, f23 = "F(4x4,3x3)", "F(2x2,3x3)"
    # enough samples for F(4x4, 3x3)
    n = winograd_rules.WINOGRAD_BATCH_MINOR_SAMPLES * numba.get_num_threads()
    small = winograd_rules.SMALL_PLANE_SAMPLES * numba.get_num_threads()
    for c, o, size, batch, family in [
            (32, 32, 16, n, f43), (16, 32, 15, n, f43), (8, 8, 7, n, f43), (32, 32, 16, 1, f23),
            (32, 32, 16, n - 1, f23), (64, 64, 6, n, f23), (32, 32, 6, n, None),
            (64, 64, 4, n, None), (4, 32, 32, n, None), (3, 32, 32, n, None),
            (512, 512, 4, 1, None), (128, 512, 32, 1, f23),
            # 128 channels or more: WINOGRAD_MIN_SAVED multiply-adds saved per filter
            (512, 512, 8, 1, None), (512, 512, 8, n, f23), (128, 512, 16, 1, None),
            (64, 64, 8, 1, f23),
            # outputs up to 8x8 with 128 channels or more: 6 samples per thread
            (128, 128, 7, small, f43), (128, 128, 8, small - 1, None),
            (256, 128, 8, n, None), (128, 128, 9, n, f43), (64, 64, 8, n, f43)]:
        layer = Conv2d(c, o, 3, padding=1, rng=0)
        layer(np.zeros((batch, c, size, size), np.float32))
        assert _family(layer) == family, (c, o, size, batch)
    rng = np.random.default_rng(0)
    for c, size, family in [(32, 16, f43), (64, 6, f23)]:
        layer = Conv2d(c, c, 3, padding=1, rng=0)
        x = rng.standard_normal((n, c, size, size)).astype(np.float32)
        y = layer(x)
        assert _family(layer) == family
        np.testing.assert_allclose(y, float64_im2col(layer, x), rtol=1e-4,
                                   atol=1e-5)  # float32 rounding only
    two = Conv2d(32, 32, 2, rng=0)               # 2x2 kernels: 64 channels or more
    two(rng.standard_normal((2, 32, 16, 16)).astype(np.float32))
    assert not isinstance(two._ctx.cache, F.winograd.WinogradCache)
    wide = Conv2d(64, 64, 2, rng=0)
    x64 = rng.standard_normal((2, 64, 17, 17)).astype(np.float32)
    y = wide(x64)
    assert isinstance(wide._ctx.cache, F.winograd.WinogradCache)
    np.testing.assert_allclose(y, float64_im2col(wide, x64), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="set_conv_algorithm"):
        F.set_conv_algorithm("fft")


def test_pointwise_transposed_convolution_with_output_padding():
    """1x1, stride 1, dilation 2: output_padding 1 grows the output past the input grid
    (found by the thorough Hypothesis profile: the 1x1 shortcut must not apply)."""
    layer = ConvTranspose2d(1, 1, 1, output_padding=(0, 1), dilation=(1, 2), bias=False,
                            dtype=F64, rng=0)
    x = np.array([[[[2.0]]]])
    y = layer(x)
    assert y.shape == (1, 1, 1, 2)
    np.testing.assert_allclose(y.ravel(), [2.0 * layer.weight.data.ravel()[0], 0.0])
    gradcheck(layer, x)
