"""The convolution rows of the benchmark table: Conv2d and ConvTranspose2d.

Convolutions without groups also get a ``products`` row: the layer's three
matrix products alone (``_products_case``), the floor under any
implementation that computes the layer as im2col-style products.
"""
from __future__ import annotations

import numpy as np

from .baselines import textbook as tb
from .cases import (Case, Workload, _module_case, _nnzero_layer, _rand, _textbook_case,
                    _torch, _torch_case)


# -- Conv2d -----------------------------------------------------------------------
CONV = {  # name: (N, C, H, O, k, stride, padding, groups[, dilation])
    "conv_stem": (64, 3, 32, 32, 3, 1, 1, 1),
    "conv_mid": (32, 64, 32, 64, 3, 1, 1, 1),
    "conv_strided": (32, 64, 32, 128, 3, 2, 1, 1),
    "conv_k4s2": (32, 64, 32, 128, 4, 2, 1, 1),    # a DCGAN / PatchGAN downsampling layer
    "conv_1x1": (32, 128, 16, 256, 1, 1, 0, 1),
    "conv_grouped": (32, 64, 32, 64, 3, 1, 1, 8),
    "conv_depthwise": (32, 128, 16, 128, 3, 1, 1, 128),
    "conv_dw_strided": (32, 256, 16, 256, 3, 2, 1, 256),   # a MobileNet downsampling layer
    "conv_dw7": (16, 960, 7, 960, 3, 1, 1, 960),   # MobileNetV2's last depthwise layer
    "conv_small": (32, 512, 4, 512, 3, 1, 1, 1),   # a ResNet's last stage on 32x32 images
    # a DeepLab ASPP branch (rate 24) on a 17x17 map: only the centre tap meets it
    "conv_atrous": (8, 256, 17, 256, 3, 1, 24, 1, 24),
    # a small model's layer (4.7 M multiply-adds): runs whole on one thread
    "conv_tiny": (8, 16, 16, 16, 3, 1, 1, 1),
    # ResNeXt-50 32x4d's stage-3 grouped layer: 32 groups of 16 channels on 14x14
    "conv_resnext": (16, 512, 14, 512, 3, 1, 1, 32),
}


def _conv_cfg(name, quick):
    n, c, h, o, k, s, p, g, *dilation = CONV[name]
    d = dilation[0] if dilation else 1
    if quick:
        depthwise = g == c == o
        n, h, c, o = 2, 8, min(c, 16), min(o, 16)
        g = c if depthwise else min(g, c // 2)   # grouped rows stay grouped, not depthwise
    oh = (h + 2 * p - d * (k - 1) - 1) // s + 1
    return n, c, h, o, k, s, p, g, d, oh


def _products_case(p, q, m, flops):
    """The three products of a layer computed as ``y = A @ B``, alone.

    A is (p, q) (the weight matrix), B is (q, m) (the columns: one per output
    position of the whole batch), G is dL/dy (p, m). The forward is A @ B; the
    step adds the weight gradient G @ B.T and the column gradient A.T @ G,
    each one np.matmul over the whole batch into a preallocated result, so
    nothing but BLAS runs: no im2col, no col2im, no reordering, no bias. Any
    implementation that forms these products (nnzero's im2col paths, the
    textbook's, PyTorch's) takes at least this long at the machine's GEMM
    rate; one that multiplies less (Winograd) can go below it.
    """
    if 3 * 2 * p * q * m != flops:
        raise RuntimeError(f"products case: {p}x{q}x{m} products do {6 * p * q * m} "
                           f"FLOPs, the workload counts {flops}")
    a, b, g = _rand((p, q), 2) * 0.1, _rand((q, m)), _rand((p, m), 1)
    y, da, db = np.empty((p, m), np.float32), np.empty_like(a), np.empty_like(b)

    def forward():
        return np.matmul(a, b, out=y)

    def step():
        np.matmul(a, b, out=y)
        np.matmul(g, b.T, out=da)
        np.matmul(a.T, g, out=db)
    return Case(forward, step)


def _conv_builders(name):
    def nnz(quick):
        conv = _nnzero_layer("Conv2d")
        if conv is None:
            return None
        n, c, h, o, k, s, p, g, d, oh = _conv_cfg(name, quick)
        layer = conv(c, o, k, stride=s, padding=p, dilation=d, groups=g, rng=0)
        return _module_case(layer, _rand((n, c, h, h)), _rand((n, o, oh, oh), 1))

    def torch_(quick):
        torch = _torch()
        if torch is None:
            return None
        n, c, h, o, k, s, p, g, d, oh = _conv_cfg(name, quick)
        m = torch.nn.Conv2d(c, o, k, stride=s, padding=p, dilation=d, groups=g)
        return _torch_case(torch, m, _rand((n, c, h, h)), _rand((n, o, oh, oh), 1))

    def text(quick):
        n, c, h, o, k, s, p, g, d, oh = _conv_cfg(name, quick)
        if d > 1:   # the books' im2col has no dilation
            return None
        layer = tb.Convolution(_rand((o, c // g, k, k), 2) * 0.1, np.zeros(o, np.float32),
                               s, p, g)
        return _textbook_case(layer, _rand((n, c, h, h)), _rand((n, o, oh, oh), 1))

    def flops(quick):
        n, c, h, o, k, s, p, g, d, oh = _conv_cfg(name, quick)
        return 3 * 2 * n * o * oh * oh * (c // g) * k * k

    def products(quick):
        n, c, h, o, k, s, p, g, d, oh = _conv_cfg(name, quick)
        if g > 1:   # grouped layers run direct loops, not products
            return None
        return _products_case(o, c * k * k, n * oh * oh, flops(quick))

    return {"nnzero": nnz, "torch": torch_, "textbook": text, "products": products}, flops


CONVT = {  # name: (N, C, H=W, O, kernel, stride, padding)
    "convT_up": (32, 64, 16, 32, 4, 2, 1),     # a DCGAN-style upsampling layer
    # a U-Net decoder's: its 2x2 sub-pixel convolution runs as Winograd F(3x3, 2x2)
    "convT_wide": (8, 128, 32, 64, 4, 2, 1),
    # a decoder's stride-1 layer: runs as the convolution it equals (Winograd)
    "convT_s1": (16, 64, 16, 64, 3, 1, 1),
}


def _convt_cfg(name, quick):
    n, c, h, o, k, s, p = CONVT[name]
    if quick:
        n, h, c, o = 2, 4, 8, 8
    oh = (h - 1) * s - 2 * p + k
    return n, c, h, o, k, s, p, oh


def _convt_builders(name):
    def nnz(quick):
        cls = _nnzero_layer("ConvTranspose2d")
        if cls is None:
            return None
        n, c, h, o, k, s, p, oh = _convt_cfg(name, quick)
        return _module_case(cls(c, o, k, stride=s, padding=p, rng=0), _rand((n, c, h, h)),
                            _rand((n, o, oh, oh), 1))

    def torch_(quick):
        torch = _torch()
        if torch is None:
            return None
        n, c, h, o, k, s, p, oh = _convt_cfg(name, quick)
        m = torch.nn.ConvTranspose2d(c, o, k, stride=s, padding=p)
        return _torch_case(torch, m, _rand((n, c, h, h)), _rand((n, o, oh, oh), 1))

    def text(quick):
        n, c, h, o, k, s, p, oh = _convt_cfg(name, quick)
        layer = tb.Deconvolution(_rand((c, o, k, k), 2) * 0.1, np.zeros(o, np.float32), s, p)
        return _textbook_case(layer, _rand((n, c, h, h)), _rand((n, o, oh, oh), 1))

    def flops(quick):
        n, c, h, o, k, s, p, oh = _convt_cfg(name, quick)
        return 3 * 2 * n * c * h * h * o * k * k

    def products(quick):
        # the forward's columns are W.T (O*k*k, C) @ x (C, N*H*W), col2im'd into y
        n, c, h, o, k, s, p, oh = _convt_cfg(name, quick)
        return _products_case(o * k * k, c, n * h * h, flops(quick))

    return {"nnzero": nnz, "torch": torch_, "textbook": text, "products": products}, flops


def conv_workloads():
    """The Conv2d rows, then the ConvTranspose2d ones."""
    table = []
    for name, (n, c, h, o, k, s, p, g, *dilation) in CONV.items():
        b, f = _conv_builders(name)
        desc = f"Conv2d N={n}, C={c}, {h}x{h}, O={o}, k={k}, s={s}, p={p}" + (
            f", groups={g}" if g > 1 else "") + (f", d={dilation[0]}" if dilation else "")
        table.append(Workload(name, desc, b, f))
    for name, (n, c, h, o, k, s, p) in CONVT.items():
        b, f = _convt_builders(name)
        table.append(Workload(name, f"ConvTranspose2d N={n}, C={c}, {h}x{h}, O={o}, k={k}, "
                                    f"s={s}, p={p}", b, f))
    return table
