"""Output-size formulas of convolution, transposed convolution and pooling.

Notation (per spatial dimension): H input size, K kernel size, S stride,
P padding, D dilation, OP output padding. The dilated kernel spans
``D*(K-1) + 1`` cells.

    convolution          OH = (H + 2P - D*(K-1) - 1) // S + 1
    transposed conv      OH = (H - 1)*S - 2P + D*(K-1) + OP + 1
    pooling              OH = (H + 2P - D*(K-1) - 1 [+ S-1 if ceil]) // S + 1,
                         minus one when ceil_mode would start the last window
                         in the right padding ((OH-1)*S >= H + P)

Floor division (``//``), never ``/``: a window that does not fit is dropped.
Every function takes ``size`` as an int or an ``(H, W)`` pair and answers in
the same form; the other arguments may be ints or pairs. An impossible
configuration raises ``ValueError`` that names the argument and the size it
computed.
"""
from __future__ import annotations

import numbers

from ._checks import nonnegative_pair, pair, positive_pair


def _unpack_size(size, who):
    scalar = isinstance(size, numbers.Integral) and not isinstance(size, bool)
    h, w = pair(size, who, "size")
    if min(h, w) < 0:
        raise ValueError(f"{who}: size must be non-negative, got {size!r}")
    return scalar, (h, w)


def _pack(scalar, hw):
    return hw[0] if scalar else tuple(hw)


def same_padding(kernel_size, dilation=1):
    """PyTorch's ``padding='same'`` split per dimension: ``((top, bottom), (left, right))``.

    The total ``D*(K-1)`` is split with the extra cell at the bottom/right.
    """
    k = positive_pair(kernel_size, "same_padding", "kernel_size")
    d = positive_pair(dilation, "same_padding", "dilation")
    out = []
    for kk, dd in zip(k, d):
        total = dd * (kk - 1)
        out.append((total // 2, total - total // 2))
    return tuple(out)


def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    """Spatial output size of ``Conv2d``; ``padding`` may be 'valid' or 'same'."""
    who = "conv_output_size"
    scalar, hw = _unpack_size(size, who)
    k = positive_pair(kernel_size, who, "kernel_size")
    s = positive_pair(stride, who, "stride")
    d = positive_pair(dilation, who, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            p_lo = p_hi = (0, 0)
        elif padding == "same":
            if s != (1, 1):
                raise ValueError(f"{who}: padding='same' needs stride 1, got stride={stride!r}")
            (t, b), (l, r) = same_padding(k, d)
            p_lo, p_hi = (t, l), (b, r)
        else:
            raise ValueError(f"{who}: padding string must be 'valid' or 'same', got {padding!r}")
    else:
        p_lo = p_hi = nonnegative_pair(padding, who, "padding")
    out = []
    for i in range(2):
        padded = hw[i] + p_lo[i] + p_hi[i]
        span = d[i] * (k[i] - 1) + 1
        if span > padded:
            raise ValueError(
                f"{who}: the dilated kernel ({span}) is larger than the padded input "
                f"({padded}) in dimension {i}; computed size "
                f"{(padded - span) // s[i] + 1}")
        out.append((padded - span) // s[i] + 1)
    return _pack(scalar, out)


def check_output_padding(output_padding, stride, dilation, who):
    """Each output_padding must be < stride or < dilation (PyTorch's rule)."""
    op = nonnegative_pair(output_padding, who, "output_padding")
    s = positive_pair(stride, who, "stride")
    d = positive_pair(dilation, who, "dilation")
    for i in range(2):
        if op[i] >= s[i] and op[i] >= d[i]:
            raise ValueError(
                f"{who}: output_padding must be smaller than either stride or dilation, "
                f"got output_padding={op}, stride={s}, dilation={d}")
    return op


def conv_transpose_output_size(size, kernel_size, stride=1, padding=0,
                               output_padding=0, dilation=1):
    """Spatial output size of ``ConvTranspose2d``."""
    who = "conv_transpose_output_size"
    scalar, hw = _unpack_size(size, who)
    k = positive_pair(kernel_size, who, "kernel_size")
    s = positive_pair(stride, who, "stride")
    p = nonnegative_pair(padding, who, "padding")
    d = positive_pair(dilation, who, "dilation")
    op = check_output_padding(output_padding, s, d, who)
    out = [(hw[i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 for i in range(2)]
    if min(out) < 1:
        raise ValueError(f"{who}: computed output size {tuple(out)} for input size "
                         f"{tuple(hw)} is too small (padding={p} crops too much)")
    return _pack(scalar, out)


def check_pool_padding(padding, kernel_size, who):
    """PyTorch 2.13's pooling rule: ``padding <= kernel_size // 2`` per dimension.

    (Newer PyTorch sources relax this to half the dilated kernel; keeping the
    rule in this one place makes that a one-line change.)
    """
    p = nonnegative_pair(padding, who, "padding")
    k = positive_pair(kernel_size, who, "kernel_size")
    for i in range(2):
        if p[i] > k[i] // 2:
            raise ValueError(f"{who}: padding must be at most half the kernel size "
                             f"(kernel_size // 2 = {k[i] // 2}), got padding={p}, "
                             f"kernel_size={k}")
    return p


def pool_output_size(size, kernel_size, stride=None, padding=0, dilation=1,
                     ceil_mode=False):
    """Spatial output size of ``MaxPool2d``/``AvgPool2d`` (``stride=None`` means kernel)."""
    who = "pool_output_size"
    scalar, hw = _unpack_size(size, who)
    k = positive_pair(kernel_size, who, "kernel_size")
    s = k if stride is None else positive_pair(stride, who, "stride")
    d = positive_pair(dilation, who, "dilation")
    p = check_pool_padding(padding, k, who)
    out = []
    for i in range(2):
        num = hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1 + ((s[i] - 1) if ceil_mode else 0)
        o = num // s[i] + 1
        if ceil_mode and (o - 1) * s[i] >= hw[i] + p[i]:
            o -= 1
        out.append(o)
    if min(out) < 1:
        raise ValueError(f"{who}: computed output size {tuple(out)} for input size "
                         f"{tuple(hw)} is too small (kernel_size={k}, dilation={d}, "
                         f"padding={p})")
    return _pack(scalar, out)
