"""Element-wise special functions that NumPy lacks (erf for the exact GELU)."""
from __future__ import annotations

import math

import numba
import numpy as np

from ._jit import choose, njit


@njit(parallel=True)
def erf_numba(x, out):
    # x, out: 1-D contiguous arrays of one float dtype
    # evaluated in float64 and rounded once, so float32 results match the twin bit for bit
    for i in numba.prange(x.shape[0]):
        out[i] = math.erf(np.float64(x[i]))


_erf_ufunc = np.frompyfunc(math.erf, 1, 1)


def erf_numpy(x, out):
    out[...] = _erf_ufunc(x.astype(np.float64)).astype(np.float64).astype(out.dtype)


_erf_impl = choose(erf_numba, erf_numpy)


def erf(x):
    """erf of a float array, same shape and dtype (the kernel sees a flat copy)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    if flat.size:
        _erf_impl(flat, out)
    return out.reshape(np.shape(x))
