"""Initialisers: PyTorch's bounds and standard deviations, seeded by rng."""
import math

import numpy as np
import pytest

from nnzero import init


def test_fans_and_gain():
    assert init.calculate_fan_in_and_fan_out((8, 3, 5, 5)) == (75, 200)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.calculate_fan_in_and_fan_out((5,))


def test_uniform_bounds_fill_their_range():
    w = np.empty((200, 300), dtype=np.float32)
    init.xavier_uniform_(w, rng=0)
    bound = math.sqrt(6 / 500)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    init.kaiming_uniform_(w, a=math.sqrt(5), rng=0)
    assert np.abs(w).max() <= 1 / math.sqrt(300) * (1 + 1e-6)
    assert w.dtype == np.float32


def test_normal_std_and_seed():
    w = np.empty((400, 500))
    init.kaiming_normal_(w, nonlinearity="relu", rng=1)
    assert w.std() == pytest.approx(math.sqrt(2 / 500), rel=0.01)
    v = np.empty((400, 500))
    init.kaiming_normal_(v, nonlinearity="relu", rng=1)
    np.testing.assert_array_equal(w, v)
    init.xavier_normal_(w, rng=2)
    assert w.std() == pytest.approx(math.sqrt(2 / 900), rel=0.01)
    init.zeros_(w)
    assert not w.any()


def test_rng_argument_is_checked():
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        init.uniform_(np.empty(3), rng="seed")
