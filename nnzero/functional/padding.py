"""Explicit padding of the last two axes, for ``Conv2d(padding_mode=...)``.

Per spatial axis of size S padded by ``before`` and ``after`` cells, padded
position i = -before ... S+after-1 takes its value from source index src(i):

    'zeros'      src(i) = i inside [0, S), else the value is 0
    'reflect'    src(i) = -i for i < 0, 2*(S-1) - i for i >= S  (the edge is
                 not repeated: [1 2 3] padded by 2 is [3 2 1 2 3 2 1]); needs
                 before, after < S
    'replicate'  src(i) = min(max(i, 0), S-1)       ([1 1 1 2 3 3 3]); needs S >= 1
    'circular'   src(i) = i mod S                   ([2 3 1 2 3 1 2]); needs before, after <= S

The limits are PyTorch's (``torch.nn.functional.pad``): one reflection, one
wrap. The forward pass is ``np.pad`` ('constant', 'reflect', 'edge', 'wrap').

Backward: every padded cell is a copy of one source cell, so the input
gradient is the padded gradient folded back: dx[s] = sum of dy[i] over all i
with src(i) = s. Per axis that is the interior slice plus one row (column)
added per padded row (column); the padding cells are few, so a loop over
them is the whole cost. 'zeros' drops the padded cells.
"""
from __future__ import annotations

import numpy as np

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
               "circular": "wrap"}


def source_index(i, size, mode):
    """src(i) of the module docstring for a padded position i (-before <= i < size + after)."""
    if 0 <= i < size:
        return i
    if mode == "reflect":
        return -i if i < 0 else 2 * (size - 1) - i
    if mode == "replicate":
        return 0 if i < 0 else size - 1
    if mode == "circular":
        return i % size
    raise ValueError(f"source_index: no source cell in padding mode {mode!r}")


def check_padding_fits(pads, spatial, mode, who):
    """Raise ValueError (naming ``who``) when ``mode`` cannot pad an input of
    spatial size ``spatial`` by ``pads`` = ((top, bottom), (left, right))."""
    for axis, ((before, after), size) in enumerate(zip(pads, spatial)):
        if mode == "reflect" and max(before, after) >= size:
            raise ValueError(f"{who}: padding_mode='reflect' needs padding smaller than the "
                             f"input size, got padding {(before, after)} for size {size} "
                             f"(spatial axis {axis} of an input of spatial size {spatial})")
        if mode == "circular" and max(before, after) > size:
            raise ValueError(f"{who}: padding_mode='circular' needs padding at most the input "
                             f"size (it wraps around once), got padding {(before, after)} for "
                             f"size {size} (spatial axis {axis} of an input of spatial size "
                             f"{spatial})")
        if mode == "replicate" and size == 0 and before + after > 0:
            raise ValueError(f"{who}: padding_mode='replicate' needs a non-empty input, got "
                             f"spatial size {spatial}")


def pad2d_forward(x, pads, mode):
    """Pad x (..., H, W) by pads = ((top, bottom), (left, right)); returns (y, cache).
    Assumes ``check_padding_fits`` passed."""
    if mode not in PADDING_MODES:
        raise ValueError(f"pad2d_forward: mode must be one of {PADDING_MODES}, got {mode!r}")
    pads = tuple((int(b), int(a)) for b, a in pads)
    width = [(0, 0)] * (x.ndim - 2) + list(pads)
    return np.pad(x, width, mode=_NUMPY_MODE[mode]), (x.shape, pads, mode)


def _fold(g, axis, size, before, after, mode):
    """Fold one padded axis of g (length before + size + after) back to length size."""
    inner = [slice(None)] * g.ndim
    inner[axis] = slice(before, before + size)
    out = g[tuple(inner)].copy()
    if mode == "zeros":
        return out
    for i in list(range(-before, 0)) + list(range(size, size + after)):
        dst = [slice(None)] * g.ndim
        src = [slice(None)] * g.ndim
        dst[axis], src[axis] = source_index(i, size, mode), before + i
        out[tuple(dst)] += g[tuple(src)]
    return out


def pad2d_backward(dy, cache):
    """Return dx: the padded gradient ``dy`` folded back onto the input cells."""
    shape, ((top, bottom), (left, right)), mode = cache
    if dy.shape[-2:] != (shape[-2] + top + bottom, shape[-1] + left + right):
        raise ValueError(f"pad2d_backward: expected a gradient of spatial size "
                         f"{(shape[-2] + top + bottom, shape[-1] + left + right)}, got "
                         f"{dy.shape[-2:]}")
    dx = _fold(dy, dy.ndim - 2, shape[-2], top, bottom, mode)
    return _fold(dx, dx.ndim - 1, shape[-1], left, right, mode)
