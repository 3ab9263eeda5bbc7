"""Reusable scratch buffers for the big intermediate arrays of convolution."""
from __future__ import annotations

import numpy as np


def scratch(workspace, name, shape, dtype):
    """A buffer for ``name``: reused from ``workspace`` (a dict a layer owns) when
    the shape and dtype match, so big column matrices are not page-faulted into
    memory on every call. Without a workspace, a fresh array."""
    if workspace is None:
        return np.empty(shape, dtype)
    buf = workspace.get(name)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = workspace[name] = np.empty(shape, dtype)
    return buf


def samples(flat, lo, hi, per_sample):
    """Samples lo ... hi-1's own contiguous stretch of a flat buffer holding
    ``per_sample`` values per sample: the block one thread works in."""
    return flat[lo * per_sample:hi * per_sample]
