"""Linear, Maxout, ChannelMaxout, Flatten: gradients, values, errors."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import seeds
from nnzero import gradcheck
from nnzero.layers import ChannelMaxout, Flatten, Linear, Maxout

F64 = np.float64


@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2), fin=st.integers(1, 5),
       fout=st.integers(1, 4), bias=st.booleans(), seed=seeds())
def test_linear_gradients_any_leading_shape(lead, fin, fout, bias, seed):
    rng = np.random.default_rng(seed)
    layer = Linear(fin, fout, bias=bias, dtype=F64, rng=rng)
    x = rng.standard_normal(tuple(lead) + (fin,))
    gradcheck(layer, x)
    y = layer(x)
    expected = x @ layer.weight.data.T + (layer.bias.data if bias else 0)
    np.testing.assert_allclose(y, expected, rtol=1e-12)


def test_linear_default_init_bound_and_seed():
    a = Linear(50, 20, rng=3)
    b = Linear(50, 20, rng=3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    bound = 1 / np.sqrt(50)
    assert np.abs(a.weight.data).max() <= bound and np.abs(a.bias.data).max() <= bound
    assert np.abs(a.weight.data).max() > 0.9 * bound  # U(-b, b) fills the range
    assert a.weight.data.dtype == np.float32 and a.weight.shape == (20, 50)


def test_linear_errors():
    with pytest.raises(ValueError, match=r"Linear: expected input of shape \(\*, 4\), got \(2, 5\)"):
        Linear(4, 3)(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="in_features"):
        Linear(0, 3)
    with pytest.raises(TypeError, match="dtype"):
        Linear(2, 3, dtype=np.int32)


def _tie_free(rng, shape):
    """Values that are a permutation plus a small offset: no near-ties."""
    n = int(np.prod(shape))
    return (rng.permutation(n) + rng.uniform(0, 0.5)).reshape(shape) / n * 4 - 2


@given(n=st.integers(1, 3), fin=st.integers(1, 4), fout=st.integers(1, 3),
       pieces=st.integers(1, 4), bias=st.booleans(), seed=seeds())
def test_maxout_gradients(n, fin, fout, pieces, bias, seed):
    rng = np.random.default_rng(seed)
    layer = Maxout(fin, fout, pieces, bias=bias, dtype=F64, rng=rng)
    x = rng.standard_normal((n, fin))
    z = x @ layer.weight.data.T + (layer.bias.data if bias else 0)
    z = z.reshape(n, fout, pieces)
    gaps = np.diff(np.sort(z, axis=-1), axis=-1)
    if pieces > 1 and gaps.min() < 1e-3:  # keep the winning piece stable under eps
        return
    gradcheck(layer, x)
    np.testing.assert_allclose(layer(x), z.max(axis=-1), rtol=1e-12)


def test_maxout_contiguous_groups_and_first_tie():
    layer = Maxout(1, 2, 3, bias=False, dtype=F64)
    layer.weight.data[:, 0] = [1, 5, 2, 7, 7, 0]  # unit 0: rows 0..2, unit 1: rows 3..5
    y = layer(np.array([[1.0]]))
    np.testing.assert_array_equal(y, [[5.0, 7.0]])
    layer.backward(np.array([[1.0, 1.0]]))
    np.testing.assert_array_equal(layer.weight.grad[:, 0], [0, 1, 0, 1, 0, 0])


@given(n=st.integers(1, 2), groups=st.integers(1, 3), pieces=st.integers(1, 3),
       h=st.integers(1, 3), seed=seeds())
def test_channel_maxout(n, groups, pieces, h, seed):
    rng = np.random.default_rng(seed)
    x = _tie_free(rng, (n, groups * pieces, h, 2))
    layer = ChannelMaxout(pieces)
    y = layer(x)
    np.testing.assert_array_equal(y, x.reshape(n, groups, pieces, h, 2).max(axis=2))
    gradcheck(layer, x)


def test_channel_maxout_rejects_indivisible_channels():
    with pytest.raises(ValueError, match="divisible by pieces=2, got 3 channels"):
        ChannelMaxout(2)(np.zeros((1, 3, 2, 2)))


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=4),
       start=st.integers(-4, 3), end=st.integers(-4, 3), seed=seeds())
def test_flatten_matches_reshape(shape, start, end, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    nd = len(shape)
    if not (-nd <= start < nd and -nd <= end < nd) or start % nd > end % nd:
        with pytest.raises(ValueError, match="Flatten"):
            Flatten(start, end)(x)
        return
    s, e = start % nd, end % nd
    y = Flatten(start, end)(x)
    expected = x.reshape(shape[:s] + [int(np.prod(shape[s:e + 1]))] + shape[e + 1:])
    np.testing.assert_array_equal(y, expected)
    gradcheck(Flatten(start, end), x)
