"""The convolution kernels (im2col, col2im, the Winograd tile and filter
transforms) equal their NumPy twins on drawn inputs and never write outside
their outputs."""
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from helpers import check_twins, seeds, tile_kernel_cases
from nnzero.kernels import im2col as I
from nnzero.kernels import winograd_filter as WF
from nnzero.functional import winograd


pytestmark = pytest.mark.usefixtures("split_every_kernel_call")  # see conftest.py


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


# Each Winograd family's kernel sides, the scale of its drawn input and its
# float64 absolute tolerance (the 6x6 and 5x5 tiles' transforms have larger
# coefficients, so their sums round further from the twin's). In float32 the
# kernels and twins agree to FLOAT32_ULPS units of float32's precision at the
# output's largest value: a fixed 1e-4 failed on an F(4x4, 3x3) input
# transform whose values reached 1294, where the kernel and the twin were
# 1.4e-4 and 0.96e-4 from the float64 result (1.8e-4 apart, 1.2 units).
FAMILIES = {"F(2x2,3x3)": ((3,), 1.0, 1e-12), "F(3x3,2x2)": ((2,), 1.0, 1e-12),
            "F(4x4,3x3)": ((3,), 10.0, 1e-11), "F(4x4,2x2)/2": ((3, 4), 10.0, 1e-11)}
FLOAT32_ULPS = 8


def _family_cases(family, rng, x, pad, k):
    """The family's kernels module and its four kernels' cases on x, or None
    when the k x k kernel leaves no output."""
    fam = winograd._FAMILIES[family]
    stride = 2 if fam.phases > 1 else 1
    out = tuple((size + 2 * p - k) // stride + 1 for size, p in zip(x.shape[2:], pad))
    if min(out) < 1:
        return None
    return fam.K, tile_kernel_cases(rng, x, pad, out, fam.step, fam.positions, fam.phases)


def test_every_family_is_checked():
    assert set(FAMILIES) == set(winograd._FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 20), w=st.integers(1, 20),
       pad=st.tuples(st.integers(0, 2), st.integers(0, 2)), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_winograd_kernels_equal_numpy_twins(family, n, c, h, w, pad, data, dtype, seed):
    kernels, scale, atol64 = FAMILIES[family]
    k = data.draw(st.sampled_from(kernels), label="k")
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c, h, w)) * scale).astype(dtype)
    cases = _family_cases(family, rng, x, pad, k)
    if cases is None:
        return
    if dtype == np.float32:
        check_twins(*cases, dtype, ulps_of_largest=FLOAT32_ULPS, rtol=1e-5)
    else:
        check_twins(*cases, dtype, rtol=1e-12, atol=atol64)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("pad", [(0, 0), (1, 0), (2, 1)])
def test_winograd_kernels_reuse_their_scratch(family, pad):
    """More planes and channels than the kernels' scratch slices (64): each
    slice serves several in turn, so whatever one leaves in it (the padded
    planes, the sums) must not reach the next."""
    kernels, scale, atol64 = FAMILIES[family]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 30, 13, 10)) * scale
    check_twins(*_family_cases(family, rng, x, pad, kernels[-1]), np.float64, rtol=1e-12,
                atol=atol64)


_TILE_KERNELS = {   # argument kinds: a float32 4-D / 3-D array, an int
    "_input_transform_range": ("x4", "i", "i", "i", "i", "a3", "i", "i"),
    "_output_transform_range": ("a3", "i", "i", "x4", "i", "i"),
    "_output_grad_range": ("x4", "i", "i", "a3", "i", "i"),
    "_input_grad_range": ("a3", "i", "i", "i", "i", "x4", "i", "i"),
}


# every kernel of the families with integer coefficients; of the others (0 and
# +-1 only) the input gradients, whose copy-out selected between a sum and 0
@pytest.mark.parametrize("module, kernel", [
    *((m, k) for m in ("winograd_f43", "winograd_s2") for k in _TILE_KERNELS),
    ("winograd", "_input_grad_range"), ("winograd_k2", "_input_grad_range")])
def test_float32_tile_sums_stay_in_float32(module, kernel):
    """numba types an integer literal times a float32 as a float64: a tile sum
    written ``2 * v`` ran in float64, converting every value in and out at
    half the vector width (``winograd.typed``). Compiled afresh for float32
    arrays, no value in a tile kernel may be typed float64."""
    import importlib

    import numba
    from numba import types

    kernels = importlib.import_module(f"nnzero.kernels.{module}")
    arg = {"x4": types.float32[:, :, :, ::1], "a3": types.float32[:, :, ::1], "i": types.int64}
    sig = tuple(arg[d] for d in _TILE_KERNELS[kernel])
    fresh = numba.njit(getattr(kernels, kernel).py_func, nogil=True)
    fresh.compile(sig)
    typemap = fresh.overloads[sig].type_annotation.typemap
    wide = sorted(name for name, t in typemap.items() if t == types.float64)
    assert wide == [], f"{module}.{kernel} computes in float64: {wide[:5]}"
@pytest.mark.parametrize("family", sorted(FAMILIES))
@given(o=st.integers(1, 9), c=st.integers(1, 9), dtype=st.sampled_from([np.float32, np.float64]),
       seed=seeds())
def test_filter_kernels_equal_their_twins_and_the_definition(family, o, c, dtype, seed):
    """U[:, o, c] = kron(G, G) @ g[o, c] and dW[o, c] = kron(G, G)^T @ dU[:, o, c],
    split over the threads (the fixture splits every call) and on one."""
    kron = winograd._FAMILIES[family].kron[np.dtype(dtype)]
    positions, taps = kron.shape
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((o, c, taps)).astype(dtype)
    du = rng.standard_normal((positions, o, c)).astype(dtype)
    want_u = np.einsum("pk,ock->poc", kron.astype(np.float64), w.astype(np.float64))
    want_dw = np.einsum("pk,poc->ock", kron.astype(np.float64), du.astype(np.float64))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    for transform, grad in ((WF.filter_transform_numba, WF.filter_grad_numba),
                            (WF.filter_transform_serial, WF.filter_grad_serial),
                            (WF.filter_transform_numpy, WF.filter_grad_numpy)):
        u = np.full((positions, o, c), np.nan, dtype)
        dw = np.full((o, c, taps), np.nan, dtype)
        transform(kron, w, u)
        grad(kron, du, dw)
        np.testing.assert_allclose(u, want_u, **tol)
        np.testing.assert_allclose(dw, want_dw, **tol)




@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_filter_transforms_split_or_not_agree(family):
    """Large layers' filter transforms run split over the threads, small ones
    as one BLAS product (``winograd.FILTER_SPLIT_SIZE``): both give the same U
    and dW, the stride-2 family's phases included."""
    fam = winograd._FAMILIES[family]
    kernel = FAMILIES[family][0][-1]
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 5, kernel, kernel))
    got = []
    for size in (0, 1 << 62):
        with mock.patch.object(winograd, "FILTER_SPLIT_SIZE", size):
            u = winograd._filter_transform(w, fam).copy()
            got.append((u, winograd._filter_grad(np.cos(u), w.shape, fam)))
    for a, b in zip(*got):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family, x_shape", [("F(4x4,3x3)", (40, 2, 14, 13)),
                                             ("F(4x4,2x2)/2", (40, 2, 28, 26))])
def test_output_gradients_in_blocks_of_tile_rows(family, x_shape):
    """The output gradients gather and transform dY a block of tile rows at a
    time (``winograd_tiles.TILE_BLOCK`` tiles): with 40 samples of 4 tiles a row
    each block is one tile row, and the last (14 output rows) is half past
    the output, where the gathered cells must be zeros again, not the block
    before's; 13 columns leave the last tile column partly empty too."""
    kernels, scale, atol64 = FAMILIES[family]
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape) * scale
    fam, cases = _family_cases(family, rng, x, (1, 1), kernels[-1])
    from nnzero.kernels import winograd_tiles
    assert winograd_tiles._block_rows(x_shape[0], 4, 4) == 1   # four blocks of one tile row
    check_twins(fam, cases, np.float64, rtol=1e-12, atol=atol64)
