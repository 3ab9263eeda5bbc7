"""Every numba kernel equals its NumPy twin on drawn inputs."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import seeds
from nnzero.kernels import elementwise as K
from nnzero.kernels import im2col as I
from nnzero.kernels import winograd as Wk


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


@given(n=st.integers(0, 2), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       p=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       out=st.tuples(st.integers(1, 6), st.integers(1, 6)),
       dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_im2col_col2im_numba_equal_numpy_twins(n, c, h, w, k, s, p, d, out, dtype, seed):
    """Any window grid, even one reaching far past the image, on both kernels."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    args = (*k, *s, *p, *d, *out)
    a = np.full((n, c * k[0] * k[1], out[0] * out[1]), np.nan, dtype=dtype)
    b = a.copy()
    I.im2col_numba(x, *args, a)
    I.im2col_numpy(x, *args, b)
    np.testing.assert_array_equal(a, b)
    cols = rng.standard_normal(a.shape).astype(dtype)
    xa = np.full_like(x, np.nan)
    xb = np.full_like(x, np.nan)
    I.col2im_numba(cols, *args, xa)
    I.col2im_numpy(cols, *args, xb)
    np.testing.assert_allclose(xa, xb, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    # col2im is the adjoint of im2col
    np.testing.assert_allclose(np.sum(a.astype(np.float64) * cols), np.sum(x * xa.astype(np.float64)),
                               rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6)


def test_kernel_wrappers_refuse_inconsistent_shapes():
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match="cols must have shape"):
        I.im2col(x, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2), out=np.empty((1, 18, 5)))
    with pytest.raises(ValueError, match="invalid geometry"):
        I.col2im(np.empty((1, 18, 4)), x.shape, (3, 3), (0, 1), (0, 0), (1, 1), (2, 2))


@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 8), w=st.integers(1, 8),
       pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_winograd_kernels_equal_numpy_twins(n, c, h, w, pad, dtype, seed):
    oh, ow = h + 2 * pad[0] - 2, w + 2 * pad[1] - 2
    if oh < 1 or ow < 1:
        return
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    t = n * th * tw
    rng = np.random.default_rng(seed)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    pairs = [
        (Wk.input_transform_numba, Wk.input_transform_numpy, (x, pad[0], pad[1], th, tw),
         (16, c, t)),
        (Wk.output_transform_numba, Wk.output_transform_numpy,
         (rng.standard_normal((16, c, t)).astype(dtype), oh, ow), (n, c, oh, ow)),
        (Wk.output_grad_numba, Wk.output_grad_numpy,
         (rng.standard_normal((n, c, oh, ow)).astype(dtype), th, tw), (16, c, t)),
        (Wk.input_grad_numba, Wk.input_grad_numpy,
         (rng.standard_normal((16, c, t)).astype(dtype), pad[0], pad[1], th, tw), x.shape),
    ]
    for fast, twin, args, shape in pairs:
        a = np.full(shape, np.nan, dtype=dtype)
        b = np.full(shape, np.nan, dtype=dtype)
        fast(*args, a)
        twin(*args, b)
        np.testing.assert_allclose(a, b, **tol)
