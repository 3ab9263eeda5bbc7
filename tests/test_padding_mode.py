"""Conv2d(padding_mode=...): the explicit padding, its folded gradient and the layer."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import naive_conv2d, seeds
from nnzero import gradcheck
from nnzero.functional import padding as P
from nnzero.layers import Conv2d
from nnzero.shapes import same_padding

F64 = np.float64
MODES = ("reflect", "replicate", "circular")


def _source(i, size, mode):
    """The padded cell i's source, written out again from PyTorch's documentation."""
    if mode == "reflect":
        while not 0 <= i < size:
            i = -i if i < 0 else 2 * (size - 1) - i
        return i
    if mode == "replicate":
        return min(max(i, 0), size - 1)
    return i % size


def _reference_pad(x, pads, mode):
    """x[..., rows, cols] with every padded row and column mapped to its source."""
    (t, b), (l, r) = pads
    h, w = x.shape[-2:]
    rows = [_source(i, h, mode) for i in range(-t, h + b)]
    cols = [_source(j, w, mode) for j in range(-l, w + r)]
    return x[..., rows, :][..., cols]


def _limit(size, mode):
    return size - 1 if mode == "reflect" else size


@pytest.mark.parametrize("mode,expected", [
    ("reflect", [3, 2, 1, 2, 3, 2, 1]),
    ("replicate", [1, 1, 1, 2, 3, 3, 3]),
    ("circular", [2, 3, 1, 2, 3, 1, 2]),
    ("zeros", [0, 0, 1, 2, 3, 0, 0]),
])
def test_pad_examples(mode, expected):
    x = np.array([[[1.0, 2.0, 3.0]]])
    y, _ = P.pad2d_forward(x, ((0, 0), (2, 2)), mode)
    assert y.tolist() == [[expected]]
    y, _ = P.pad2d_forward(x.transpose(0, 2, 1), ((2, 2), (0, 0)), mode)
    assert y[0, :, 0].tolist() == expected


@st.composite
def pad_cases(draw):
    mode = draw(st.sampled_from(MODES + ("zeros",)))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pads = tuple((draw(st.integers(0, _limit(s, mode))), draw(st.integers(0, _limit(s, mode))))
                 for s in (h, w))
    return mode, (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), pads, draw(seeds())


@given(case=pad_cases())
def test_pad_values_and_adjoint(case):
    """The forward pass is the definition; the backward pass is its adjoint:
    <pad(x), g> = <x, pad_backward(g)> for every x and g."""
    mode, shape, pads, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    y, cache = P.pad2d_forward(x, pads, mode)
    if mode == "zeros":
        (t, b), (l, r) = pads
        assert y.shape[-2:] == (shape[2] + t + b, shape[3] + l + r)
        np.testing.assert_array_equal(y[..., t:t + shape[2], l:l + shape[3]], x)
        assert np.count_nonzero(y) == np.count_nonzero(x)
    else:
        np.testing.assert_array_equal(y, _reference_pad(x, pads, mode))
    g = rng.standard_normal(y.shape)
    dx = P.pad2d_backward(g, cache)
    assert dx.shape == x.shape
    np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, dx), rtol=1e-12)


@st.composite
def padded_conv_configs(draw):
    groups = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if draw(st.booleans()):
        padding, stride = "same", (1, 1)
        pads = same_padding(kernel, dilation)
    else:
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
        stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        pads = tuple((p, p) for p in padding)
    # each side large enough for one reflection and for the dilated kernel
    h, w = (draw(st.integers(max(max(p) + 1, d * (k - 1) + 1 - sum(p)), 6))
            for p, d, k in zip(pads, dilation, kernel))
    return dict(mode=draw(st.sampled_from(MODES)), n=draw(st.integers(1, 2)),
                c=groups * draw(st.integers(1, 2)), o=groups * draw(st.integers(1, 2)),
                kernel=kernel, stride=stride, padding=padding, pads=pads, dilation=dilation,
                groups=groups, bias=draw(st.booleans()), h=h, w=w, seed=draw(seeds()))


@given(cfg=padded_conv_configs())
def test_conv2d_padding_mode_gradients_and_values(cfg):
    rng = np.random.default_rng(cfg["seed"])
    layer = Conv2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                   cfg["dilation"], cfg["groups"], cfg["bias"], padding_mode=cfg["mode"],
                   dtype=F64, rng=rng)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    gradcheck(layer, x)
    xp = _reference_pad(x, cfg["pads"], cfg["mode"])
    out = layer.output_size((cfg["h"], cfg["w"]))
    expected = naive_conv2d(xp, layer.weight.data,
                            None if layer.bias is None else layer.bias.data, layer.stride,
                            (0, 0), layer.dilation, layer.groups, out)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-10, atol=1e-12)
    # unbatched input: the same numbers
    np.testing.assert_allclose(layer(x[0]), expected[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_no_padding_is_plain_convolution(mode):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 5))
    plain = Conv2d(3, 4, 3, padding="valid", dtype=F64, rng=0)
    moded = Conv2d(3, 4, 3, padding="valid", padding_mode=mode, dtype=F64, rng=0)
    np.testing.assert_array_equal(moded(x), plain(x))
    dy = rng.standard_normal((2, 4, 3, 3))
    np.testing.assert_array_equal(moded.backward(dy), plain.backward(dy))


def test_float32_and_layouts():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 6, 7)).astype(np.float32)
    layer = Conv2d(4, 5, 3, padding=2, padding_mode="reflect", rng=0)
    y = layer(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    assert y.dtype == dx.dtype == np.float32
    for xv, dyv in ((np.asfortranarray(x), np.asfortranarray(dy)),
                    (x[::-1].copy()[::-1], dy[::-1].copy()[::-1])):
        np.testing.assert_allclose(layer(xv), y, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(layer.backward(dyv), dx, rtol=1e-6, atol=1e-6)


@given(cfg=padded_conv_configs())
def test_matches_pytorch_when_installed(cfg):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(cfg["seed"])
    layer = Conv2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                   cfg["dilation"], cfg["groups"], padding_mode=cfg["mode"], dtype=F64, rng=rng)
    ref = torch.nn.Conv2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                          cfg["dilation"], cfg["groups"], padding_mode=cfg["mode"],
                          dtype=torch.float64)
    ref.weight.data = torch.tensor(layer.weight.data)
    ref.bias.data = torch.tensor(layer.bias.data)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    np.testing.assert_allclose(layer(x), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, ref.weight.grad.numpy(), rtol=1e-10,
                               atol=1e-12)
    assert repr(layer) == repr(ref)


@pytest.mark.parametrize("layer,shape,match", [
    (Conv2d(1, 1, 3, padding=3, padding_mode="reflect"), (1, 1, 3, 3),
     r"padding_mode='reflect' needs padding smaller than the input size, got padding "
     r"\(3, 3\) for size 3"),
    (Conv2d(1, 1, (1, 3), padding=(0, 2), padding_mode="reflect"), (1, 1, 4, 2),
     r"padding_mode='reflect'.*got padding \(2, 2\) for size 2 \(spatial axis 1 of an input of "
     r"spatial size \(4, 2\)\)"),
    (Conv2d(1, 1, 3, padding=4, padding_mode="circular"), (1, 1, 3, 3),
     r"padding_mode='circular' needs padding at most the input size"),
    # an empty image in a non-empty batch is refused before padding (test_conv_errors.py);
    # in an empty batch it reaches the padding rule
    (Conv2d(1, 1, 1, padding=1, padding_mode="replicate"), (0, 1, 0, 2),
     r"padding_mode='replicate' needs a non-empty input"),
])
def test_padding_that_does_not_fit(layer, shape, match):
    with pytest.raises(ValueError, match="Conv2d: " + match):
        layer(np.zeros(shape, dtype=np.float32))


def test_circular_wraps_exactly_once():
    # padding equal to the size is allowed: the whole input is repeated on each side
    layer = Conv2d(1, 1, 1, padding=3, padding_mode="circular", bias=False, dtype=F64, rng=0)
    layer.weight.data[...] = 1.0
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    np.testing.assert_array_equal(layer(x)[0, 0], np.tile(x[0, 0], (3, 3)))


def test_bad_padding_mode():
    with pytest.raises(ValueError, match=r"Conv2d: padding_mode must be one of \('zeros', "
                                         r"'reflect', 'replicate', 'circular'\), got 'foo'"):
        Conv2d(3, 4, 3, padding_mode="foo")
