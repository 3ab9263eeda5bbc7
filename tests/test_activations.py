"""Activations: gradients against finite differences, values against
independent formulas, PyTorch's kink values, stability and dtypes."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import away_from, float_arrays, seeds
from nnzero import gradcheck
from nnzero.layers import (ELU, GELU, SELU, Hardswish, LeakyReLU, LogSoftmax, Mish, PReLU,
                           ReLU, RReLU, Sigmoid, SiLU, Softmax, Softplus, Swish, Tanh)

F64 = np.float64


def _sig(t):
    return 1.0 / (1.0 + math.exp(-t)) if t >= 0 else math.exp(t) / (1.0 + math.exp(t))


_SELU_A, _SELU_S = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946

# (factory, kinks, scalar reference y(x)) for every parameter-free activation
ELEMENTWISE = {
    "sigmoid": (Sigmoid, (), _sig),
    "tanh": (Tanh, (), math.tanh),
    "relu": (ReLU, (0.0,), lambda v: max(v, 0.0)),
    "softplus": (Softplus, (), lambda v: math.log1p(math.exp(v))),
    "softplus_beta": (lambda: Softplus(beta=2.0, threshold=3.0), (1.5,),
                      lambda v: v if 2 * v > 3 else math.log1p(math.exp(2 * v)) / 2),
    "leaky_relu": (lambda: LeakyReLU(0.2), (0.0,), lambda v: v if v >= 0 else 0.2 * v),
    "elu": (lambda: ELU(1.5), (0.0,), lambda v: v if v > 0 else 1.5 * math.expm1(v)),
    "gelu": (GELU, (), lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2)))),
    "gelu_tanh": (lambda: GELU("tanh"), (),
                  lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi)
                                                     * (v + 0.044715 * v ** 3)))),
    "selu": (SELU, (0.0,), lambda v: _SELU_S * (v if v > 0 else _SELU_A * math.expm1(v))),
    "silu": (SiLU, (), lambda v: v * _sig(v)),
    "mish": (Mish, (), lambda v: v * math.tanh(math.log1p(math.exp(v)))),
    "hardswish": (Hardswish, (-3.0, 3.0),
                  lambda v: 0.0 if v <= -3 else (v if v >= 3 else v * (v + 3) / 6)),
    "rrelu_eval": (lambda: RReLU(0.1, 0.3, rng=0).eval(), (0.0,),
                   lambda v: v if v >= 0 else 0.2 * v),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@given(x=float_arrays())
def test_elementwise_gradient(name, x):
    factory, kinks, _ = ELEMENTWISE[name]
    gradcheck(factory(), away_from(x, kinks))


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@given(x=float_arrays(max_dims=2, max_side=6, lo=-8, hi=8))
def test_elementwise_values_match_scalar_formula(name, x):
    factory, _, ref = ELEMENTWISE[name]
    y = factory()(x)
    expected = np.vectorize(ref)(x)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-14)


@given(x=float_arrays(), seed=seeds())
def test_rrelu_training_gradient_with_fixed_draw(x, seed):
    layer = RReLU(rng=seed)
    gradcheck(layer, away_from(x))


@pytest.mark.parametrize("cls", [PReLU, Swish])
@given(x=float_arrays(min_dims=2), shared=st.booleans(), seed=seeds())
def test_channel_parameter_gradients(cls, x, shared, seed):
    n = 1 if shared else x.shape[1]
    layer = cls(n, dtype=F64)
    rng = np.random.default_rng(seed)
    name = "weight" if cls is PReLU else "beta"
    getattr(layer, name).data[...] = rng.uniform(-1.5, 1.5, n)
    gradcheck(layer, away_from(x))


def test_prelu_parameter_gradient_sums_over_batch_and_space():
    x = np.array([[[[-1.0, 2.0], [-3.0, 0.5]]], [[[-2.0, -0.5], [1.0, 1.0]]]])  # (2,1,2,2)
    layer = PReLU(1, dtype=F64)
    layer(x)
    dy = np.arange(1.0, 9.0).reshape(x.shape)
    dx = layer.backward(dy)
    # dL/da = sum of dy * x over the negative entries
    assert layer.weight.grad[0] == pytest.approx(1 * -1 + 3 * -3 + 5 * -2 + 6 * -0.5)
    np.testing.assert_array_equal(dx, np.where(x > 0, dy, 0.25 * dy))


def test_swish_not_learnable_has_no_parameter():
    layer = Swish(1, init=2.0, learnable=False, dtype=F64)
    assert list(layer.parameters()) == []
    assert "beta" in layer.state_dict()
    x = np.array([-1.0, 0.5])
    np.testing.assert_allclose(layer(x), x / (1 + np.exp(-2 * x)))


@pytest.mark.parametrize("dim", [0, 1, -1])
@given(x=float_arrays(min_dims=2, max_dims=3))
def test_softmax_gradient_and_values(dim, x):
    gradcheck(Softmax(dim), x)
    gradcheck(LogSoftmax(dim), x)
    y = Softmax(dim)(x)
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=dim, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(LogSoftmax(dim)(x), np.log(y), rtol=1e-10, atol=1e-12)


# -- derivatives at kinks are PyTorch 2.13's -------------------------------------------
KINKS = [
    (ReLU(), 0.0, 0.0),
    (LeakyReLU(0.3), 0.0, 0.3),
    (ELU(2.0), 0.0, 2.0),
    (SELU(), 0.0, _SELU_S * _SELU_A),
    (Hardswish(), -3.0, 0.0),
    (Hardswish(), 3.0, 1.0),
    (SiLU(), 0.0, 0.5),
    (Mish(), 0.0, 0.6),
    (Softplus(beta=1.0, threshold=1.0), 1.0, _sig(1.0)),   # log form at beta*x == threshold
    (Softplus(beta=1.0, threshold=1.0), 1.0 + 1e-9, 1.0),   # linear just past it
]


@pytest.mark.parametrize("layer,x0,expected", KINKS, ids=lambda v: repr(v))
def test_derivative_at_kink(layer, x0, expected):
    layer(np.array([x0]))
    g = layer.backward(np.array([1.0]))
    assert g[0] == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_prelu_and_rrelu_kinks():
    p = PReLU(1, init=0.4, dtype=F64)
    p(np.zeros(3))
    np.testing.assert_allclose(p.backward(np.ones(3)), 0.4)
    r = RReLU(0.1, 0.2, rng=3)
    r(np.zeros(1000))
    g = r.backward(np.ones(1000))
    assert np.all((g >= 0.1) & (g <= 0.2))  # training: x == 0 gets the sampled slope


def test_softplus_value_at_threshold():
    layer = Softplus(beta=1.0, threshold=1.0)
    assert layer(np.array([1.0]))[0] == pytest.approx(1.31326168752, rel=1e-9)


def test_relu_propagates_nan():
    assert np.isnan(ReLU()(np.array([np.nan]))[0])


# -- stability: |x| up to 1e4, float32 and float64 ---------------------------------------
STABILITY = [Sigmoid, Tanh, ReLU, Softplus, LeakyReLU, ELU, GELU, lambda: GELU("tanh"), SELU,
             SiLU, Mish, Hardswish, lambda: Softmax(-1), lambda: LogSoftmax(-1),
             lambda: RReLU(rng=0), lambda: PReLU(1), lambda: Swish(1)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factory", STABILITY)
def test_stable_at_extreme_inputs(factory, dtype):
    x = np.array([-1e4, -1e3, -100.0, -20.0, -1.0, 0.0, 1.0, 20.0, 100.0, 1e3, 1e4], dtype=dtype)
    layer = factory()
    if layer.dtype is not None:
        layer = type(layer)(1, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise", under="ignore"):
            y = layer(x)
            dx = layer.backward(np.ones_like(y))
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))


def test_extreme_values_are_right():
    x = np.array([-1e4, 1e4])
    np.testing.assert_array_equal(Sigmoid()(x), [0.0, 1.0])
    np.testing.assert_array_equal(Softplus()(x), [0.0, 1e4])
    np.testing.assert_array_equal(ELU()(x), [-1.0, 1e4])
    np.testing.assert_array_equal(Mish()(x), [-0.0, 1e4])
    np.testing.assert_allclose(Softmax()(np.array([1e4, 0.0])), [1.0, 0.0])


# -- dtypes ------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", STABILITY)
def test_integer_input_raises_type_error(factory):
    with pytest.raises(TypeError, match="astype"):
        factory()(np.arange(4))


def test_parameter_free_layers_keep_input_dtype_parametric_cast():
    x32 = np.linspace(-2, 2, 8, dtype=np.float32)
    assert ReLU()(x32).dtype == np.float32
    assert ReLU()(x32.astype(np.float64)).dtype == np.float64
    p = PReLU()  # float32 parameters
    x64 = x32.astype(np.float64)
    y = p(x64)
    assert y.dtype == np.float32
    dx = p.backward(np.ones_like(y))
    assert dx.dtype == np.float64  # dx has the dtype of the x the caller passed


# -- configuration errors ------------------------------------------------------------------
def test_configuration_errors():
    with pytest.raises(ValueError, match="RReLU: lower must be <= upper"):
        RReLU(0.5, 0.1)
    with pytest.raises(ValueError, match="beta must be non-zero"):
        Softplus(beta=0)
    with pytest.raises(ValueError, match="approximate"):
        GELU("fast")
    with pytest.raises(ValueError, match="num_parameters"):
        PReLU(0)
    with pytest.raises(ValueError, match=r"PReLU: num_parameters must be 1 or the channel "
                                         r"count.*num_parameters=4.*3 channel"):
        PReLU(4)(np.zeros((2, 3, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="Swish"):
        Swish(2)(np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match=r"Softmax: dim out of range"):
        Softmax(2)(np.zeros((2, 2)))


# -- RReLU: training draws, eval slope, statistics ------------------------------------------
def test_rrelu_train_vs_eval_and_seeds():
    x = -np.ones(20000)
    a = RReLU(rng=7)
    b = RReLU(rng=7)
    ya, yb = a(x), b(x)
    np.testing.assert_array_equal(ya, yb)  # same seed, same draw
    slopes = -ya
    lo, hi = 1 / 8, 1 / 3
    assert slopes.min() >= lo and slopes.max() <= hi
    # U(lo, hi): mean (lo+hi)/2, sd (hi-lo)/sqrt(12); the sample mean's sd is sd/sqrt(n)
    sd_mean = (hi - lo) / math.sqrt(12) / math.sqrt(x.size)
    assert abs(slopes.mean() - (lo + hi) / 2) < 5 * sd_mean
    assert abs(slopes.std() - (hi - lo) / math.sqrt(12)) < 0.01
    assert not np.array_equal(a(x), ya)  # a new draw each forward
    a.eval()
    np.testing.assert_allclose(a(x), -np.full_like(x, (lo + hi) / 2))
    np.testing.assert_array_equal(a(np.array([2.0])), [2.0])
