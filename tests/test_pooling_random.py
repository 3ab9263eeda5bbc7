"""Stochastic and mixed pooling: the draws held fixed for gradient checks,
their statistics against the papers' probabilities, eval rules and errors."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import draw_pool_window, seeds
from nnzero import gradcheck
from nnzero.layers import AvgPool2d, MaxPool2d, MixedPool2d, StochasticPool2d
from nnzero.shapes import pool_output_size


def positive_input(rng, shape, zeros=0.2):
    """Non-negative values with some exact zeros (post-ReLU style), no near-zero noise."""
    x = rng.uniform(0.05, 2.0, shape)
    x[rng.random(shape) < zeros] = 0.0
    return x


@st.composite
def window_configs(draw):
    k, s, p, _ = draw_pool_window(draw, dilation=False)
    ceil = draw(st.booleans())
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(k[0], 7)),
             draw(st.integers(k[1], 7)))
    return dict(k=k, s=s, p=p, ceil=ceil, shape=shape, seed=draw(seeds()))


def _fits(cfg):
    try:
        pool_output_size(cfg["shape"][2:], cfg["k"], cfg["s"], cfg["p"], 1, cfg["ceil"])
        return True
    except ValueError:
        return False


@given(cfg=window_configs(), training=st.booleans())
def test_stochastic_gradients_with_the_draw_fixed(cfg, training):
    if not _fits(cfg):
        return
    rng = np.random.default_rng(cfg["seed"])
    layer = StochasticPool2d(cfg["k"], cfg["s"], cfg["p"], cfg["ceil"], rng=cfg["seed"])
    layer.train(training)
    # finite differences would step below 0, out of the layer's domain: no zeros here
    # (all-zero windows are tested on their own)
    x = positive_input(rng, cfg["shape"], zeros=0.0)
    y = layer(x)
    assert y.shape[2:] == layer.output_size(x.shape[2:])
    if training:  # every output is one of its window's cells
        assert set(np.unique(y)) <= set(np.unique(x))
    else:
        sq = AvgPool2d(cfg["k"], cfg["s"], cfg["p"], cfg["ceil"], divisor_override=1)
        num, den = sq(x * x), sq(x)
        np.testing.assert_allclose(y, np.where(den > 0, num / np.where(den > 0, den, 1), 0),
                                   rtol=1e-12)
    gradcheck(layer, x)


def test_stochastic_sampling_frequencies_match_probabilities():
    # every 2x2 window holds (1, 2, 3, 4): P(cell i) = a_i / 10
    tile = np.array([[1.0, 2.0], [3.0, 4.0]])
    x = np.tile(tile, (8, 16, 32, 32))                     # 8*16*32*32 = 131072 windows
    layer = StochasticPool2d(2, rng=123)
    y = layer(x)
    n = y.size
    for value in (1.0, 2.0, 3.0, 4.0):
        p = value / 10
        freq = np.mean(y == value)
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(freq - p) < 5 * sigma, (value, freq, p)  # 5 sigma: a false alarm ~1e-6


def test_stochastic_zero_windows_padding_seeds_and_eval():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[0.0, 3.0], [0.0, 0.0]]
    layer = StochasticPool2d(2, rng=0)
    y = layer(x)
    np.testing.assert_array_equal(y[0, 0], [[0, 0], [0, 3]])  # the only nonzero cell wins
    g = layer.backward(np.ones((1, 1, 2, 2)))
    assert g[0, 0, 0, 0] == 1 and g[0, 0, 2, 3] == 1 and g.sum() == 4  # zero window: first
    layer.eval()
    y = layer(x)
    np.testing.assert_array_equal(y[0, 0], [[0, 0], [0, 3]])
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 2, 2)))[0, 0, :2, :2], 0)
    # padded cells are never drawn: a padded 3x3 window over a corner 1.0
    pad = StochasticPool2d(3, 2, 1, rng=0)
    out = pad(np.ones((1, 1, 3, 3)))
    assert np.all(out == 1.0)
    a = StochasticPool2d(2, rng=7)(positive_input(np.random.default_rng(0), (2, 3, 6, 6)))
    b = StochasticPool2d(2, rng=7)(positive_input(np.random.default_rng(0), (2, 3, 6, 6)))
    np.testing.assert_array_equal(a, b)


def test_stochastic_eval_formula():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    layer = StochasticPool2d(2).eval()
    assert layer(x)[0, 0, 0, 0] == pytest.approx(30 / 10)
    g = layer.backward(np.ones((1, 1, 1, 1)))
    np.testing.assert_allclose(g.ravel(), (2 * x.ravel() - 3.0) / 10)


def test_stochastic_rejects_negative_and_nan():
    with pytest.raises(ValueError, match="StochasticPool2d: input must be non-negative.*-0.5"):
        StochasticPool2d(2)(np.array([[[[1.0, -0.5], [0.0, 1.0]]]]))
    with pytest.raises(ValueError, match="non-negative"):
        StochasticPool2d(2)(np.array([[[[1.0, np.nan], [0.0, 1.0]]]]))


@pytest.mark.parametrize("mode,granularity", [
    ("random", "layer"), ("random", "channel"), ("random", "region"), ("learned", "layer"),
    ("learned", "channel"), ("gated", "layer"), ("gated", "channel")])
@given(cfg=window_configs())
def test_mixed_gradients(mode, granularity, cfg):
    if not _fits(cfg):
        return
    rng = np.random.default_rng(cfg["seed"])
    c = cfg["shape"][1]
    channels = c if mode != "random" and granularity == "channel" else None
    layer = MixedPool2d(cfg["k"], cfg["s"], cfg["p"], cfg["ceil"], mode, granularity,
                        num_channels=channels, rng=cfg["seed"], dtype=np.float64)
    for prm in layer.parameters():
        prm.data[...] = rng.uniform(-1.5, 1.5, prm.shape)
    n = int(np.prod(cfg["shape"]))
    x = ((rng.permutation(n) + rng.uniform(0, 0.5)) / n * 4 - 2).reshape(cfg["shape"])
    gradcheck(layer, x)


def test_mixed_is_exactly_its_parts():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 7))
    args = (3, 2, 1, True)
    ymax = MaxPool2d(3, 2, 1, ceil_mode=True)(x)
    yavg = AvgPool2d(3, 2, 1, ceil_mode=True)(x)
    learned = MixedPool2d(*args, mode="learned", dtype=np.float64)
    np.testing.assert_allclose(learned(x), 0.5 * ymax + 0.5 * yavg)  # theta = 0: a = 1/2
    gated = MixedPool2d(*args, mode="gated", dtype=np.float64)
    np.testing.assert_allclose(gated(x), 0.5 * ymax + 0.5 * yavg)    # w = 0: a = 1/2
    random = MixedPool2d(*args, rng=1)
    outs = [random(x) for _ in range(20)]
    assert all(np.array_equal(o, ymax) or np.array_equal(o, yavg) for o in outs)
    assert any(np.array_equal(o, ymax) for o in outs) and any(np.array_equal(o, yavg)
                                                              for o in outs)


def test_mixed_gate_sees_window_cells_in_row_major_order():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    layer = MixedPool2d(2, mode="gated", dtype=np.float64)
    layer.weight.data[...] = [0.0, 0.0, 0.0, 1.0]  # only the bottom-right cell of each window
    y = layer(x)
    a = 1 / (1 + np.exp(-np.array([[5.0, 7.0], [13.0, 15.0]])))
    ymax = np.array([[5.0, 7.0], [13.0, 15.0]])
    yavg = np.array([[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_allclose(y[0, 0], a * ymax + (1 - a) * yavg)


@pytest.mark.parametrize("granularity", ["layer", "channel", "region"])
def test_mixed_random_choice_frequency_and_eval_rule(granularity):
    x = np.random.default_rng(0).standard_normal((4, 3, 6, 6))
    layer = MixedPool2d(2, granularity=granularity, rng=5)
    for _ in range(400):
        layer(x)
    cmax, cavg = layer.count_max, layer.count_avg
    total = cmax + cavg
    frac = cmax.sum() / total.sum()
    sigma = math.sqrt(0.25 / total.sum())
    assert abs(frac - 0.5) < 5 * sigma
    layer.eval()
    y = layer(x)
    ymax, yavg = MaxPool2d(2)(x), AvgPool2d(2)(x)
    use_max = cmax >= cavg
    if granularity == "layer":
        np.testing.assert_array_equal(y, ymax if use_max else yavg)
    elif granularity == "channel":
        np.testing.assert_array_equal(y, np.where(use_max[None, :, None, None], ymax, yavg))
    else:
        np.testing.assert_array_equal(y, np.where(use_max[None], ymax, yavg))
    state = layer.state_dict()
    fresh = MixedPool2d(2, granularity=granularity, rng=5).eval()
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh(x), y)


def test_mixed_tie_and_untrained_use_max():
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4))
    np.testing.assert_array_equal(MixedPool2d(2).eval()(x), MaxPool2d(2)(x))


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="median"), "mode must be one of"),
    (dict(mode="learned", granularity="region"), "granularity for mode='learned'"),
    (dict(mode="learned", granularity="channel"), "needs num_channels"),
    (dict(mode="random", granularity="channel", num_channels=3), "num_channels is only for"),
    (dict(mode="gated", num_channels=3), "num_channels is only for"),
    (dict(padding=2), "padding must be at most half"),
])
def test_mixed_configuration_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MixedPool2d(3, **kwargs)


def test_mixed_channel_count_checked_and_parameter_shapes():
    layer = MixedPool2d(2, mode="gated", granularity="channel", num_channels=3)
    assert layer.weight.shape == (3, 4) and layer.weight.dtype == np.float32
    learned = MixedPool2d(3, mode="learned")
    assert learned.theta.shape == (1,)
    # both start at 0, a gate of sigmoid(0) = 1/2: the mean of max and average pooling
    assert not layer.weight.data.any() and not learned.theta.data.any()
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    half = (MaxPool2d(2)(x) + AvgPool2d(2)(x)) / 2
    np.testing.assert_allclose(layer(x), half, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(MixedPool2d(2, mode="learned")(x), half, rtol=1e-6, atol=1e-6)
    # and the gradients at that start, parameters included (float64 copies)
    x64 = x.astype(np.float64)
    for double in (MixedPool2d(2, mode="gated", granularity="channel", num_channels=3,
                               dtype=np.float64),
                   MixedPool2d(2, mode="learned", dtype=np.float64)):
        gradcheck(double, x64)
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    with pytest.raises(ValueError, match="expected 3 channels"):
        layer(np.zeros((1, 4, 4, 4), dtype=np.float32))
