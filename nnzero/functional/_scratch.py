"""Reusable scratch buffers for the big intermediate arrays of convolution.

Two kinds, both reused from one call to the next so that big column matrices
are not page-faulted into memory on every call:

* ``scratch``: a buffer the layer owns (its ``workspace`` dict), for what
  may outlive the call: the forward pass's columns (or Winograd's transformed
  input) that the cache keeps for the backward pass.
* ``transient``: a buffer nothing outlives the call in (the column gradient,
  Winograd's products, chunked columns, reorders). These come from one pool
  per Python thread that every layer shares, so a model holds one buffer per
  name, the largest any of its layers needed, instead of one per layer: in a
  six-layer CNN on 64x64 images the layers held 2.0 GiB of buffers between
  steps, 1.8 of them transient, where the pool held 0.7 (0.3 since the
  chunks of ``_columns.PER_SAMPLE_CHUNK_BYTES``).
  ``release_transients`` frees the calling thread's pool. Each Python thread
  has its own pool, so models run from several threads never share one.
"""
from __future__ import annotations

import math
import threading

import numpy as np

_POOL = threading.local()


def scratch(workspace, name, shape, dtype):
    """A buffer for ``name``: reused from ``workspace`` (a dict a layer owns) when
    the shape and dtype match. Without a workspace, a fresh array."""
    if workspace is None:
        return np.empty(shape, dtype)
    buf = workspace.get(name)
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        buf = workspace[name] = np.empty(shape, dtype)
    return buf


def transient(workspace, name, shape, dtype):
    """A buffer for ``name`` that nothing returned or cached may point into:
    with a workspace (a layer's call), a view of the calling thread's shared
    pool, grown to the largest size asked for; without one, a fresh array."""
    if workspace is None:
        return np.empty(shape, dtype)
    pool = _pool()
    key = (name, np.dtype(dtype))
    size = math.prod(shape)
    flat = pool.get(key)
    if flat is None or flat.size < size:
        pool.pop(key, None)   # let the old buffer go before the new one is made
        flat = pool[key] = np.empty(size, dtype)
    return flat[:size].reshape(shape)


def columns_buffer(workspace, name, shape, dtype, kept):
    """``scratch`` when the cache will keep the buffer (``kept``: the whole
    batch's columns, which the backward pass reads), else ``transient``."""
    return (scratch if kept else transient)(workspace, name, shape, dtype)


def release_transients():
    """Free the calling Python thread's pool of transient buffers (the next
    layer call makes them again); returns the bytes it held."""
    pool = _pool()
    held = sum(buf.nbytes for buf in pool.values())
    pool.clear()
    return held


def transient_bytes():
    """The bytes the calling Python thread's pool holds."""
    return sum(buf.nbytes for buf in _pool().values())


def _pool():
    pool = getattr(_POOL, "buffers", None)
    if pool is None:
        pool = _POOL.buffers = {}
    return pool


def samples(flat, lo, hi, per_sample):
    """Samples lo ... hi-1's own contiguous stretch of a flat buffer holding
    ``per_sample`` values per sample: the block one thread works in."""
    return flat[lo * per_sample:hi * per_sample]
