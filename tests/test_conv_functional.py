"""The functional convolutions check their own arguments: called directly,
with no layer in front, a bad geometry, a weight that does not match x, or a
dy that is not the forward output's shape gets a clear error, on every path
(a dy too large once made the Winograd gradient transforms write past their
buffers)."""
import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import CONV_PATHS, CONVT_PATHS, conv_path, seeds
from nnzero.functional.conv import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                                    conv_transpose2d_forward)
from nnzero.shapes import conv_output_size, conv_transpose_output_size

F32 = np.float32
X = np.zeros((2, 4, 8, 8), F32)
W = np.zeros((6, 4, 3, 3), F32)
WT = np.zeros((4, 3, 3, 3), F32)   # transposed: (C, O/groups, KH, KW)


@pytest.mark.parametrize("args,kwargs,err,match", [
    ((X[0], W), {}, ValueError,
     r"conv2d_forward: x must have shape \(N, C, H, W\), got \(4, 8, 8\)"),
    ((X, W[0]), {}, ValueError, r"weight must have shape \(O, C/groups, KH, KW\), got \(4, 3, 3\)"),
    ((X.astype(int), W), {}, TypeError, "conv2d_forward: x must be a floating-point array"),
    ((X, W.astype(np.int32)), {}, TypeError, "weight must be a floating-point array"),
    ((X.astype(np.float16), W), {}, TypeError, "x must be float32 or float64, got float16"),
    ((X, W.astype(np.float64)), {}, TypeError, "weight must have x's dtype float32, got float64"),
    ((X, W, np.zeros(6)), {}, TypeError, "bias must have x's dtype float32, got float64"),
    ((X[:, :0], W[:, :0]), {}, ValueError, r"weight must have no empty axis .* \(6, 0, 3, 3\)"),
    ((X, W[:0]), {}, ValueError, "weight must have no empty axis"),
    ((X, W[:, :, :0]), {}, ValueError, "weight must have no empty axis"),
    ((X, W[:, :3]), {}, ValueError, r"needs x with 3 channels .* got x of shape \(2, 4, 8, 8\)"),
    ((X, W[:, :1]), dict(groups=2), ValueError, "with groups=2 needs x with 2 channels"),
    ((X, W[:5, :2]), dict(groups=2), ValueError, "O divisible by groups"),
    ((X, W, np.zeros(5, F32)), {}, ValueError, r"bias must have shape \(6,\) .* got \(5,\)"),
    ((X, W), dict(stride=0), ValueError, "conv2d_forward: stride must be positive, got 0"),
    ((X, W), dict(dilation=(1, -1)), ValueError, "dilation must be positive"),
    ((X, W), dict(padding=-1), ValueError, "padding must be non-negative, got -1"),
    ((X, W), dict(padding="full"), ValueError, "padding string must be 'valid' or 'same'"),
    ((X, W), dict(padding="same", stride=2), ValueError, "padding='same' needs stride 1"),
    ((X, W), dict(groups=0), ValueError, "groups must be a positive int, got 0"),
    ((X, np.zeros((6, 4, 9, 9), F32)), {}, ValueError, r"dilated kernel \(9\) is larger"),
    ((X, W), dict(dilation=5), ValueError, r"dilated kernel \(11\) is larger"),
    ((X[:, :, :0], W), dict(padding=2), ValueError,
     r"x of shape \(2, 4, 0, 8\) has an empty spatial axis"),
])
def test_conv2d_forward_errors(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        conv2d_forward(*args, **kwargs)


@pytest.mark.parametrize("args,kwargs,err,match", [
    ((X[0], WT), {}, ValueError, r"conv_transpose2d_forward: x must have shape \(N, C, H, W\)"),
    ((X.astype(bool), WT), {}, TypeError, "x must be a floating-point array"),
    ((X.astype(np.float64), WT), {}, TypeError, "weight must have x's dtype float64"),
    ((X, WT.astype(np.float16)), {}, TypeError, "weight must be float32 or float64"),
    ((X, WT[:, :0]), {}, ValueError, "weight must have no empty axis"),
    ((X[:, :0], WT[:0]), {}, ValueError, "weight must have no empty axis"),
    ((X, WT[:3]), {}, ValueError, r"needs x with 3 channels, divisible by groups"),
    ((X, WT), dict(groups=3), ValueError, "divisible by groups"),
    ((X, WT, np.zeros(4, F32)), {}, ValueError, r"bias must have shape \(3,\)"),
    ((X, WT[:, :1], np.zeros(3, F32)), dict(groups=2), ValueError, r"bias must have shape \(2,\)"),
    ((X, WT), dict(stride=(1, 0)), ValueError, "stride must be positive"),
    ((X, WT), dict(padding=(0, -2)), ValueError, "padding must be non-negative"),
    ((X, WT), dict(padding="same"), TypeError, "padding must be an int or a pair"),
    ((X, WT), dict(stride=2, output_padding=2), ValueError,
     "output_padding must be smaller than either stride or dilation"),
    ((X, WT), dict(padding=6), ValueError, "too small"),
    ((X[:, :, :, :0], WT), {}, ValueError, r"x of shape \(2, 4, 8, 0\) has an empty spatial"),
])
def test_conv_transpose2d_forward_errors(args, kwargs, err, match):
    with pytest.raises(err, match=match):
        conv_transpose2d_forward(*args, **kwargs)


def _wrong_shapes(shape):
    n, o, h, w = shape
    return [(n + 1, o, h, w), (n, o + 1, h, w), (n, o, h + 1, w), (n, o, h, w - 1),
            (n, o, 4 * h, 4 * w), (n, o, h * w), (1, n, o, h, w)]


def _conv_case(shape):
    n, c, h, o, k, s, p, g = shape
    n = n or 4 * numba.get_num_threads()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, h)).astype(F32)
    w = rng.standard_normal((o, c // g, k, k)).astype(F32)
    return conv2d_forward(x, w, np.zeros(o, F32), s, p, 1, g)


@pytest.mark.parametrize("path,shape", CONV_PATHS)
def test_conv2d_backward_refuses_a_dy_of_another_shape_on_every_path(path, shape):
    y, cache = _conv_case(shape)
    assert conv_path(cache) == path
    for bad in _wrong_shapes(y.shape):
        with pytest.raises(ValueError, match=r"conv2d_backward: dy must have the shape of the "
                                             rf"forward's output \({y.shape[0]}, "):
            conv2d_backward(np.ones(bad, F32), cache)
    with pytest.raises(TypeError, match="conv2d_backward: dy must be a floating-point array"):
        conv2d_backward(np.ones(y.shape, np.int64), cache)
    dy = np.random.default_rng(1).standard_normal(y.shape)   # float64: cast to y's dtype
    dx, dw, db = conv2d_backward(dy, cache)
    assert dx.dtype == dw.dtype == db.dtype == F32
    y, cache = _conv_case(shape)
    dx32, dw32, db32 = conv2d_backward(dy.astype(F32), cache)
    np.testing.assert_array_equal(dx, dx32)
    np.testing.assert_array_equal(dw, dw32)


@pytest.mark.parametrize("path,shape", CONVT_PATHS)
def test_conv_transpose2d_backward_refuses_a_dy_of_another_shape_on_every_path(path, shape):
    n, c, h, o, k, s, p, op = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, h)).astype(F32)
    w = rng.standard_normal((c, o, k, k)).astype(F32)
    y, cache = conv_transpose2d_forward(x, w, None, s, p, op)
    assert conv_path(cache) == path
    for bad in _wrong_shapes(y.shape):
        with pytest.raises(ValueError, match="conv_transpose2d_backward: dy must have the shape"):
            conv_transpose2d_backward(np.ones(bad, F32), cache)
    dy = rng.standard_normal(y.shape).astype(F32)
    dx, dw, db = conv_transpose2d_backward(dy, cache)
    assert db is None
    # the right shape still goes through: dx is the convolution of dy with the same weight
    np.testing.assert_allclose(dx, conv2d_forward(dy, w, None, s, p)[0], rtol=1e-4,
                               atol=1e-4 * np.abs(dx).max())


def _check_backward(backward, cache, x, weight, y, dy_delta, rng):
    """backward refuses a dy off the output's shape by ``dy_delta`` and, given
    the right shape, returns dx and dw, the adjoints of the (bias-free) forward,
    linear in x and in the weight."""
    dy = rng.standard_normal(tuple(max(1, a + b) for a, b in zip(y.shape, dy_delta)))
    if dy.shape != y.shape:
        with pytest.raises(ValueError, match="dy must have the shape"):
            backward(dy, cache)
        return
    dx, dw, _ = backward(dy, cache)
    assert dx.shape == x.shape and dw.shape == weight.shape
    np.testing.assert_allclose(np.vdot(dy, y), np.vdot(dx, x), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.vdot(dy, y), np.vdot(dw, weight), rtol=1e-9, atol=1e-9)


def _valid(fn, *args):
    try:
        return fn(*args)
    except ValueError:
        return None


@given(n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(1, 6), w=st.integers(1, 6),
       o=st.integers(1, 4), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       wc=st.integers(1, 4), groups=st.integers(-1, 3),
       stride=st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
       padding=st.one_of(st.tuples(st.integers(-2, 3), st.integers(-2, 3)),
                         st.sampled_from(["same", "valid", "full"])),
       dilation=st.tuples(st.integers(-1, 2), st.integers(-1, 2)),
       dy_delta=st.tuples(*[st.integers(-1, 1)] * 4), seed=seeds())
def test_conv2d_any_arguments_give_the_formula_or_a_clear_error(n, c, h, w, o, k, wc, groups,
                                                                stride, padding, dilation,
                                                                dy_delta, seed):
    """Whatever the arguments, conv2d_forward either returns the output size of
    ``nnzero.shapes`` or raises ValueError; backward takes exactly that shape."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((o, wc) + k)
    try:
        y, cache = conv2d_forward(x, weight, None, stride, padding, dilation, groups)
    except ValueError:
        ok = (groups >= 1 and c == wc * groups and o % groups == 0 and min(stride) >= 1
              and min(dilation) >= 1 and _valid(conv_output_size, (h, w), k, stride, padding,
                                                dilation))
        assert not ok
        return
    assert y.shape == (n, o) + conv_output_size((h, w), k, stride, padding, dilation)
    assert c == wc * groups
    _check_backward(conv2d_backward, cache, x, weight, y, dy_delta, rng)


@given(n=st.integers(1, 2), c=st.integers(1, 4), h=st.integers(1, 5), w=st.integers(1, 5),
       wc=st.integers(1, 4), og=st.integers(1, 3),
       k=st.tuples(st.integers(1, 4), st.integers(1, 4)), groups=st.integers(-1, 3),
       stride=st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
       padding=st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
       output_padding=st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
       dilation=st.tuples(st.integers(-1, 2), st.integers(-1, 2)),
       dy_delta=st.tuples(*[st.integers(-1, 1)] * 4), seed=seeds())
def test_conv_transpose2d_any_arguments_give_the_formula_or_a_clear_error(
        n, c, h, w, wc, og, k, groups, stride, padding, output_padding, dilation, dy_delta, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((wc, og) + k)   # (C, O/groups, KH, KW)
    args = (stride, padding, output_padding, dilation, groups)
    try:
        y, cache = conv_transpose2d_forward(x, weight, None, *args)
    except ValueError:
        ok = (groups >= 1 and c == wc and c % groups == 0 and min(stride) >= 1
              and min(dilation) >= 1 and min(padding) >= 0 and min(output_padding) >= 0
              and _valid(conv_transpose_output_size, (h, w), k, stride, padding,
                         output_padding, dilation))
        assert not ok
        return
    assert y.shape == (n, og * groups) + conv_transpose_output_size(
        (h, w), k, stride, padding, output_padding, dilation)
    _check_backward(conv_transpose2d_backward, cache, x, weight, y, dy_delta, rng)
