"""Argument checking shared by every layer. No dependencies beyond NumPy.

Every helper takes the name of the caller (``who``) so that an error message
can say which layer and which argument went wrong, what it got and what it
needed, e.g. ``Conv2d: stride must be a positive int or pair, got 0``.
"""
from __future__ import annotations

import numbers

import numpy as np


def pair(value, who: str, arg: str) -> tuple[int, int]:
    """Return ``(v, v)`` for an int, or the pair itself, as Python ints."""
    # Plain ints and tuples of them first: a layer's call checks a dozen of
    # these, and the isinstance checks against numbers.Integral below cost
    # ~1.5 us each (a Conv2d call on a tiny input spent ~25 us here).
    kind = type(value)
    if kind is int:
        return value, value
    if kind is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{who}: {arg} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value), int(value)
    if isinstance(value, (tuple, list, np.ndarray)) and len(value) == 2:
        if all(isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))
               for v in value):
            return int(value[0]), int(value[1])
    raise TypeError(f"{who}: {arg} must be an int or a pair of ints, got {value!r}")


def positive_pair(value, who: str, arg: str) -> tuple[int, int]:
    p = pair(value, who, arg)
    if min(p) <= 0:
        raise ValueError(f"{who}: {arg} must be positive, got {value!r}")
    return p


def nonnegative_pair(value, who: str, arg: str) -> tuple[int, int]:
    p = pair(value, who, arg)
    if min(p) < 0:
        raise ValueError(f"{who}: {arg} must be non-negative, got {value!r}")
    return p


def positive_int(value, who: str, arg: str) -> int:
    if (not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_))
            or value <= 0):
        raise ValueError(f"{who}: {arg} must be a positive int, got {value!r}")
    return int(value)


def as_float_dtype(dtype, who: str) -> np.dtype:
    """Validate a ``dtype=`` argument: float32 or float64."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{who}: dtype must be float32 or float64, got {dt}")
    return dt


def as_float_array(x, who: str, arg: str = "input", dtype=None) -> np.ndarray:
    """Return ``x`` as a floating ndarray, cast to ``dtype`` when one is given.

    Non-floating data (ints, bools, uint8 images, complex) are refused rather
    than silently converted: the caller should decide how pixel values map to
    floats (``x.astype(np.float32) / 255`` is usually what is meant).
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(
            f"{who}: {arg} must be a floating-point array, got dtype {x.dtype}; "
            f"convert it first, e.g. {arg}.astype(np.float32)"
            + (" / 255 for 8-bit images" if x.dtype == np.uint8 else ""))
    if dtype is not None and x.dtype != dtype:
        x = x.astype(dtype)
    return x


def as_rng(rng, who: str) -> np.random.Generator:
    """Accept a Generator, an int seed or None (fresh OS entropy).

    The global ``np.random`` state is never read.
    """
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"{who}: rng must be a numpy.random.Generator, an int seed or None, "
                    f"got {type(rng).__name__}")


def normalize_dim(dim: int, ndim: int, who: str, arg: str = "dim") -> int:
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise TypeError(f"{who}: {arg} must be an int, got {dim!r}")
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not lo <= dim <= hi:
        raise ValueError(f"{who}: {arg} out of range for a {ndim}-D input "
                         f"(expected in [{lo}, {hi}], got {dim})")
    return int(dim) % max(ndim, 1)
