"""Strategies and input builders shared by the tests."""
import numpy as np
from hypothesis import strategies as st


def away_from(x, kinks=(0.0,), margin=1e-2):
    """Move every entry within ``margin`` of a kink to ``kink +- 2*margin``.

    Finite differences are meaningless across a kink, so gradient checks use
    inputs that keep clear of them (the kink values are tested separately).
    """
    x = np.array(x, dtype=np.float64, copy=True)
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + np.where(x[near] >= k, 2 * margin, -2 * margin)
    return x


@st.composite
def float_arrays(draw, min_dims=1, max_dims=4, max_side=4, lo=-4.0, hi=4.0):
    """A float64 array of a drawn shape with entries from a seeded generator."""
    ndim = draw(st.integers(min_dims, max_dims))
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(ndim))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).uniform(lo, hi, size=shape)


def seeds():
    return st.integers(0, 2**32 - 1)


def draw_pool_window(draw, dilation=True):
    """kernel, stride, padding (at most half the kernel, PyTorch's limit) and
    dilation pairs for a pooling test, drawn inside an ``st.composite``."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    return k, s, p, d
