"""Max and average pooling: gradients, a naive reference, PyTorch's rules and
examples, tie/NaN conventions, layouts and errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import draw_pool_window, seeds
from nnzero import gradcheck
from nnzero.layers import (AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, GlobalAvgPool2d,
                           MaxPool2d)
from nnzero.shapes import pool_output_size


def tie_free(rng, shape, offset=0.0):
    """A permutation plus a uniform offset: distinct values, gaps of at least 1/size."""
    n = int(np.prod(shape))
    return (rng.permutation(n) + rng.uniform(0, 0.5)).reshape(shape) / n * 4 - 2 + offset


def naive_pool(x, k, s, p, d, ceil, op, count_include_pad=True, divisor=None):
    """The definition window by window (float64), for 'max' and 'avg'."""
    n, c, h, w = x.shape
    oh, ow = pool_output_size((h, w), k, s, p, d, ceil)
    y = np.empty((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            rows = [i * s[0] - p[0] + u * d[0] for u in range(k[0])]
            cols = [j * s[1] - p[1] + v * d[1] for v in range(k[1])]
            rr = [r for r in rows if 0 <= r < h]
            cc = [q for q in cols if 0 <= q < w]
            win = x[:, :, rr][:, :, :, cc].reshape(n, c, -1)
            if op == "max":
                y[:, :, i, j] = win.max(axis=2)
            else:
                hs, ws = i * s[0] - p[0], j * s[1] - p[1]
                he, we = min(hs + k[0], h + p[0]), min(ws + k[1], w + p[1])
                div = divisor or ((he - hs) * (we - ws) if count_include_pad
                                  else len(rr) * len(cc))
                y[:, :, i, j] = win.sum(axis=2) / div
    return y


@st.composite
def pool_configs(draw, dilation=True):
    k, s, p, d = draw_pool_window(draw, dilation)
    ceil = draw(st.booleans())
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    return dict(k=k, s=s, p=p, d=d, ceil=ceil, shape=(draw(st.integers(1, 2)),
                                                      draw(st.integers(1, 2)), h, w),
                seed=draw(seeds()))


def _max_layer_or_error(cfg):
    """The layer and its output, or None after checking the error it must raise."""
    layer = MaxPool2d(cfg["k"], cfg["s"], cfg["p"], cfg["d"], ceil_mode=cfg["ceil"],
                      dtype=np.float64)
    x = tie_free(np.random.default_rng(cfg["seed"]), cfg["shape"])
    try:
        pool_output_size(cfg["shape"][2:], cfg["k"], cfg["s"], cfg["p"], cfg["d"], cfg["ceil"])
    except ValueError:
        with pytest.raises(ValueError, match="MaxPool2d: .*too small"):
            layer(x)
        return None, x
    return layer, x


@given(cfg=pool_configs())
def test_max_pool_gradients_and_values(cfg):
    layer, x = _max_layer_or_error(cfg)
    if layer is None:
        return
    try:
        y = layer(x)
    except ValueError as err:  # dilation can leave a window with no input cell
        assert "holds no input element" in str(err)
        return
    np.testing.assert_array_equal(y, naive_pool(x, cfg["k"], cfg["s"], cfg["p"], cfg["d"],
                                                cfg["ceil"], "max"))
    assert y.shape[2:] == layer.output_size(x.shape[2:])
    gradcheck(layer, x)


@given(cfg=pool_configs(dilation=False), cip=st.booleans(),
       divisor=st.sampled_from([None, None, 3, -2]))
def test_avg_pool_gradients_and_values(cfg, cip, divisor):
    layer = AvgPool2d(cfg["k"], cfg["s"], cfg["p"], cfg["ceil"], cip, divisor)
    x = np.random.default_rng(cfg["seed"]).standard_normal(cfg["shape"])
    try:
        pool_output_size(cfg["shape"][2:], cfg["k"], cfg["s"], cfg["p"], 1, cfg["ceil"])
    except ValueError:
        with pytest.raises(ValueError, match="AvgPool2d: .*too small"):
            layer(x)
        return
    y = layer(x)
    np.testing.assert_allclose(y, naive_pool(x, cfg["k"], cfg["s"], cfg["p"], (1, 1),
                                             cfg["ceil"], "avg", cip, divisor), rtol=1e-12)
    gradcheck(layer, x)


@pytest.mark.parametrize("k,s,p,cip,expected", [
    ((1, 3), (1, 2), (0, 1), True, [1.0, 3.0, 3.0]),
    ((1, 3), (1, 2), (0, 1), False, [1.5, 3.0, 4.5]),
])
def test_avg_pool_pytorch_divisor_examples(k, s, p, cip, expected):
    x = np.arange(1.0, 6.0).reshape(1, 1, 1, 5)
    y = AvgPool2d(k, s, p, ceil_mode=True, count_include_pad=cip)(x)
    np.testing.assert_allclose(y.ravel(), expected)


def test_avg_pool_ceil_overhang_is_not_counted():
    x = np.arange(1.0, 7.0).reshape(1, 1, 1, 6)
    layer = AvgPool2d((1, 3), (1, 2), (0, 1), ceil_mode=True)
    np.testing.assert_allclose(layer(x).ravel(), [1, 3, 5, 3])
    np.testing.assert_allclose(AvgPool2d((1, 3), (1, 2), (0, 1))(x).ravel(), [1, 3, 5])
    ones = AvgPool2d(2, 2, 1, ceil_mode=True)(np.ones((1, 1, 5, 5)))
    np.testing.assert_allclose(ones[0, 0, 0], [0.25, 0.5, 0.5])


def test_max_pool_ties_nan_and_overlap():
    layer = MaxPool2d(2, return_indices=True)
    y, idx = layer(np.full((1, 1, 2, 2), 5.0))
    assert idx.ravel().tolist() == [0] and idx.dtype == np.int64
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 1, 1))).ravel(), [1, 0, 0, 0])
    y, idx = layer(np.array([[[[1.0, np.nan], [np.nan, 2.0]]]]))
    assert np.isnan(y).all() and idx.ravel().tolist() == [2]  # the last NaN wins
    # overlapping windows: the centre of a 3x3 input is the max of all four windows
    x = np.array([[[[1.0, 2, 1], [2, 9, 2], [1, 2, 1]]]])
    over = MaxPool2d(2, stride=1)
    over(x)
    g = over.backward(np.ones((1, 1, 2, 2)))
    assert g[0, 0, 1, 1] == 4 and g.sum() == 4


def test_max_pool_padding_is_minus_infinity():
    x = -np.ones((1, 1, 2, 2))
    y = MaxPool2d(2, stride=1, padding=1)(x)
    np.testing.assert_array_equal(y, -np.ones((1, 1, 3, 3)))


def test_indices_match_flat_positions_and_unbatched_input():
    rng = np.random.default_rng(0)
    x = tie_free(rng, (3, 5, 6))
    y, idx = MaxPool2d(3, 2, 1, return_indices=True)(x)
    assert y.shape == (3, 3, 3) and idx.shape == (3, 3, 3)
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(3, -1), idx.reshape(3, -1), 1),
                                  y.reshape(3, -1))
    gradcheck(MaxPool2d(3, 2, 1), x)


@pytest.mark.parametrize("make", [lambda: MaxPool2d(3, 2, 1), lambda: AvgPool2d(3, 1, 1),
                                  lambda: AdaptiveMaxPool2d(3)])
def test_odd_memory_layouts(make):
    rng = np.random.default_rng(1)
    x = tie_free(rng, (2, 3, 8, 9))
    layer = make()
    ref = layer(x)
    dy = rng.standard_normal(ref.shape)
    ref_dx = layer.backward(dy)
    for xv, dyv in [(np.asfortranarray(x), np.asfortranarray(dy)),
                    (x[:, ::-1][:, ::-1], dy[..., ::-1][..., ::-1]),
                    (np.repeat(x, 2, axis=3)[..., ::2], np.repeat(dy, 2, axis=3)[..., ::2])]:
        np.testing.assert_array_equal(layer(xv), ref)
        np.testing.assert_array_equal(layer.backward(dyv), ref_dx)


def test_dtype_kept_and_integer_refused():
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    for layer in (MaxPool2d(2), AvgPool2d(2), AdaptiveAvgPool2d(1), GlobalAvgPool2d()):
        y = layer(x)
        assert y.dtype == np.float32 and layer.backward(np.ones_like(y)).dtype == np.float32
        with pytest.raises(TypeError, match="astype"):
            layer(np.zeros((1, 2, 4, 4), dtype=np.uint8))


@pytest.mark.parametrize("make,x,match", [
    (lambda: MaxPool2d(3, padding=2), None, r"padding must be at most half the kernel size"),
    (lambda: MaxPool2d(3, padding=2, dilation=2), None, "padding must be at most half"),
    (lambda: MaxPool2d(0), None, "kernel_size must be positive"),
    (lambda: MaxPool2d(2, stride=0), None, "stride must be positive"),
    (lambda: MaxPool2d(2, dilation=0), None, "dilation must be positive"),
    (lambda: MaxPool2d(2, padding=-1), None, "padding must be non-negative"),
    (lambda: AvgPool2d(2, divisor_override=0), None, "divisor_override must be a non-zero"),
    (lambda: MaxPool2d(5), np.zeros((1, 1, 3, 3)), r"MaxPool2d: .*too small"),
    (lambda: MaxPool2d(2), np.zeros((3, 3)), r"MaxPool2d: expected input of shape"),
    (lambda: AvgPool2d(2), np.zeros((1, 3, 0, 5)), r"AvgPool2d: expected input of shape"),
    (lambda: MaxPool2d(2, stride=1, padding=1, dilation=3), np.zeros((1, 1, 2, 2)),
     "holds no input element"),
])
def test_errors(make, x, match):
    with pytest.raises(ValueError, match=match):
        layer = make()
        layer(x)


def naive_adaptive(x, out, op):
    n, c, h, w = x.shape
    y = np.empty((n, c) + out)
    for i in range(out[0]):
        for j in range(out[1]):
            rs, re = (i * h) // out[0], -((-(i + 1) * h) // out[0])
            cs, ce = (j * w) // out[1], -((-(j + 1) * w) // out[1])
            win = x[:, :, rs:re, cs:ce]
            y[:, :, i, j] = win.max(axis=(2, 3)) if op == "max" else win.mean(axis=(2, 3))
    return y


@given(h=st.integers(1, 9), w=st.integers(1, 9), oh=st.integers(1, 6), ow=st.integers(1, 6),
       seed=seeds())
def test_adaptive_pooling(h, w, oh, ow, seed):
    x = tie_free(np.random.default_rng(seed), (2, 2, h, w))
    for cls, op in ((AdaptiveAvgPool2d, "avg"), (AdaptiveMaxPool2d, "max")):
        layer = cls((oh, ow))
        np.testing.assert_allclose(layer(x), naive_adaptive(x, (oh, ow), op), rtol=1e-12)
        gradcheck(layer, x)
    keep = AdaptiveAvgPool2d((None, 2))  # None keeps the input's size
    y = keep(x)
    assert y.shape == (2, 2, h, 2)
    np.testing.assert_allclose(y, naive_adaptive(x, (h, 2), "avg"), rtol=1e-12)
    gradcheck(keep, x)


def test_global_average_pool():
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 6))
    np.testing.assert_allclose(GlobalAvgPool2d()(x), x.mean(axis=(2, 3)))
    np.testing.assert_allclose(AdaptiveAvgPool2d(1)(x)[:, :, 0, 0], x.mean(axis=(2, 3)))
    gradcheck(GlobalAvgPool2d(), x)


def test_matches_pytorch_when_installed():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(0)
    for trial in range(60):
        k = tuple(int(v) for v in rng.integers(1, 4, 2))
        s = tuple(int(v) for v in rng.integers(1, 4, 2))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        ceil = bool(rng.integers(0, 2))
        x = tie_free(rng, (2, 2) + tuple(int(v) for v in rng.integers(4, 9, 2)))
        try:
            pool_output_size(x.shape[2:], k, s, p, 1, ceil)
        except ValueError:
            continue
        y, idx = MaxPool2d(k, s, p, return_indices=True, ceil_mode=ceil)(x)
        yt, it = F.max_pool2d(torch.tensor(x), k, s, p, 1, ceil, return_indices=True)
        np.testing.assert_array_equal(y, yt.numpy())
        np.testing.assert_array_equal(idx, it.numpy())
        for cip in (True, False):
            ya = AvgPool2d(k, s, p, ceil, cip)(x)
            np.testing.assert_allclose(ya, F.avg_pool2d(torch.tensor(x), k, s, p, ceil,
                                                        cip).numpy(), rtol=1e-12)
