"""The elementwise and pooling kernels equal their NumPy twins on drawn inputs
(the convolution kernels: ``test_kernels_conv.py``)."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import draw_pool_window, seeds
from nnzero.kernels import elementwise as K
from nnzero.kernels import pooling as Pk
from nnzero.functional import pooling as P


pytestmark = pytest.mark.usefixtures("split_every_kernel_call")  # see conftest.py


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


@st.composite
def pool_geometries(draw, dilation=True):
    k, s, p, d = draw_pool_window(draw, dilation)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 8)),
             draw(st.integers(1, 8)))
    ceil = draw(st.booleans())
    try:
        geo = P.pool_geometry("t", shape, k, s, p, d, ceil)
    except ValueError:
        return None
    return geo, shape, k, p


@given(g=pool_geometries(), dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_max_and_index_kernels_equal_numpy_twins(g, dtype, seed):
    if g is None:
        return
    geo, shape, k, _ = g
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, shape).astype(dtype)  # many ties: the tie rule must agree
    x[rng.random(shape) < 0.1] = np.nan
    y = np.empty(shape[:2] + geo.out_size, dtype)
    i = np.empty(y.shape, np.int32)
    y2, i2 = y.copy(), i.copy()
    args = (geo.r0, geo.ulo, geo.uhi, geo.dilation[0], geo.c0, geo.vlo, geo.vhi,
            geo.dilation[1])
    Pk.max_forward_numba(x, *args, y, i)
    Pk.max_forward_numpy(x, *args, y2, i2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(i, i2)
    if geo.dilation == (1, 1) and k in Pk.SPECIALIZED_SIZES:
        block = (*Pk.full_range(geo.ulo, geo.uhi, k[0]), *Pk.full_range(geo.vlo, geo.vhi, k[1]))
        y3, i3 = np.full_like(y, 7), np.full_like(i, -1)
        Pk.specialized("max", *k, *geo.stride, P._is_all(block, y))(
            x, geo.r0, geo.c0, *block, y3, i3)
        Pk.max_forward_numba(x, *args, y3, i3, block)
        np.testing.assert_array_equal(y3, y)
        np.testing.assert_array_equal(i3, i)
    dy = rng.standard_normal(y.shape).astype(dtype)
    planes = shape[0] * shape[1]
    a = np.full((planes, shape[2] * shape[3]), np.nan, dtype)
    b = a.copy()
    Pk.index_backward_numba(dy.reshape(planes, -1), i.reshape(planes, -1), a)
    Pk.index_backward_numpy(dy.reshape(planes, -1), i.reshape(planes, -1), b)
    # cells that win several windows sum in float32 here and in float64 in the twin
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a, b, **tol)


@given(g=pool_geometries(dilation=False), seed=seeds())
def test_avg_and_stochastic_kernels_equal_numpy_twins(g, seed):
    if g is None:
        return
    geo, shape, k, p = g
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2, shape)
    x[rng.random(shape) < 0.3] = 0
    ranges = P._clipped(geo, shape[2], shape[3])
    div = P.avg_divisors(geo, shape[2], shape[3], k, p, True, None)
    out = shape[:2] + geo.out_size
    pairs = [(Pk.avg_forward_numba, Pk.avg_forward_numpy, (x, *ranges, div), [out]),
             (Pk.avg_backward_numba, Pk.avg_backward_numpy,
              (rng.standard_normal(out), *ranges, div), [shape])]
    key = np.uint64(rng.integers(0, 2 ** 64, dtype=np.uint64))
    pairs.append((Pk.stochastic_forward_numba, Pk.stochastic_forward_numpy,
                  (x, *ranges, key), [out, out]))
    pairs.append((Pk.stochastic_eval_forward_numba, Pk.stochastic_eval_forward_numpy,
                  (x, *ranges), [out, out]))
    for fast, twin, args, shapes in pairs:
        outs_a = [np.full(sh, -7.0) if len(shapes) == 1 or j == 0 else
                  np.full(sh, -7, dtype=np.int32 if fast is Pk.stochastic_forward_numba
                          else np.float64) for j, sh in enumerate(shapes)]
        outs_b = [o.copy() for o in outs_a]
        fast(*args, *outs_a)
        twin(*args, *outs_b)
        for oa, ob in zip(outs_a, outs_b):
            np.testing.assert_allclose(oa, ob, rtol=1e-12, atol=1e-12)
    if k in Pk.SPECIALIZED_SIZES:
        # the unrolled kernel draws the same u for each window as the general one
        block = (*Pk.full_range(geo.ulo, geo.uhi, k[0]), *Pk.full_range(geo.vlo, geo.vhi, k[1]))
        y3, i3 = np.full(out, -7.0), np.full(out, -7, np.int32)
        whole = P._is_all(block, y3)  # both variants: bounds from the block or the shape
        Pk.specialized("stochastic", *k, *geo.stride, whole)(
            x, ranges[0], ranges[2], *block, key, y3, i3)
        Pk.stochastic_forward_numba(x, *ranges, key, y3, i3, block)
        y4, i4 = np.empty(out), np.empty(out, np.int32)
        Pk.stochastic_forward_numpy(x, *ranges, key, y4, i4)
        np.testing.assert_array_equal(y3, y4)
        np.testing.assert_array_equal(i3, i4)
        # average pooling's unrolled forward and backward, block plus general rest
        ya, yb = np.full(out, -7.0), np.full(out, -7.0)
        Pk.specialized("avg", *k, *geo.stride, whole)(
            x, ranges[0], ranges[2], *block, div, ya)
        Pk.avg_forward_numba(x, *ranges, div, ya, block)
        Pk.avg_forward_numpy(x, *ranges, div, yb)
        np.testing.assert_allclose(ya, yb, rtol=1e-12, atol=1e-12)
        g = rng.standard_normal(out)
        da, db = np.full(shape, np.nan), np.full(shape, np.nan)
        Pk.specialized("avg_backward", *k, *geo.stride, whole)(
            g, ranges[0], ranges[2], *block, div, da)
        Pk.avg_backward_numba(g, *ranges, div, da, block)
        Pk.avg_backward_numpy(g, *ranges, div, db)
        np.testing.assert_allclose(da, db, rtol=1e-12, atol=1e-12)
    ys, ss = np.empty(out), np.empty(out)
    Pk.stochastic_eval_forward_numba(x, *ranges, ys, ss)
    dy = rng.standard_normal(out)
    a, b = np.empty(shape), np.empty(shape)
    Pk.stochastic_eval_backward_numba(x, dy, ys, ss, *ranges, a)
    Pk.stochastic_eval_backward_numpy(x, dy, ys, ss, *ranges, b)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@given(n=st.integers(0, 200), dtype=st.sampled_from([np.float32, np.float64]),
       slope=st.floats(-2, 2), seed=seeds())
def test_elementwise_select_kernels_equal_numpy_twins(n, dtype, slope, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 30).astype(dtype)
    x[rng.random(n) < 0.1] = 0
    x[rng.random(n) < 0.05] = np.nan
    dy = rng.standard_normal(n).astype(dtype)
    dy[rng.random(n) < 0.05] = np.inf  # a non-finite dy where x <= 0 must still give 0
    for fast, twin, args in [(K.relu_backward_numba, K.relu_backward_numpy, (x, dy)),
                             (K.leaky_relu_numba, K.leaky_relu_numpy,
                              (x, dy, dtype(slope)))]:
        a, b = np.empty_like(x), np.empty_like(x)
        fast(*args, a)
        with np.errstate(invalid="ignore"):  # 0 * inf = nan in both, as PyTorch's
            twin(*args, b)
        np.testing.assert_array_equal(a, b)
    a, b = np.empty_like(x), np.empty_like(x)
    with np.errstate(over="ignore"):
        K.sigmoid_numba(x, a)
        K.sigmoid_numpy(x, b)
    # both evaluate in float64 and round once; exp's last bit may differ between libm and
    # NumPy's SIMD exp, which can move a float32 result by one ulp at most
    np.testing.assert_allclose(a, b, rtol=1.2e-7 if dtype == np.float32 else 1e-15, atol=0)


@pytest.mark.parametrize("k", [(2, 2), (3, 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiled_average_backward_equals_the_general_loop(k, dtype):
    """stride = kernel, no padding, H and W multiples of the window: the tiled
    kernel writes each cell once; it must agree with the zero-and-add loop."""
    from nnzero.layers import AvgPool2d
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4 * k[0], 5 * k[1])).astype(dtype)
    geo = P.pool_geometry("t", x.shape, k, k, 0, 1, False)
    ranges = P._clipped(geo, *x.shape[2:])
    div = np.full(geo.out_size, float(k[0] * k[1]), dtype)
    g = rng.standard_normal(x.shape[:2] + geo.out_size).astype(dtype)
    a, b = np.full_like(x, np.nan), np.full_like(x, np.nan)
    Pk.specialized("avg_backward_tiled", *k)(g, div, a)
    Pk.avg_backward_numpy(g, *ranges, div, b)
    np.testing.assert_array_equal(a, b)  # one division per cell in both
    layer = AvgPool2d(k)  # and the layer takes the tiled path for this shape
    layer(x)
    assert P._tiles_plane(layer._ctx.cache) == Pk.JIT_ENABLED
    np.testing.assert_array_equal(layer.backward(g), b)
    assert not P._tiles_plane(AvgPool2d(k)._forward(x[..., :-1])[1])
    assert not P._tiles_plane(AvgPool2d(k, padding=1)._forward(x)[1])


@pytest.mark.parametrize("k,s,p,ceil,cip", [
    ((3, 3), 1, 1, False, True), ((3, 3), 1, 1, False, False), ((2, 2), 1, 1, True, False),
    ((3, 3), 2, 1, True, True), ((2, 2), 3, 0, True, False), ((3, 2), 1, (1, 0), False, True)])
def test_average_pool_paths_equal_the_numpy_twins(k, s, p, ceil, cip):
    """The zero-framed forward and the stride-1 gather backward (and whatever path
    a configuration takes) against the twins' windows and divisors."""
    from nnzero.layers import AvgPool2d
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 8))
    layer = AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=cip)
    y = layer(x)
    cache = layer._ctx.cache
    want = np.empty_like(y)
    Pk.avg_forward_numpy(x, *cache.ranges, cache.div, want)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-15)
    g = rng.standard_normal(y.shape)
    dx = np.empty_like(x)
    Pk.avg_backward_numpy(g, *cache.ranges, cache.div, dx)
    np.testing.assert_allclose(layer.backward(g), dx, rtol=1e-12, atol=1e-15)
