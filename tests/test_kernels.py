"""Every numba kernel equals its NumPy twin on drawn inputs."""
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from helpers import seeds
from nnzero.kernels import elementwise as K


@given(n=st.integers(0, 300), dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_erf_numba_equals_numpy_twin(n, dtype, seed):
    x = np.random.default_rng(seed).uniform(-6, 6, n).astype(dtype)
    a = np.empty_like(x)
    b = np.empty_like(x)
    K.erf_numba(x, a)
    K.erf_numpy(x, b)
    np.testing.assert_array_equal(a, b)
    if n:
        assert a[0] == np.asarray(math.erf(float(x[0])), dtype=dtype)


def test_erf_wrapper_keeps_shape_and_dtype():
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)[:, ::-1]  # non-contiguous
    y = K.erf(x)
    assert y.shape == (3, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y, np.vectorize(math.erf)(x.astype(np.float64)), rtol=1e-6)
