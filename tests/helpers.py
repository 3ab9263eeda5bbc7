"""Strategies and input builders shared by the tests."""
import numba
import numpy as np
import pytest
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

from nnzero import gradcheck
from nnzero.functional.conv import conv2d_forward, set_conv_algorithm
from nnzero.layers import Conv2d, ConvTranspose2d
from nnzero.shapes import conv_output_size, conv_transpose_output_size


two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                 reason="numba has a single thread here")


def blas_threads():
    """The thread count of every BLAS library loaded."""
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


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


def naive_conv2d(x, w, b, stride, pad_before, dilation, groups, out_size):
    """The definition, one output element at a time (float64)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    y = np.zeros((n, o) + tuple(out_size))
    for nn in range(n):
        for oo in range(o):
            g = oo // og
            for i in range(out_size[0]):
                for j in range(out_size[1]):
                    acc = 0.0 if b is None else b[oo]
                    for cc in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                r = i * stride[0] - pad_before[0] + u * dilation[0]
                                q = j * stride[1] - pad_before[1] + v * dilation[1]
                                if 0 <= r < h and 0 <= q < wd:
                                    acc += w[oo, cc, u, v] * x[nn, g * cg + cc, r, q]
                    y[nn, oo, i, j] = acc
    return y


def naive_conv_transpose2d(x, w, b, stride, padding, dilation, groups, out_size):
    """The scatter definition: every input cell times every tap, added where it lands
    (w is (C, O/groups, KH, KW); rows and columns past out_size are dropped)."""
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    cg = c // groups
    y = np.zeros((n, og * groups) + tuple(out_size))
    for nn in range(n):
        for ci in range(c):
            g = ci // cg
            for co in range(og):
                for i in range(h):
                    for j in range(wd):
                        for u in range(kh):
                            for v in range(kw):
                                r = i * stride[0] - padding[0] + u * dilation[0]
                                q = j * stride[1] - padding[1] + v * dilation[1]
                                if 0 <= r < out_size[0] and 0 <= q < out_size[1]:
                                    y[nn, g * og + co, r, q] += x[nn, ci, i, j] * w[ci, co, u, v]
    if b is not None:
        y += np.asarray(b).reshape(1, -1, 1, 1)
    return y


def whole_kernel():
    """``with whole_kernel(): ...``: under 'auto', convolutions run with every
    kernel tap, dead ones included (``_columns.live_taps`` off, as under a
    forced algorithm), so that a test of one path's loops reaches them on
    every drawn size, a 1-pixel side with padding among them."""
    from unittest import mock

    from nnzero.functional import conv
    return mock.patch.object(conv, "live_taps", lambda geo, size: None)


class conv_algorithm:
    """``with conv_algorithm('im2col'): ...`` runs a block with a chosen
    convolution algorithm and restores the previous one."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.old = set_conv_algorithm(self.name)

    def __exit__(self, *exc):
        set_conv_algorithm(self.old)


def tile_kernel_cases(rng, x, pad, out_size, step, positions=16, phases=1):
    """The four tile kernels of a Winograd family (``step`` output cells per
    tile side, ``positions`` cells per tile, ``phases`` * C tile channels), as
    ``(name, args, out_shape)`` on ``x`` and random M, dY, dV of x's dtype."""
    n, c = x.shape[:2]
    (oh, ow), (pt, pl) = out_size, pad
    th, tw = -(-oh // step), -(-ow // step)
    t, cp = n * th * tw, phases * c

    def draw(*shape):
        return rng.standard_normal(shape).astype(x.dtype)

    return [("input_transform", (x, pt, pl, th, tw), (positions, cp, t)),
            ("output_transform", (draw(positions, c, t), oh, ow), (n, c, oh, ow)),
            ("output_grad", (draw(n, c, oh, ow), th, tw), (positions, c, t)),
            ("input_grad", (draw(positions, cp, t), pt, pl, th, tw), x.shape)]


def check_tile_algebra(K, conv, x, wt, pad, out_size, rng, split=None, join=None):
    """A Winograd family's four tile kernels (module ``K``, its matrices BT, G,
    AT) and its P products compute ``conv(x, wt)`` (the direct sum, output
    ``out_size``) and, through the backward kernels, its gradients, checked
    against directional derivatives (<y, dy> is linear in x and in wt).
    ``split``/``join``: the weight to the family's filters (O, C', r, r) and
    that map's adjoint (the stride-2 family's phases); identity otherwise."""
    split = split or (lambda w: w)
    join = join or (lambda dw: dw)
    n, o = x.shape[0], wt.shape[0]
    p, step = K.BT.shape[0], K.AT.shape[0]
    (oh, ow), (pt, pl) = out_size, pad
    th, tw = -(-oh // step), -(-ow // step)
    t = n * th * tw
    wp = split(wt)
    u = np.einsum("ik,ockl,jl->ijoc", K.G, wp, K.G).reshape(p * p, o, wp.shape[1])
    v = np.empty((p * p, wp.shape[1], t))
    K.input_transform(x, pt, pl, th, tw, v)
    y = np.empty((n, o, oh, ow))
    K.output_transform(u @ v, oh, ow, y)
    np.testing.assert_allclose(y, conv(x, wt), rtol=1e-11, atol=1e-11)
    dy = rng.standard_normal(y.shape)
    dm = np.empty((p * p, o, t))
    K.output_grad(dy, th, tw, dm)
    dx = np.empty_like(x)
    K.input_grad(u.transpose(0, 2, 1) @ dm, pt, pl, th, tw, dx)
    du = (dm @ v.transpose(0, 2, 1)).reshape(p, p, o, wp.shape[1])
    dw = join(np.einsum("ik,ijoc,jl->ockl", K.G, du, K.G))
    ex, ew = rng.standard_normal(x.shape), rng.standard_normal(wt.shape)
    np.testing.assert_allclose(np.sum(dx * ex), np.sum(conv(ex, wt) * dy), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(np.sum(dw * ew), np.sum(conv(x, ew) * dy), rtol=1e-10,
                               atol=1e-10)


def check_twins(module, cases, dtype, ulps_of_largest=None, **tol):
    """For each ``(name, args, out_shape)``: the module's ``name_numba`` (split
    over the threads) equals its NumPy twin ``name_numpy`` to ``tol``, and its
    one-thread entry ``name_serial`` equals ``name_numba`` bit for bit.
    ``ulps_of_largest``: the absolute tolerance is that many units of
    ``dtype``'s precision at the twin's largest value (sums of terms that
    large round by that much, whatever the sum)."""
    for name, args, shape in cases:
        a, b, serial = (np.full(shape, np.nan, dtype=dtype) for _ in range(3))
        getattr(module, name + "_numba")(*args, a)
        getattr(module, name + "_numpy")(*args, b)
        getattr(module, name + "_serial")(*args, serial)
        if ulps_of_largest is not None:
            largest = float(np.abs(b).max()) if b.size else 0.0
            tol = dict(tol, atol=ulps_of_largest * np.finfo(dtype).eps * largest)
        np.testing.assert_allclose(a, b, **tol)
        np.testing.assert_array_equal(serial, a)


def float64_im2col(layer, x):
    """A zero-padded Conv2d's output for x, computed in float64 by im2col (itself
    checked against ``naive_conv2d``): the reference for float32 fast paths."""
    bias = None if layer.bias is None else layer.bias.data.astype(np.float64)
    with conv_algorithm("im2col"):
        y, _ = conv2d_forward(x.astype(np.float64), layer.weight.data.astype(np.float64), bias,
                              layer.stride, layer.padding, layer.dilation, layer.groups)
    return y


def check_path_against_im2col(layer, x, algorithm, cache_type, rng, family=None):
    """Under ``algorithm``, ``layer`` runs on ``x`` with a cache of
    ``cache_type`` (and Winograd tile ``family``, if given), passes the
    gradient check, and gives im2col's outputs and gradients (float64, to
    rounding)."""
    with conv_algorithm(algorithm), whole_kernel():
        y = layer(x)
        assert isinstance(layer._ctx.cache, cache_type)
        assert family is None or layer._ctx.cache.family == family
        gradcheck(layer, x)
        dy = rng.standard_normal(y.shape)
        layer(x)
        layer.zero_grad()
        dx = layer.backward(dy)
    grads = [p.grad.copy() for p in layer.parameters()]
    layer.zero_grad()
    with conv_algorithm("im2col"):
        np.testing.assert_allclose(layer(x), y, rtol=1e-10, atol=1e-12)
        assert not isinstance(layer._ctx.cache, cache_type)
        np.testing.assert_allclose(layer.backward(dy), dx, rtol=1e-10, atol=1e-12)
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-10, atol=1e-12)


@st.composite
def conv_configs(draw, transposed=False):
    """A small convolution: channels, kernel, stride, padding (incl. 'same' and
    'valid' unless ``transposed``), dilation, groups, bias, input size, seed."""
    groups = draw(st.integers(1, 2))
    c = groups * draw(st.integers(1, 2))
    o = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if not transposed and draw(st.booleans()):
        padding = draw(st.sampled_from(["same", "valid"]))
        stride = (1, 1) if padding == "same" else (draw(st.integers(1, 3)),) * 2
    else:
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    h = draw(st.integers(max(1, span[0] - 2) if not transposed else 1, 6))
    w = draw(st.integers(max(1, span[1] - 2) if not transposed else 1, 6))
    return dict(n=draw(st.integers(1, 2)), c=c, o=o, kernel=(kh, kw), stride=stride,
                padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
                h=h, w=w, seed=draw(seeds()))


@st.composite
def dead_tap_configs(draw):
    """Small images under dilations and paddings that reach past them."""
    groups = draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    if draw(st.booleans()):
        stride, padding = (1, 1), "same"
    else:
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        padding = tuple(draw(st.integers(max(0, -(-(d * (k - 1) + 1 - n) // 2)), d * (k - 1)))
                        for d, k, n in zip(dilation, kernel, (h, w)))
    return dict(n=draw(st.integers(1, 2)), c=groups * draw(st.integers(1, 2)),
                o=groups * draw(st.integers(1, 2)), groups=groups, kernel=kernel,
                stride=stride, padding=padding, dilation=dilation, h=h, w=w,
                bias=draw(st.booleans()), seed=draw(seeds()))


def fits(cfg):
    """Whether a drawn convolution's (dilated) kernel fits its padded input."""
    try:
        conv_output_size((cfg["h"], cfg["w"]), cfg["kernel"], cfg["stride"], cfg["padding"],
                         cfg["dilation"])
        return True
    except ValueError:
        return False


def drawn_conv_transpose2d(cfg, output_padding):
    """``(layer, x, rng)`` as ``drawn_conv2d`` for a ConvTranspose2d of a drawn
    ``cfg`` (``conv_configs(transposed=True)``), or None when that layer with
    ``output_padding`` has no output."""
    try:
        conv_transpose_output_size((cfg["h"], cfg["w"]), cfg["kernel"], cfg["stride"],
                                   cfg["padding"], output_padding, cfg["dilation"])
    except ValueError:
        return None
    rng = np.random.default_rng(cfg["seed"])
    layer = ConvTranspose2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                            output_padding, cfg["groups"], cfg["bias"], cfg["dilation"],
                            dtype=np.float64, rng=rng)
    return layer, rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"])), rng


def drawn_conv2d(cfg):
    """``(layer, x, rng)``: the float64 Conv2d of a drawn ``cfg`` (``conv_configs``,
    ``dead_tap_configs``) and an input for it, both from the generator seeded
    with cfg's seed, which the caller may draw more from."""
    rng = np.random.default_rng(cfg["seed"])
    layer = Conv2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                   cfg["dilation"], cfg["groups"], bias=cfg["bias"], dtype=np.float64, rng=rng)
    return layer, rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"])), rng


def compiled_vectorised(monkeypatch, module, kernels, run):
    """Run ``run()`` with ``module.compile_vectorized`` and the ``kernels``'
    compilations watched, and check that every overload of ``kernels`` the
    calls added is one it was asked for, that every compilation in the run
    had the SLP flag on (a call with argument types ``compile_vectorized``
    skipped would compile an unvectorised one, flag off), and that numba's
    flag, and its code library's IR intake (patched for 512-bit kernels), are
    left as they were. Returns how many (kernel, signature) pairs it was
    asked for."""
    from numba import typeof
    from numba.core import config

    from nnzero.kernels import _jit
    before_flag = config.SLP_VECTORIZE
    before = [set(k.overloads) for k in kernels]
    asked, compiled = set(), []

    from numba.core.codegen import CPUCodeLibrary
    before_add = CPUCodeLibrary.add_ir_module

    def spy(dispatcher, args, **kwargs):
        asked.add((dispatcher, tuple(typeof(a) for a in args)))
        _jit.compile_vectorized(dispatcher, args, **kwargs)
    monkeypatch.setattr(module, "compile_vectorized", spy)
    for kernel in kernels:
        def watched(sig, kernel=kernel, real=kernel.compile):
            compiled.append((kernel, config.SLP_VECTORIZE))
            return real(sig)
        monkeypatch.setattr(kernel, "compile", watched)
    run()
    for kernel, old in zip(kernels, before):
        mine = {sig for k, sig in asked if k is kernel}
        assert set(kernel.overloads) - old <= mine
        assert mine <= set(kernel.overloads)
    assert all(flag for _, flag in compiled)
    assert CPUCodeLibrary.add_ir_module is before_add   # the 512-bit window closed
    assert config.SLP_VECTORIZE == before_flag
    return len(asked)


def grouped_arrays(seed, n, groups, cg, og, h, w, k, out, dtype):
    """(x, weight, bias, dy) of a drawn grouped convolution, for the tests of
    its kernels against their twin: G groups of cg in and og out channels,
    an h x w image, a k kernel and an ``out`` output grid."""
    rng = np.random.default_rng(seed)
    c, o = groups * cg, groups * og
    return (rng.standard_normal((n, c, h, w)).astype(dtype),
            rng.standard_normal((o, cg) + tuple(k)).astype(dtype),
            rng.standard_normal(o).astype(dtype),
            rng.standard_normal((n, o) + tuple(out)).astype(dtype))


# Realistic layers and the path 'auto' takes for each (the rules are
# in functional/conv.py and subpixel.py; N = 0 stands for the 4 samples per
# thread the F(4x4, ...) families need):
# (path, (N, C, H, O, kernel, stride, padding, groups)).
CONV_PATHS = [
    ("F(4x4,3x3)", (0, 32, 16, 32, 3, 1, 1, 1)),
    ("F(2x2,3x3)", (2, 32, 32, 32, 3, 1, 1, 1)),
    ("F(3x3,2x2)", (2, 64, 17, 64, 2, 1, 0, 1)),
    ("F(4x4,2x2)/2", (0, 16, 16, 32, 4, 2, 1, 1)),
    # the threads split each step, not the batch (winograd_rules.BY_POSITIONS)
    ("F(4x4,3x3) by positions", (0, 128, 16, 128, 3, 1, 1, 1)),
    ("F(2x2,3x3) by positions", (8, 128, 6, 128, 3, 1, 1, 1)),
    ("F(4x4,2x2)/2 by positions", (0, 64, 16, 128, 4, 2, 1, 1)),
    ("im2col", (4, 16, 32, 32, 3, 2, 1, 1)),          # 3x3 at stride 2
    ("im2col", (4, 32, 16, 48, 1, 1, 0, 1)),          # pointwise
    ("im2col", (4, 3, 32, 16, 3, 1, 1, 1)),           # a stem
    ("batch-minor", (4, 32, 7, 64, 3, 1, 1, 1)),
    ("batch-minor", (4, 256, 4, 512, 1, 1, 0, 1)),     # pointwise, a large weight
    ("im2col", (4, 32, 8, 48, 1, 1, 0, 1)),           # pointwise, a small weight
    ("direct", (4, 24, 12, 24, 3, 1, 1, 8)),          # grouped, 3 channels a group
    ("blocked", (4, 64, 8, 64, 3, 1, 1, 4)),          # grouped, 16 channels a group
    ("lanes", (4, 24, 7, 24, 3, 1, 1, 24)),           # depthwise 3x3 on 7x7
    ("direct", (4, 24, 12, 24, 5, 1, 2, 24)),         # depthwise 5x5 on 12x12
    ("direct", (4, 24, 15, 24, 3, 2, 1, 24)),         # depthwise 3x3 at stride 2
    ("direct", (4, 24, 15, 24, 5, 2, 2, 24)),         # depthwise 5x5 at stride 2
    ("trimmed batch-minor", (4, 16, 1, 24, 3, 1, 1, 1)),  # 1x1 maps: the centre tap alone
]
# (path, (N, C, H, O, kernel, stride, padding, output_padding))
CONVT_PATHS = [
    ("sub-pixel Winograd", (4, 64, 8, 32, 4, 2, 1, 0)),
    ("sub-pixel im2col", (4, 8, 8, 8, 4, 2, 1, 0)),
    ("col2im", (4, 16, 7, 8, 3, 2, 1, 1)),
    ("col2im", (4, 32, 9, 16, 5, 1, 2, 0)),           # stride 1, few output channels
    ("as-conv F(2x2,3x3)", (2, 32, 32, 32, 3, 1, 1, 0)),   # stride 1 as a convolution
    ("as-conv im2col", (4, 16, 16, 32, 5, 1, 2, 0)),
]


_WRAPPED = {"AsConvCache": "as-conv ", "TrimmedCache": "trimmed "}   # caches around another


def conv_path(cache):
    """The name of the path a layer's forward took, from its cache."""
    kind = type(cache).__name__
    if kind in _WRAPPED:
        return _WRAPPED[kind] + conv_path(cache.inner)
    if kind == "WinogradCache":
        return cache.family + (" by positions" if cache.by_positions else "")
    if kind == "SubpixelCache":
        return "sub-pixel " + ("im2col" if cache.wino is None else "Winograd")
    if kind == "DirectCache" and cache.loops in ("blocked", "lanes"):
        return cache.loops
    return {"BatchMinorCache": "batch-minor", "DirectCache": "direct", "ConvCache": "im2col",
            "ConvTransposeCache": "col2im", "TapsCache": "taps"}[kind]
