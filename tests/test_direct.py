"""Grouped convolutions computed directly (``functional/direct.py``): the
gradients and values of both kernels' paths, the kernels against their NumPy
twins, and the dispatch from Conv2d."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from helpers import conv_algorithm, grouped_arrays, naive_conv2d, seeds, whole_kernel
from nnzero import gradcheck
from nnzero.functional import conv as F
from nnzero.functional import direct
from nnzero.functional.direct import DirectCache
from nnzero.kernels import depthwise as D
from nnzero.kernels import depthwise3 as D3
from nnzero.kernels import depthwise5 as D5
from nnzero.kernels import grouped as G
from nnzero.layers import Conv2d


pytestmark = pytest.mark.usefixtures("split_every_kernel_call")  # see conftest.py


@st.composite
def direct_configs(draw):
    """Depthwise layers at any stride, or few channels per group at stride 1."""
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    groups = draw(st.integers(2, 3))
    if draw(st.booleans()):   # depthwise
        cg = og = 1
        if draw(st.booleans()):
            padding = draw(st.sampled_from(["same", "valid"]))
            stride = (1, 1) if padding == "same" else (draw(st.integers(1, 3)),) * 2
        else:
            padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
            stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    else:
        cg, og = draw(st.integers(1, direct.FEW_CHANNELS)), draw(st.integers(1, 3))
        assume(kernel != (1, 1) and (cg, og) != (1, 1))
        stride = (1, 1)
        padding = draw(st.one_of(st.sampled_from(["same", "valid"]),
                                 st.tuples(st.integers(0, 2), st.integers(0, 2))))
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    return dict(n=draw(st.integers(1, 2)), c=groups * cg, o=groups * og, groups=groups,
                kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                bias=draw(st.booleans()), h=draw(st.integers(span[0], span[0] + 4)),
                w=draw(st.integers(span[1], span[1] + 4)), seed=draw(seeds()))


@given(cfg=direct_configs())
def test_direct_gradients_and_values(cfg):
    rng = np.random.default_rng(cfg["seed"])
    layer = Conv2d(cfg["c"], cfg["o"], cfg["kernel"], cfg["stride"], cfg["padding"],
                   cfg["dilation"], groups=cfg["groups"], bias=cfg["bias"], dtype=np.float64,
                   rng=rng)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    with whole_kernel():
        _, cache = F.conv2d_forward(x, layer.weight.data, None, cfg["stride"],
                                    cfg["padding"], cfg["dilation"], cfg["groups"])
        assert isinstance(cache, DirectCache)   # the direct path, not im2col
        gradcheck(layer, x)
    geo = F.make_geometry(cfg["kernel"], cfg["stride"], cfg["padding"], cfg["dilation"],
                          cfg["groups"])
    expected = naive_conv2d(x, layer.weight.data, None if layer.bias is None else
                            layer.bias.data, geo.stride, geo.pad_before, geo.dilation,
                            cfg["groups"], geo.out_size(cfg["h"], cfg["w"]))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-10, atol=1e-12)


# (in, out, groups, stride, padding, dilation): depthwise at several strides,
# a channel multiplier, and groups of a few channels
AGREEMENT_CASES = [(6, 6, 6, 1, 1, 1), (6, 6, 6, 2, 1, 1), (6, 6, 6, 1, 2, 2), (6, 6, 6, 3, 0, 1),
                   (6, 12, 6, 1, 1, 1), (6, 12, 3, 1, 1, 1), (8, 4, 2, 1, 2, 2)]


@pytest.mark.parametrize("c,o,groups,stride,padding,dilation", AGREEMENT_CASES)
def test_direct_matches_the_im2col_path_in_float32(c, o, groups, stride, padding, dilation):
    rng = np.random.default_rng(0)
    layer = Conv2d(c, o, 3, stride, padding, dilation, groups=groups, rng=1)
    x = rng.standard_normal((3, c, 11, 9)).astype(np.float32)
    results = {}
    for algorithm in ("auto", "im2col"):
        with conv_algorithm(algorithm):
            layer.zero_grad()
            y = layer(x)
            _, cache = F.conv2d_forward(x, layer.weight.data, None, stride, padding, dilation,
                                        groups)
            assert isinstance(cache, DirectCache) == (algorithm == "auto")
            dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
            dx = layer.backward(dy)
            results[algorithm] = (y, dx, layer.weight.grad.copy(), layer.bias.grad.copy())
    for got, reference in zip(results["auto"], results["im2col"]):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)


# Channel counts a multiple of 4 take the blocked loops first (their own
# rule, tests/test_grouped_blocked.py); the others show grouped.py's rule.
@pytest.mark.parametrize("c,o,groups,kernel,stride,out,expected", [
    (8, 8, 8, (3, 3), 2, (16, 16), True),      # depthwise: any stride
    (8, 16, 8, (3, 3), 1, (8, 8), True),       # multiplier: 9 rows deep
    (8, 16, 8, (3, 3), 2, (8, 8), False),      # multiplier at stride 2: im2col
    (24, 24, 8, (3, 3), 1, (8, 8), True),      # 3 channels a group: 27 rows
    (56, 56, 8, (3, 3), 1, (16, 16), True),    # 7 channels, a large plane: 63 rows
    (56, 56, 8, (3, 3), 1, (8, 8), False),     # 7 channels, a small plane
    (56, 56, 8, (3, 3), 1, (12, 12), True),    # 7 channels: 12x12 is large
    (56, 56, 8, (3, 3), 1, (11, 12), False),   # ... 11x12 is not
    (64, 64, 8, (3, 3), 1, (8, 8), True),      # 8 channels: the blocked loops
    (136, 136, 8, (3, 3), 1, (32, 32), False),  # 17 channels: 153 rows
    (8, 8, 4, (5, 5), 1, (8, 8), True),        # 2 channels of 5x5: 50 rows, but few channels
    (24, 24, 8, (7, 7), 1, (8, 8), True),      # 3 channels of 7x7: 147 rows
    (48, 48, 8, (5, 5), 1, (16, 16), True),    # 6 channels of 5x5, a large plane
    (48, 48, 8, (5, 5), 1, (8, 8), False),     # 6 channels of 5x5, a small plane
    (136, 136, 8, (5, 5), 1, (32, 32), False),  # 17 channels of 5x5
    (96, 96, 8, (1, 3), 1, (8, 8), True),      # 12 channels of 1x3: the blocked loops
    (88, 88, 8, (1, 3), 1, (8, 8), True),      # 11 channels of 1x3: 33 rows
    (64, 64, 16, (1, 1), 1, (16, 16), False),  # 1x1: the product reads x itself
    (64, 64, 1, (3, 3), 1, (32, 32), False),   # not grouped
])
def test_direct_dispatch_rule(c, o, groups, kernel, stride, out, expected):
    geo = F.make_geometry(kernel, stride, 1, 1, groups)
    assert direct.applicable(geo, c, o, out) == expected


def _assert_kernels_agree(extra, n, c, h, w, k, s, p, d, out, dtype, seed):
    """The row loops and the ``extra`` (forward, backward) kernels against the twin."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c, 1) + k).astype(dtype)
    bias = rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal((n, c) + out).astype(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    kernels = [(D.depthwise_forward_numpy, D.depthwise_backward_numpy),
               (D.depthwise_forward_numba, D.depthwise_backward_numba)] + extra
    ys = [np.full((n, c) + out, np.nan, dtype) for _ in kernels]
    dxs = [np.full(x.shape, np.nan, dtype) for _ in kernels]
    dws = [np.full((n, c) + k, np.nan, dtype) for _ in kernels]
    for i, (fwd, bwd) in enumerate(kernels):
        fwd(x, wt, bias, *s, *p, *d, ys[i])
        bwd(x, wt, dy, *s, *p, *d, dxs[i], dws[i])
    for i in range(1, len(kernels)):
        for a, b in ((ys[i], ys[0]), (dxs[i], dxs[0]), (dws[i], dws[0])):
            np.testing.assert_allclose(a, b, **tol)


_GRID = dict(n=st.integers(0, 2), c=st.integers(1, 3), h=st.integers(1, 7), w=st.integers(1, 7),
             p=st.tuples(st.integers(0, 3), st.integers(0, 3)),
             out=st.tuples(st.integers(1, 6), st.integers(1, 6)),
             dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())


@given(k=st.one_of(st.just((3, 3)), st.tuples(st.integers(1, 3), st.integers(1, 3))),
       s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)), **_GRID)
def test_depthwise_kernels_equal_numpy_twins(k, s, d, **grid):
    """Any window grid, even one reaching far past the image; the 3x3 loops
    (generic and column-stride-2 forms) too."""
    extra = [(D3.depthwise3_forward_numba, D3.depthwise3_backward_numba)] if k == (3, 3) else []
    _assert_kernels_agree(extra, k=k, s=s, d=d, **grid)


@given(kh=st.integers(1, 5), sh=st.integers(1, 3), dh=st.integers(1, 2), **_GRID)
def test_depthwise5_kernels_equal_numpy_twins(kh, sh, dh, **grid):
    """5-wide kernels at column stride 2: any height, row stride and dilation."""
    extra = [(D5.depthwise5_forward_numba, D5.depthwise5_backward_numba)]
    _assert_kernels_agree(extra, k=(kh, 5), s=(sh, 2), d=(dh, 1), **grid)


@pytest.mark.parametrize("family, k, geometries", [
    ("rows", 3, [((1, 1), (1, 2)), ((2, 2), (2, 1))]),
    ("3x3", 3, [((1, 1), (1, 2)), ((2, 2), (2, 1))]),
    ("5 wide", 5, [((1, 2), (2, 2)), ((2, 2), (1, 0))])])
def test_depthwise_kernels_reuse_their_scratch_across_planes(family, k, geometries, monkeypatch):
    """Each call's scratch serves many planes in turn: what one plane leaves in
    its padded plane or its sums must not reach the next (every family of loops)."""
    monkeypatch.setattr(D, "family", lambda *args: family)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 30, 7, 6)) * 1e3
    wt = rng.standard_normal((30, 1, k, k))
    bias = rng.standard_normal(30)
    for stride, pad in geometries:
        oh = (7 + 2 * pad[0] - k) // stride[0] + 1
        ow = (6 + 2 * pad[1] - k) // stride[1] + 1
        dy = rng.standard_normal((5, 30, oh, ow))
        y = D.depthwise_forward(x, wt, bias, stride, pad, (1, 1), np.empty((5, 30, oh, ow)))
        y_ref = np.empty_like(y)
        D.depthwise_forward_numpy(x, wt, bias, *stride, *pad, 1, 1, y_ref)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-9)
        dx = np.empty_like(x)
        dw = D.depthwise_backward(x, wt, dy, stride, pad, (1, 1), dx)
        dx_ref, dw_ref = np.empty_like(x), np.empty((5, 30, k, k))
        D.depthwise_backward_numpy(x, wt, dy, *stride, *pad, 1, 1, dx_ref, dw_ref)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(dw, dw_ref.sum(axis=0).reshape(wt.shape), rtol=1e-10,
                                   atol=1e-9)


@pytest.mark.parametrize("kernel, width, stride, dilation, expected", [
    ((3, 3), 4, 3, 1, "3x3"), ((3, 3), D3.FUSED_MAX_WIDTH, 1, 2, "3x3"),
    ((3, 3), D3.FUSED_MAX_WIDTH + 1, 3, 1, "rows"), ((3, 3), 56, 2, 1, "3x3"),
    ((3, 3), 56, 2, 2, "rows"), ((5, 5), 4, 2, 1, "5 wide"), ((3, 5), 56, 2, 1, "5 wide"),
    ((5, 5), 4, 1, 1, "rows"), ((5, 5), 4, 2, 2, "rows"), ((3, 1), 4, 2, 1, "rows")])
def test_depthwise_loops_chosen_by_kernel_stride_and_width(kernel, width, stride, dilation,
                                                           expected):
    assert D.family(kernel, width, stride, dilation) == expected


def test_depthwise_wrappers_reject_inconsistent_shapes():
    x = np.zeros((2, 3, 5, 5))
    w = np.zeros((3, 1, 3, 3))
    with pytest.raises(ValueError, match="depthwise: inconsistent shapes"):
        D.depthwise_forward(x, np.zeros((4, 1, 3, 3)), np.zeros(3), (1, 1), (0, 0), (1, 1),
                            np.empty((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="depthwise: inconsistent shapes"):
        D.depthwise_forward(x, w, np.zeros(3), (1, 1), (0, 0), (1, 1), np.empty((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="bias must have shape"):
        D.depthwise_forward(x, w, np.zeros(2), (1, 1), (0, 0), (1, 1), np.empty((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="y must be C-contiguous"):
        D.depthwise_forward(x, w, np.zeros(3), (1, 1), (0, 0), (1, 1),
                            np.empty((2, 3, 3, 6))[..., ::2])
    with pytest.raises(ValueError, match="dx must be C-contiguous"):
        D.depthwise_backward(x, w, np.zeros((2, 3, 3, 3)), (1, 1), (0, 0), (1, 1),
                             np.empty((2, 3, 5, 4)))


@given(n=st.integers(0, 2), groups=st.integers(1, 3), cg=st.integers(0, 3), og=st.integers(1, 3),
       h=st.integers(0, 7), w=st.integers(0, 7),
       k=st.sampled_from([(3, 3), (1, 1), (2, 3), (3, 1), (4, 2)]),
       p=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       out=st.tuples(st.integers(0, 6), st.integers(0, 6)),
       dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_grouped_kernels_equal_numpy_twins(n, groups, cg, og, h, w, k, p, d, out, dtype, seed):
    """Any stride-1 window grid, even one reaching far past the image, and
    empty batches, channels, images or outputs (3x3 takes the fused loops)."""
    x, wt, bias, dy = grouped_arrays(seed, n, groups, cg, og, h, w, k, out, dtype)
    o = wt.shape[0]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    results = []
    for fwd, bwd in ((G.grouped_forward_numba, G.grouped_backward_numba),
                     (G.grouped_forward_numpy, G.grouped_backward_numpy)):
        y = np.full((n, o) + out, np.nan, dtype)
        dx = np.full(x.shape, np.nan, dtype)
        dw_units = np.full((n, groups, og, cg) + k, np.nan, dtype)
        db_units = np.full((n, o), np.nan, dtype)   # each plane of dy summed
        if y.size:                 # the wrappers call the kernels only then
            fwd(x, wt, bias, groups, *p, *d, y)
        if dx.size and dy.size:
            bwd(x, wt, dy, groups, *p, *d, dx, dw_units, db_units)
            np.testing.assert_allclose(db_units, dy.sum(axis=(2, 3)), **tol)
        results.append((y, dx, dw_units, db_units))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, **tol)


def test_grouped_wrappers_handle_empty_inputs():
    x = np.ones((2, 4, 3, 3))
    w = np.ones((6, 2, 3, 3))
    y = G.grouped_forward(x, w, np.arange(6.0), 2, (0, 0), (1, 1), np.empty((2, 6, 1, 1)))
    np.testing.assert_array_equal(y[:, :, 0, 0], [np.arange(6.0) + 18] * 2)
    dx = np.full(x.shape, np.nan)
    db = np.full(6, np.nan)
    dw = G.grouped_backward(x, w, np.empty((2, 6, 0, 1)), 2, (0, 0), (1, 1), dx, db=db)
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_array_equal(dw, np.zeros(w.shape))
    np.testing.assert_array_equal(db, 0)
    with pytest.raises(ValueError, match="db must have shape"):
        G.grouped_backward(x, w, np.ones((2, 6, 1, 1)), 2, (0, 0), (1, 1), dx, db=np.empty(5))
    empty = np.empty((0, 4, 3, 3))
    assert G.grouped_forward(empty, w, np.zeros(6), 2, (0, 0), (1, 1),
                             np.empty((0, 6, 1, 1))).shape == (0, 6, 1, 1)


def test_grouped_kernels_reuse_their_scratch_across_units():
    """Each call's scratch serves many (sample, group) units in turn: what one
    unit leaves in its padded planes or its gradient lines must not reach the next."""
    rng = np.random.default_rng(5)
    n, groups, cg, og = 5, 15, 2, 3
    x = rng.standard_normal((n, groups * cg, 7, 6)) * 1e3
    for k, pad in (((3, 3), (1, 2)), ((2, 3), (0, 1))):
        wt = rng.standard_normal((groups * og, cg) + k)
        bias = rng.standard_normal(groups * og)
        oh, ow = 7 + 2 * pad[0] - k[0] + 1, 6 + 2 * pad[1] - k[1] + 1
        dy = rng.standard_normal((n, groups * og, oh, ow))
        y = G.grouped_forward(x, wt, bias, groups, pad, (1, 1), np.empty(dy.shape))
        y_ref = np.empty_like(y)
        G.grouped_forward_numpy(x, wt, bias, groups, *pad, 1, 1, y_ref)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-9)
        dx, db = np.empty_like(x), np.empty(groups * og)
        dw = G.grouped_backward(x, wt, dy, groups, pad, (1, 1), dx, db=db)
        dx_ref, dw_ref = np.empty_like(x), np.empty((n, groups, og, cg) + k)
        db_ref = np.empty((n, groups * og))
        G.grouped_backward_numpy(x, wt, dy, groups, *pad, 1, 1, dx_ref, dw_ref, db_ref)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(dw, dw_ref.sum(axis=0).reshape(wt.shape), rtol=1e-10,
                                   atol=1e-9)
        np.testing.assert_allclose(db, db_ref.sum(axis=0), rtol=1e-12, atol=1e-12)


def test_grouped_wrappers_reject_inconsistent_shapes():
    x = np.zeros((2, 4, 5, 5))
    w = np.zeros((6, 2, 3, 3))
    bad_calls = [
        (lambda: G.grouped_forward(x, np.zeros((6, 3, 3, 3)), np.zeros(6), 2, (0, 0), (1, 1),
                                   np.empty((2, 6, 3, 3))), "grouped: inconsistent shapes"),
        (lambda: G.grouped_forward(x, np.zeros((5, 2, 3, 3)), np.zeros(5), 2, (0, 0), (1, 1),
                                   np.empty((2, 5, 3, 3))), "grouped: inconsistent shapes"),
        (lambda: G.grouped_forward(x, w, np.zeros(6), 2, (-1, 0), (1, 1),
                                   np.empty((2, 6, 3, 3))), "grouped: inconsistent shapes"),
        (lambda: G.grouped_forward(x, w, np.zeros(5), 2, (0, 0), (1, 1),
                                   np.empty((2, 6, 3, 3))), "bias must have shape"),
        (lambda: G.grouped_forward(x, w, np.zeros(6), 2, (0, 0), (1, 1),
                                   np.empty((2, 6, 3, 6))[..., ::2]), "y must be C-contiguous"),
        (lambda: G.grouped_backward(x, w, np.zeros((2, 6, 3, 3)), 2, (0, 0), (1, 1),
                                    np.empty((2, 4, 5, 4))), "dx must be C-contiguous"),
    ]
    for call, message in bad_calls:
        with pytest.raises(ValueError, match=message):
            call()
