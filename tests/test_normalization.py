"""BatchNorm and dropout: gradients, PyTorch's running-statistics rules, errors."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import seeds
from nnzero import gradcheck
from nnzero.layers import BatchNorm1d, BatchNorm2d, Dropout, Dropout2d

F64 = np.float64


@pytest.mark.parametrize("cls,rank", [(BatchNorm2d, 4), (BatchNorm1d, 2), (BatchNorm1d, 3)])
@given(n=st.integers(2, 4), c=st.integers(1, 3), side=st.integers(1, 3), affine=st.booleans(),
       training=st.booleans(), seed=seeds())
def test_batchnorm_gradients(cls, rank, n, c, side, affine, training, seed):
    rng = np.random.default_rng(seed)
    shape = (n, c) + (side,) * (rank - 2)
    layer = cls(c, affine=affine, dtype=F64)
    if affine:
        layer.weight.data[...] = rng.uniform(0.5, 2, c)
        layer.bias.data[...] = rng.standard_normal(c)
    layer.running_mean[...] = rng.standard_normal(c)
    layer.running_var[...] = rng.uniform(0.5, 2, c)
    layer.train(training)
    x = rng.standard_normal(shape) * 3 + 1
    gradcheck(layer, x)


def test_batchnorm_values_and_running_statistics_by_hand():
    rng = np.random.default_rng(0)
    layer = BatchNorm2d(3, momentum=0.1, dtype=F64)
    x = rng.standard_normal((4, 3, 5, 5)) * 2 + 3
    y = layer(x)
    mu = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(y, (x - mu[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5))
    m = 4 * 5 * 5
    np.testing.assert_allclose(layer.running_mean, 0.1 * mu)
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * var * m / (m - 1))  # unbiased
    assert int(layer.num_batches_tracked) == 1
    layer.eval()
    before = layer.running_mean.copy()
    z = layer(x)
    np.testing.assert_allclose(z, (x - layer.running_mean[:, None, None])
                               / np.sqrt(layer.running_var[:, None, None] + 1e-5))
    np.testing.assert_array_equal(layer.running_mean, before)  # eval leaves them alone


def test_batchnorm_cumulative_average_when_momentum_is_none():
    rng = np.random.default_rng(1)
    layer = BatchNorm1d(2, momentum=None, dtype=F64)
    batches = [rng.standard_normal((6, 2)) + k for k in range(3)]
    for b in batches:
        layer(b)
    np.testing.assert_allclose(layer.running_mean, np.mean([b.mean(axis=0) for b in batches],
                                                           axis=0))
    np.testing.assert_allclose(layer.running_var, np.mean([b.var(axis=0, ddof=1)
                                                           for b in batches], axis=0))


def test_batchnorm_without_tracking_uses_batch_statistics_in_eval():
    layer = BatchNorm2d(2, track_running_stats=False, affine=False, dtype=F64).eval()
    x = np.random.default_rng(0).standard_normal((3, 2, 2, 2))
    y = layer(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    assert "running_mean" not in layer.state_dict()
    assert list(BatchNorm2d(2).state_dict()) == ["weight", "bias", "running_mean",
                                                 "running_var", "num_batches_tracked"]


@pytest.mark.parametrize("make,x,match", [
    (lambda: BatchNorm2d(3), np.zeros((2, 3, 4)), "expected input of rank 4"),
    (lambda: BatchNorm2d(3), np.zeros((2, 4, 2, 2)), "expected 3 channels"),
    (lambda: BatchNorm1d(3), np.zeros((1, 3)), "more than 1 value per channel"),
    (lambda: BatchNorm2d(3, momentum=2), None, "momentum must be in"),
    (lambda: Dropout(1.5), None, "dropout probability p must be in"),
])
def test_errors(make, x, match):
    with pytest.raises(ValueError, match=match):
        make()(x)


def test_dropout_rate_scaling_eval_and_p_one():
    x = np.ones((200, 500))
    layer = Dropout(0.3, rng=0)
    y = layer(x)
    assert set(np.unique(y)) <= {0.0, 1 / 0.7}
    keep = np.mean(y > 0)
    assert abs(keep - 0.7) < 5 * math.sqrt(0.21 / x.size)   # 5 sigma
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)  # same mask
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    one = Dropout(1.0, rng=0)
    out = one(x)
    assert np.all(out == 0) and not np.isnan(out).any()
    assert np.all(one.backward(np.ones_like(x)) == 0)
    np.testing.assert_array_equal(Dropout(0.4, rng=3)(x), Dropout(0.4, rng=3)(x))


def test_dropout2d_drops_whole_channels():
    x = np.ones((50, 20, 3, 3))
    y = Dropout2d(0.5, rng=0)(x)
    per_channel = y.reshape(50, 20, -1)
    assert np.all(per_channel.min(axis=2) == per_channel.max(axis=2))
    gradcheck(Dropout2d(0.5, rng=1), np.random.default_rng(0).standard_normal((2, 3, 2, 2)))
