"""Winograd's F(3x3, 2x2) (kernels/winograd_k2.py): the transforms compute a
2x2 correlation and the shuffled forms equal the plain ones followed by the
sub-pixel shuffle (the kernels' NumPy twins: test_kernels_conv.py)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import check_tile_algebra, seeds
from nnzero.functional import subpixel
from nnzero.kernels import winograd_k2 as Wk

pytestmark = pytest.mark.usefixtures("split_every_kernel_call")  # see conftest.py


def _correlate(x, w, pt, pl, oh, ow):
    """Direct 2x2 stride-1 correlation, zeros read past the image."""
    n, c, h, wd = x.shape
    xp = np.zeros((n, c, max(oh + 1, pt + h), max(ow + 1, pl + wd)))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    y = np.zeros((n, w.shape[0], oh, ow))
    for i in range(2):
        for j in range(2):
            y += np.einsum("oc,ncab->noab", w[:, :, i, j], xp[:, :, i:i + oh, j:j + ow])
    return y


def test_the_matrices_compute_a_two_tap_correlation():
    """A^T [(G g) . (B^T d)] = (d0 g0 + d1 g1, d1 g0 + d2 g1, d2 g0 + d3 g1)."""
    d, g = np.array([1.0, -2.0, 3.5, 0.25]), np.array([0.5, -3.0])
    expected = [d[i] * g[0] + d[i + 1] * g[1] for i in range(3)]
    np.testing.assert_allclose(Wk.AT @ ((Wk.G @ g) * (Wk.BT @ d)), expected, rtol=1e-15)


@given(n=st.integers(1, 2), c=st.integers(1, 3), o=st.integers(1, 3), h=st.integers(1, 8),
       w=st.integers(1, 8), pad=st.tuples(st.integers(0, 2), st.integers(0, 2)),
       extra=st.tuples(st.integers(0, 2), st.integers(0, 2)), seed=seeds())
def test_transforms_and_products_give_the_correlation_and_its_gradients(n, c, o, h, w, pad,
                                                                       extra, seed):
    """Forward through the four kernels and the 16 products against the direct
    sum, and the backward kernels against the adjoint of that sum."""
    oh, ow = h + pad[0] - 1 + extra[0], w + pad[1] - 1 + extra[1]
    if oh < 1 or ow < 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, 2, 2))
    check_tile_algebra(Wk, lambda x_, w_: _correlate(x_, w_, pad[0], pad[1], oh, ow), x, wt,
                       pad, (oh, ow), rng)


@st.composite
def phase_plans(draw):
    """A transposed layer with J = 2 (kernel 2S) and its window grid's phase tables."""
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    kernel = tuple(2 * s for s in stride)
    pad = tuple(draw(st.integers(0, k - 1)) for k in kernel)
    hw = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    out = tuple((i - 1) * s - 2 * p + k + draw(st.integers(0, s - 1))
                for i, s, p, k in zip(hw, stride, pad, kernel))
    if min(out) < 1:
        return None
    plan = [subpixel._axis(i, o, k, s, p) for i, o, k, s, p in zip(hw, out, kernel, stride, pad)]
    return hw, out, plan


@given(plan=phase_plans(), n=st.integers(1, 2), o=st.integers(1, 3),
       dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_shuffled_kernels_equal_plain_ones_and_the_shuffle(plan, n, o, dtype, seed):
    if plan is None:
        return
    (h, w), out, (ah, aw) = plan
    ph, pw = (np.array(a.phases, dtype=np.int64).reshape(a.stride, 3) for a in (ah, aw))
    grid = (ah.windows, aw.windows)
    th, tw = -(-grid[0] // 3), -(-grid[1] // 3)
    z_rows = ah.stride * aw.stride * o
    rng = np.random.default_rng(seed)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    m = rng.standard_normal((16, z_rows, n * th * tw)).astype(dtype)
    bias = rng.standard_normal(o).astype(dtype)
    z = np.empty((n, z_rows) + grid, dtype)
    Wk.output_transform_numpy(m, grid[0], grid[1], z)
    expected = np.full((n, o) + out, np.nan, dtype)
    for where, zv in Wk._shuffled(z, ph, pw):
        expected[where] = zv + bias.reshape(1, -1, 1, 1)
    assert not np.isnan(expected).any()   # every output cell is some window's
    dy = rng.standard_normal((n, o) + out).astype(dtype)
    dz = np.zeros_like(z)
    for where, zv in Wk._shuffled(dz, ph, pw):
        zv[...] = dy[where]
    dm_expected = np.empty_like(m)
    Wk.output_grad_numpy(dz, th, tw, dm_expected)
    for impl in ("numba", "serial", "numpy"):
        y = np.full((n, o) + out, np.nan, dtype)
        getattr(Wk, "output_transform_shuffle_" + impl)(m, grid[0], grid[1], ph, pw, bias, y)
        np.testing.assert_allclose(y, expected, **tol)
        dm = np.full_like(m, np.nan)
        getattr(Wk, "output_grad_shuffle_" + impl)(dy, th, tw, ph, pw, dm)
        np.testing.assert_allclose(dm, dm_expected, **tol)
