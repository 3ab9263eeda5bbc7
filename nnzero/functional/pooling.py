"""Max, average and stochastic pooling as forward/backward pairs.

Window of output (i, j), per dimension (k kernel, s stride, p padding,
d dilation): rows ``i*s - p + u*d`` for ``u < k``. Output sizes follow
PyTorch's rule (``nnzero.shapes.pool_output_size``), ceil_mode included.

Max pooling (padding acts as -inf: padded cells are never read)
    y = max over the window;  dL/dx[argmax] += dy  (first maximum on ties;
    overlapping windows ADD their gradients into a shared cell)

Average pooling (no dilation; zero padding)
    y = (sum of the real cells of the window) / divisor
    divisor = divisor_override, or the window's cells inside the PADDED input
    (count_include_pad=True: a ceil_mode window hanging past the padding is not
    charged for the overhang), or its real cells (count_include_pad=False)
    dL/dx[cell] += dy / divisor for every real cell of the window

Stochastic pooling (Zeiler & Fergus 2013; inputs a >= 0)
    training: p_i = a_i / S, S = sum of the window; pick l with P(l = i) = p_i
              (first cell whose running sum exceeds u*S, u ~ U[0, 1)); y = a_l;
              dL/da_l += dy  (the draw itself is not differentiated)
    eval:     y = sum_i p_i a_i = sum a^2 / S;  dy/da_k = (2 a_k - y) / S
    An all-zero window gives y = 0 (training picks its first cell).
    Padded cells (and a ceil_mode overhang) count as a = 0: never sampled.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernels import pooling as K
from ..kernels.random import draw_key
from ..shapes import pool_output_size


class PoolGeometry(NamedTuple):
    out_size: tuple
    r0: np.ndarray     # window start row per output row (may be negative)
    ulo: np.ndarray    # first/last+1 kernel row inside the image, per output row
    uhi: np.ndarray
    c0: np.ndarray
    vlo: np.ndarray
    vhi: np.ndarray
    dilation: tuple
    stride: tuple      # r0 = i*stride - padding (kept for the compiled kernels)
    padding: tuple


def _axis(size, k, s, p, d, out):
    start = np.arange(out, dtype=np.int64) * s - p
    lo = np.clip(-(start // d), 0, k)                      # ceil(-start / d)
    hi = np.clip((size - 1 - start) // d + 1, 0, k)
    return start, lo, np.maximum(hi, lo)


def pool_geometry(who, x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    """Validate an (N, C, H, W) pooling and return its window arrays."""
    from .._checks import pair, positive_pair
    k = positive_pair(kernel_size, who, "kernel_size")
    s = k if stride is None else positive_pair(stride, who, "stride")
    d = positive_pair(dilation, who, "dilation")
    p = pair(padding, who, "padding")
    if len(x_shape) != 4 or min(x_shape[1:]) < 1:
        raise ValueError(f"{who}: expected input of shape (N, C, H, W) or (C, H, W) with "
                         f"non-empty C, H, W; got {tuple(x_shape)}")
    try:
        out = pool_output_size(tuple(x_shape[2:]), k, s, p, d, ceil_mode)
    except ValueError as err:
        raise ValueError(f"{who}: {err} (input shape {tuple(x_shape)})") from None
    r0, ulo, uhi = _axis(x_shape[2], k[0], s[0], p[0], d[0], out[0])
    c0, vlo, vhi = _axis(x_shape[3], k[1], s[1], p[1], d[1], out[1])
    if np.any(uhi <= ulo) or np.any(vhi <= vlo):
        raise ValueError(f"{who}: a pooling window holds no input element (input "
                         f"{tuple(x_shape)}, kernel_size={k}, stride={s}, padding={p}, "
                         f"dilation={d}); use a smaller dilation or padding")
    return PoolGeometry(out, r0, ulo, uhi, c0, vlo, vhi, d, s, p)


def _clipped(geo, size_h, size_w):
    """Row/column ranges [lo, hi) of the real cells of each window (dilation 1)."""
    rlo = geo.r0 + geo.ulo
    rhi = geo.r0 + geo.uhi
    clo = geo.c0 + geo.vlo
    chi = geo.c0 + geo.vhi
    return rlo, rhi, clo, chi


class IndexCache(NamedTuple):
    idx: np.ndarray      # (N, C, OH, OW) int32 flat positions in each plane
    x_shape: tuple


def max_pool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                       who="max_pool2d"):
    """Return ``(y, cache)``; ``cache.idx`` holds PyTorch's flat per-plane indices."""
    geo = pool_geometry(who, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    x = np.ascontiguousarray(x)
    y = np.empty(x.shape[:2] + geo.out_size, dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.int32 if x[0, 0].size < 2 ** 31 else np.int64)
    k = (int(geo.uhi.max()), int(geo.vhi.max())) if y.size else (0, 0)
    if y.size:
        skip = _whole_block(geo, k)
        if skip is not None:
            K.specialized("max", *k, *geo.stride, _is_all(skip, y))(
                x, geo.r0, geo.c0, *skip, y, idx)
        if not _is_all(skip, y):  # the windows cut by the padding
            K.max_forward(x, geo.r0, geo.ulo, geo.uhi, geo.dilation[0], geo.c0, geo.vlo,
                          geo.vhi, geo.dilation[1], y, idx, skip or (0, 0, 0, 0))
    return y, IndexCache(idx, x.shape)


def _whole_block(geo, window):
    """The block (i0, i1, j0, j1) of outputs whose window lies wholly inside the
    image, when a kernel compiled for this window size and stride exists; else None."""
    if not _has_compiled_window(geo, window):
        return None
    i0, i1 = K.full_range(geo.ulo, geo.uhi, window[0])
    j0, j1 = K.full_range(geo.vlo, geo.vhi, window[1])
    return (i0, i1, j0, j1) if i1 > i0 and j1 > j0 else None


def _is_all(block, y):
    """Whether the whole-window block is the whole output grid."""
    return block == (0, y.shape[2], 0, y.shape[3])


def index_pool_backward(dy, cache):
    """dL/dx for max and stochastic (training) pooling: dy scattered to the chosen cells."""
    n, c, h, w = cache.x_shape
    dx = np.empty((n * c, h * w), dtype=dy.dtype)
    K.index_backward(np.ascontiguousarray(dy).reshape(n * c, -1),
                     cache.idx.reshape(n * c, -1), dx)
    return dx.reshape(cache.x_shape)


max_pool2d_backward = index_pool_backward


class AvgCache(NamedTuple):
    ranges: tuple        # (rlo, rhi, clo, chi)
    div: np.ndarray      # (OH, OW) divisors
    x_shape: tuple
    window: tuple        # (KH, KW)
    skip: object         # the whole-window block a compiled kernel handles, or None
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)


def avg_divisors(geo, h, w, kernel, padding, count_include_pad, divisor_override):
    """PyTorch's divisor per output position (see the module docstring)."""
    if divisor_override is not None:
        return np.full(geo.out_size, float(divisor_override))
    out = []
    for start, size, k, p in ((geo.r0, h, kernel[0], padding[0]),
                              (geo.c0, w, kernel[1], padding[1])):
        end = np.minimum(start + k, size + p)
        real = np.minimum(end, size) - np.maximum(start, 0)
        out.append(end - start if count_include_pad else real)
    div = np.outer(out[0], out[1]).astype(np.float64)
    return np.where(div > 0, div, 1.0)  # a window without cells gives 0, not NaN


def avg_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True, divisor_override=None, who="avg_pool2d"):
    from .._checks import pair
    geo = pool_geometry(who, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    k = pair(kernel_size, who, "kernel_size")
    p = pair(padding, who, "padding")
    x = np.ascontiguousarray(x)
    div = avg_divisors(geo, x.shape[2], x.shape[3], k, p, count_include_pad,
                       divisor_override).astype(x.dtype)  # small integers: exact
    ranges = _clipped(geo, x.shape[2], x.shape[3])
    y = np.empty(x.shape[:2] + geo.out_size, dtype=x.dtype)
    skip = _whole_block(geo, k) if y.size else None
    if y.size and _has_compiled_window(geo, k):
        # every window is whole in a zero-framed copy (when padding or ceil_mode cut
        # some): one vectorised pass instead of the general loop for the border
        # windows. Zeros add nothing to a window's sum, and the divisor already
        # says what to count, so both count_include_pad rules hold.
        (oh, ow), (sh, sw), (ph, pw) = geo.out_size, geo.stride, geo.padding
        src = x if _is_all(skip, y) else _zero_framed(
            x, ph, pw, max(ph + x.shape[2], (oh - 1) * sh + k[0]),
            max(pw + x.shape[3], (ow - 1) * sw + k[1]))
        K.specialized("avg", *k, sh, sw, True)(src, geo.r0, geo.c0, 0, 0, 0, 0, div, y)
    elif y.size:
        K.avg_forward(x, *ranges, div, y)
    return y, AvgCache(ranges, div, x.shape, k, skip, geo.stride, geo.padding)


def _has_compiled_window(geo, window):
    return (K.JIT_ENABLED and geo.dilation == (1, 1) and window in K.SPECIALIZED_SIZES
            and max(geo.stride) <= K.SPECIALIZED_MAX_STRIDE)


def _zero_framed(a, top, left, rows, cols):
    """``a`` (N, C, H, W) placed at (top, left) in zeros of shape (N, C, rows, cols)."""
    out = np.zeros(a.shape[:2] + (rows, cols), dtype=a.dtype)
    out[:, :, top:top + a.shape[2], left:left + a.shape[3]] = a
    return out


def _tiles_plane(cache):
    """True when a compiled kernel exists and the windows tile the plane exactly
    (stride = kernel, no padding, H and W multiples of the kernel): each input
    cell lies in exactly one window."""
    (h, w), (kh, kw) = cache.x_shape[2:], cache.window or (0, 0)
    return (cache.skip is not None and cache.stride == cache.window
            and cache.padding == (0, 0) and h % kh == 0 and w % kw == 0)


def avg_pool2d_backward(dy, cache):
    dx = np.empty(cache.x_shape, dtype=dy.dtype)
    dy = np.ascontiguousarray(dy)
    skip = cache.skip
    if _tiles_plane(cache):
        K.specialized("avg_backward_tiled", *cache.window)(dy, cache.div, dx)
        return dx
    if (dy.size and cache.window in K.SPECIALIZED_SIZES and cache.stride == (1, 1)
            and K.JIT_ENABLED):
        (kh, kw), (ph, pw) = cache.window, cache.padding
        # stride 1: dx[r, q] = sum of g = dy/div over the windows holding (r, q),
        # which is a KHxKW window sum of g framed by KH-1-PH zero rows above
        # (KW-1-PW columns left): the forward's vectorised kernel, as a gather
        h, w = cache.x_shape[2:]
        g = _zero_framed((dy / cache.div).astype(dy.dtype, copy=False), kh - 1 - ph,
                         kw - 1 - pw, h + kh - 1, w + kw - 1)
        K.specialized("avg", kh, kw, 1, 1, True)(g, cache.ranges[0], cache.ranges[2],
                                                       0, 0, 0, 0, np.ones((h, w), dy.dtype),
                                                       dx)
        return dx
    if skip is not None:
        K.specialized("avg_backward", *cache.window, *cache.stride, _is_all(skip, dy))(
            dy, cache.ranges[0], cache.ranges[2], *skip, cache.div, dx)
    if dy.size == 0:
        dx[...] = 0
    elif not _is_all(skip, dy):
        K.avg_backward(dy, *cache.ranges, cache.div, dx, skip or (0, 0, 0, 0))
    return dx


class StochasticEvalCache(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    s: np.ndarray        # window sums
    ranges: tuple


def check_nonnegative(x, who):
    # one reduction: the minimum is NaN when any value is NaN, so this refuses NaN too
    low = x.min() if x.size else 0
    if not low >= 0:
        has_nan = bool(np.isnan(low))
        bad = np.nanmin(x) if has_nan and not np.isnan(x).all() else low
        raise ValueError(f"{who}: input must be non-negative (stochastic pooling follows a "
                         f"ReLU; probabilities are a_i / sum(a)), got minimum {bad}"
                         + (" and NaN" if has_nan else ""))


def stochastic_pool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                              training=True, rng=None, who="stochastic_pool2d"):
    """Training: sample one cell per window (``rng`` draws one key per call and the
    kernel derives each window's U[0, 1) draw from it, see ``kernels/random.py``);
    eval: the probability-weighted average. Returns ``(y, cache)``."""
    geo = pool_geometry(who, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    x = np.ascontiguousarray(x)
    check_nonnegative(x, who)
    ranges = _clipped(geo, x.shape[2], x.shape[3])
    y = np.empty(x.shape[:2] + geo.out_size, dtype=x.dtype)
    if training:
        key = draw_key(rng)
        idx = np.empty(y.shape, dtype=np.int32 if x[0, 0].size < 2 ** 31 else np.int64)
        k = (int(geo.uhi.max()), int(geo.vhi.max())) if y.size else (0, 0)
        skip = _whole_block(geo, k) if y.size else None
        if skip is not None:
            K.specialized("stochastic", *k, *geo.stride, _is_all(skip, y))(
                x, ranges[0], ranges[2], *skip, key, y, idx)
        if y.size and not _is_all(skip, y):
            K.stochastic_forward(x, *ranges, key, y, idx, skip or (0, 0, 0, 0))
        return y, IndexCache(idx, x.shape)
    s = np.empty(y.shape, dtype=np.float64)
    K.stochastic_eval_forward(x, *ranges, y, s)
    return y, StochasticEvalCache(x, y, s, ranges)


def stochastic_pool2d_backward(dy, cache):
    if isinstance(cache, IndexCache):
        return index_pool_backward(dy, cache)
    x, y, s, ranges = cache
    dx = np.empty(x.shape, dtype=dy.dtype)
    K.stochastic_eval_backward(x, np.ascontiguousarray(dy), y, s, *ranges, dx)
    return dx


# -- adaptive pooling (PyTorch's rule) -------------------------------------------------
#   output i of OH covers rows [floor(i*H/OH), ceil((i+1)*H/OH)); windows may overlap.
def adaptive_ranges(size, out):
    i = np.arange(out, dtype=np.int64)
    return (i * size) // out, -((-(i + 1) * size) // out)


def adaptive_pool2d_forward(x, output_size, kind):
    """``kind`` 'avg' or 'max'; output_size (OH, OW). Returns ``(y, cache)``."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    rlo, rhi = adaptive_ranges(h, output_size[0])
    clo, chi = adaptive_ranges(w, output_size[1])
    y = np.empty((n, c) + tuple(output_size), dtype=x.dtype)
    if kind == "avg":
        div = np.outer(rhi - rlo, chi - clo).astype(x.dtype)
        if y.size:
            K.avg_forward(x, rlo, rhi, clo, chi, div, y)
        return y, AvgCache((rlo, rhi, clo, chi), div, x.shape, None, None)
    idx = np.empty(y.shape, dtype=np.int32 if h * w < 2 ** 31 else np.int64)
    if y.size:
        K.max_forward(x, rlo, np.zeros_like(rlo), rhi - rlo, 1, clo, np.zeros_like(clo),
                      chi - clo, 1, y, idx)
    return y, IndexCache(idx, x.shape)


def adaptive_pool2d_backward(dy, cache):
    if isinstance(cache, IndexCache):
        return index_pool_backward(dy, cache)
    return avg_pool2d_backward(dy, cache)
