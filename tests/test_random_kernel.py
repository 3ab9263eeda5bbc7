"""The counter-based uniform draws behind stochastic pooling: the numba and
NumPy versions agree bit for bit, and the numbers look uniform and independent."""
import math

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnzero.kernels import random as R
from nnzero.layers import StochasticPool2d


@numba.njit
def _draws(key, counters):
    out = np.empty(counters.shape[0], np.float32)
    for i in range(counters.shape[0]):
        out[i] = R.uniform_at(key, counters[i])
    return out


def _chi2_bound(dof, z=4.75):
    """Wilson-Hilferty upper quantile of chi-square (z = 4.75: tail ~1e-6)."""
    a = 2.0 / (9 * dof)
    return dof * (1 - a + z * math.sqrt(a)) ** 3


@given(key=st.integers(0, 2 ** 64 - 1),
       counters=st.lists(st.integers(0, 2 ** 62), min_size=1, max_size=50))
def test_numba_draws_equal_numpy_twin(key, counters):
    c = np.array(counters, dtype=np.int64)
    a = _draws(np.uint64(key), c)
    b = R.uniform_numpy(np.uint64(key), c)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == b.dtype == np.float32
    assert np.all((a >= 0) & (a < 1))


@pytest.mark.parametrize("key", [0, 1, 2 ** 63, 0x0123456789ABCDEF])
def test_draws_are_uniform_and_serially_uncorrelated(key):
    n = 1 << 20
    u = R.uniform_numpy(np.uint64(key), np.arange(n)).astype(np.float64)
    assert 0 <= u.min() and u.max() < 1
    # mean and variance of U[0, 1): 1/2 and 1/12, each within 5 standard errors
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)  # Var((U-1/2)^2) = 1/180
    counts = np.bincount((u * 256).astype(np.int64), minlength=256)
    chi2 = ((counts - n / 256) ** 2 / (n / 256)).sum()
    assert chi2 < _chi2_bound(255), chi2
    # neighbours (counters n, n+1) and pairs of cells (u_n, u_{n+1}) on a 16x16 grid
    r = np.corrcoef(u[:-1], u[1:])[0, 1]
    assert abs(r) < 5 / math.sqrt(n), r
    pairs = np.bincount((u[0::2] * 16).astype(np.int64) * 16 + (u[1::2] * 16).astype(np.int64),
                        minlength=256)
    chi2 = ((pairs - n / 2 / 256) ** 2 / (n / 2 / 256)).sum()
    assert chi2 < _chi2_bound(255), chi2


def test_nearby_keys_give_unrelated_streams():
    n = 1 << 18
    a = R.uniform_numpy(np.uint64(1000), np.arange(n)).astype(np.float64)
    for other in (1001, 1000 ^ (1 << 63)):
        b = R.uniform_numpy(np.uint64(other), np.arange(n)).astype(np.float64)
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / math.sqrt(n)
        assert np.mean(a == b) < 1e-3


def test_draw_key_follows_the_generator():
    a = R.draw_key(np.random.default_rng(5))
    b = R.draw_key(np.random.default_rng(5))
    c = R.draw_key(np.random.default_rng(6))
    assert a == b != c and a.dtype == np.uint64


def test_stochastic_pool_samples_do_not_depend_on_the_thread_count():
    x = np.random.default_rng(0).uniform(0, 1, (4, 8, 12, 12)).astype(np.float32)
    before = numba.get_num_threads()
    outs = []
    try:
        for threads in sorted({1, before}):
            numba.set_num_threads(threads)
            outs.append(StochasticPool2d(2, rng=3)(x))
    finally:
        numba.set_num_threads(before)
    for y in outs[1:]:
        np.testing.assert_array_equal(outs[0], y)
    # and successive calls draw fresh keys: not the same samples twice
    layer = StochasticPool2d(2, rng=3)
    assert not np.array_equal(layer(x), layer(x))
