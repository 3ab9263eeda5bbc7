"""Every numba kernel equals its NumPy twin on drawn inputs."""
import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from helpers import check_twins, draw_pool_window, seeds, tile_kernel_cases
from nnzero.kernels import elementwise as K
from nnzero.kernels import im2col as I
from nnzero.kernels import pooling as Pk
from nnzero.kernels import winograd as Wk
from nnzero.functional import pooling as P
from nnzero.shapes import pool_output_size


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
    I.im2col_numba(x, *args, a, False)
    I.im2col_numpy(x, *args, b, False)
    np.testing.assert_array_equal(a, b)
    serial = np.full_like(a, np.nan)
    I.im2col_serial(x, *args, serial, False)   # the same loops, on this thread
    np.testing.assert_array_equal(serial, a)
    cols = rng.standard_normal(a.shape).astype(dtype)
    xa = np.full_like(x, np.nan)
    xb = np.full_like(x, np.nan)
    I.col2im_numba(cols, *args, xa, False)
    I.col2im_numpy(cols, *args, xb, False)
    serial = np.full_like(x, np.nan)
    I.col2im_serial(cols, *args, serial, False)
    np.testing.assert_array_equal(serial, xa)
    np.testing.assert_allclose(xa, xb, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    # col2im is the adjoint of im2col
    np.testing.assert_allclose(np.sum(a.astype(np.float64) * cols), np.sum(x * xa.astype(np.float64)),
                               rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-6)
    # the batch-minor layout (K, N, L) holds the same numbers, reordered, both ways
    for kernel in (I.im2col_numba, I.im2col_numpy):
        km = np.full((a.shape[1], n, a.shape[2]), np.nan, dtype=dtype)
        kernel(x, *args, km, True)
        np.testing.assert_array_equal(km, a.transpose(1, 0, 2))
    for kernel in (I.col2im_numba, I.col2im_numpy):
        xk = np.full_like(x, np.nan)
        kernel(np.ascontiguousarray(cols.transpose(1, 0, 2)), *args, xk, True)
        np.testing.assert_array_equal(xk, xa if kernel is I.col2im_numba else xb)
    # blocks with a row past C*KH*KW (where convolution keeps its ones row):
    # the same columns above it, the row itself untouched, by every kernel
    for kernel in (I.im2col_numba, I.im2col_serial, I.im2col_numpy):
        wide = np.full((n, a.shape[1] + 1, a.shape[2]), 3.25, dtype=dtype)
        kernel(x, *args, wide, False)
        np.testing.assert_array_equal(wide[:, :-1], a)
        assert (wide[:, -1] == 3.25).all()


@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
       k=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       p=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       out=st.tuples(st.integers(1, 6), st.integers(1, 6)), seed=seeds())
@example(n=2, c=3, h=1, w=2, k=(1, 1), s=(1, 1), p=(0, 3), d=(3, 2), out=(1, 1), seed=0)
def test_im2col_col2im_never_write_outside_their_output(n, c, h, w, k, s, p, d, out, seed):
    """Outputs are views into a larger buffer filled with a sentinel: the cells
    around them must survive (a kernel offset whose every window column lies in
    the padding once made im2col zero-fill past the end of its row)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    args = (*k, *s, *p, *d, *out)
    guard = 64
    for kernel, shape, src in ((I.im2col_numba, (n, c * k[0] * k[1], out[0] * out[1]), x),
                               (I.im2col_serial, (n, c * k[0] * k[1], out[0] * out[1]), x),
                               (I.col2im_numba, x.shape, None),
                               (I.col2im_serial, x.shape, None)):
        size = int(np.prod(shape))
        buf = np.full(size + 2 * guard, 7.5)
        dst = buf[guard:guard + size].reshape(shape)
        if src is None:
            src = rng.standard_normal((n, c * k[0] * k[1], out[0] * out[1]))
        kernel(src, *args, dst, False)
        assert np.all(buf[:guard] == 7.5) and np.all(buf[guard + size:] == 7.5)
    # the batch-minor layout too
    shape = (c * k[0] * k[1], n, out[0] * out[1])
    size = int(np.prod(shape))
    buf = np.full(size + 2 * guard, 7.5)
    I.im2col_numba(x, *args, buf[guard:guard + size].reshape(shape), True)
    assert np.all(buf[:guard] == 7.5) and np.all(buf[guard + size:] == 7.5)
    buf = np.full(x.size + 2 * guard, 7.5)
    I.col2im_numba(rng.standard_normal(shape), *args, buf[guard:guard + x.size].reshape(x.shape),
                   True)
    assert np.all(buf[:guard] == 7.5) and np.all(buf[guard + x.size:] == 7.5)


def test_conv_whose_kernel_offsets_lie_wholly_in_the_padding():
    """Conv2d(1, 1, 5, padding=2) on a 1x1 image: offsets 0, 1, 3, 4 of the kernel
    never touch the image; only the centre tap does."""
    from nnzero.layers import Conv2d
    layer = Conv2d(1, 1, 5, padding=2, bias=False, dtype=np.float64, rng=0)
    y = layer(np.full((3, 1, 1, 1), 2.0))
    np.testing.assert_allclose(y.ravel(), 2.0 * layer.weight.data[0, 0, 2, 2])
    dx = layer.backward(np.ones_like(y))
    np.testing.assert_allclose(dx.ravel(), layer.weight.data[0, 0, 2, 2])


def test_kernel_wrappers_refuse_inconsistent_shapes():
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match="cols must have shape"):
        I.im2col(x, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2), out=np.empty((1, 18, 5)))
    with pytest.raises(ValueError, match="invalid geometry"):
        I.col2im(np.empty((1, 18, 4)), x.shape, (3, 3), (0, 1), (0, 0), (1, 1), (2, 2))
    with pytest.raises(ValueError, match=r"cols must have shape \(18, 1, 4\)"):
        I.im2col(x, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2), out=np.empty((1, 18, 4)),
                 kmajor=True)
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        I.im2col(x, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2),
                 out=np.empty((1, 18, 8))[:, :, ::2])
    with pytest.raises(ValueError, match="extra_rows must be >= 0, got -1"):
        I.im2col(x, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2), out=np.empty((1, 17, 4)),
                 extra_rows=-1)
    with pytest.raises(ValueError, match="extra_rows=1 needs the sample-major layout"):
        I.im2col(x, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2), kmajor=True, extra_rows=1)
    with pytest.raises(ValueError, match=r"cols must have shape \(1, 19, 4\)"):
        I.im2col(x, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2), out=np.empty((1, 18, 4)),
                 extra_rows=1)
    x = np.arange(32.0).reshape(1, 2, 4, 4)
    km = I.im2col(x, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2), kmajor=True)
    assert km.shape == (18, 1, 4)
    np.testing.assert_array_equal(
        km[:, 0], I.im2col(x, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2))[0])
    np.testing.assert_array_equal(km[4, 0], [5.0, 6.0, 9.0, 10.0])  # centre tap, channel 0


@pytest.mark.parametrize("stride,pad,dilation", [(1, 0, 1), (1, 2, 1), (1, 1, 2), (2, 1, 1),
                                                 (3, 2, 1)])
def test_im2col_col2im_reuse_their_scratch_across_planes(stride, pad, dilation):
    """Each thread's padded scratch plane serves many image planes in turn, so
    nothing one leaves behind may reach the next (large values make a stale
    entry obvious)."""
    n, c, h, w, k = 5, 30, 7, 6, 3
    oh = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    ow = (w + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    args = (k, k, stride, stride, pad, pad, dilation, dilation, oh, ow)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, c, h, w)) * 1e3
    cols = rng.standard_normal((n, c * k * k, oh * ow)) * 1e3
    for kmajor in (False, True):
        shape = (c * k * k, n, oh * ow) if kmajor else cols.shape
        expected = np.full(shape, np.nan)
        I.im2col_numpy(x, *args, expected, kmajor)
        col_in = cols.transpose(1, 0, 2).copy() if kmajor else cols
        x_expected = np.full(x.shape, np.nan)
        I.col2im_numpy(col_in, *args, x_expected, kmajor)
        for im2col, col2im in ((I.im2col_numba, I.col2im_numba),
                               (I.im2col_serial, I.col2im_serial)):
            got = np.full(shape, np.nan)
            im2col(x, *args, got, kmajor)
            np.testing.assert_array_equal(got, expected)
            x_got = np.full(x.shape, np.nan)
            col2im(col_in, *args, x_got, kmajor)
            np.testing.assert_allclose(x_got, x_expected, rtol=1e-12, atol=1e-9)



@pytest.mark.parametrize("stride", [1, 2])
def test_batch_minor_kernels_with_partial_sample_blocks(stride):
    """The batch-minor kernels take one channel of a block of samples at a time
    (``windows.sample_block``): on 38x38 planes two samples per block, so three
    samples make a full block and a partial one, and each thread's scratch
    serves many of the 140 units. Outputs sit inside sentinel-filled buffers."""
    from nnzero.kernels.windows import padded_size, sample_block
    n, c, h, k, pad = 3, 70, 38, 3, 1
    oh = (h + 2 * pad - k) // stride + 1
    args = (k, k, stride, stride, pad, pad, 1, 1, oh, oh)
    hp, wp = padded_size.py_func(h, h, *args)
    assert sample_block.py_func(n, hp, wp) == 2
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c, h, h)) * 1e3
    shape = (c * k * k, n, oh * oh)
    cols = rng.standard_normal(shape) * 1e3
    expected = np.empty(shape)
    I.im2col_numpy(x, *args, expected, True)
    x_expected = np.empty(x.shape)
    I.col2im_numpy(cols, *args, x_expected, True)
    guard = 64
    for im2col, col2im in ((I.im2col_numba, I.col2im_numba), (I.im2col_serial, I.col2im_serial)):
        buf = np.full(expected.size + 2 * guard, np.nan)
        im2col(x, *args, buf[guard:-guard].reshape(shape), True)
        np.testing.assert_array_equal(buf[guard:-guard].reshape(shape), expected)
        assert np.isnan(buf[:guard]).all() and np.isnan(buf[-guard:]).all()
        buf = np.full(x.size + 2 * guard, np.nan)
        col2im(cols, *args, buf[guard:-guard].reshape(x.shape), True)
        np.testing.assert_allclose(buf[guard:-guard].reshape(x.shape), x_expected, rtol=1e-12,
                                   atol=1e-9)
        assert np.isnan(buf[:guard]).all() and np.isnan(buf[-guard:]).all()


@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 8), w=st.integers(1, 8),
       pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_winograd_kernels_equal_numpy_twins(n, c, h, w, pad, dtype, seed):
    oh, ow = h + 2 * pad[0] - 2, w + 2 * pad[1] - 2
    if oh < 1 or ow < 1:
        return
    rng = np.random.default_rng(seed)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    check_twins(Wk, tile_kernel_cases(rng, x, pad, (oh, ow), 2), dtype, **tol)


@pytest.mark.parametrize("pad", [(0, 0), (1, 2), (2, 1)])
def test_winograd_kernels_reuse_their_scratch_across_planes(pad):
    """More planes than scratch slices (64): each slice serves several planes in
    turn, so whatever one plane leaves in it must not reach the next."""
    n, c, h, w = 5, 30, 7, 6
    oh, ow = h + 2 * pad[0] - 2, w + 2 * pad[1] - 2
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, h, w)) * 10
    check_twins(Wk, tile_kernel_cases(rng, x, pad, (oh, ow), 2), np.float64, rtol=1e-12,
                atol=1e-12)


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
