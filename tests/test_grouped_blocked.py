"""Grouped convolutions by blocks of channels in registers
(``kernels/grouped_blocked.py``): the kernels against their NumPy twin, the
gradients through Conv2d, the dispatch, and the vectorised compilation."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import compiled_vectorised, grouped_arrays, naive_conv2d, seeds, whole_kernel
from nnzero import gradcheck
from nnzero.functional import conv as F
from nnzero.functional import direct
from nnzero.functional.direct import DirectCache
from nnzero.kernels import grouped as G
from nnzero.kernels import grouped_blocked as GB
from nnzero.kernels._jit import WIDE_VECTORS
from nnzero.layers import Conv2d

pytestmark = pytest.mark.usefixtures("split_every_kernel_call")  # see conftest.py


def _twin(x, w, bias, dy, groups, p, d):
    """(y, dx, dw) by ``grouped.py``'s NumPy twin."""
    y = np.empty(dy.shape, x.dtype)
    G.grouped_forward_numpy(x, w, bias, groups, *p, *d, y)
    dx = np.empty_like(x)
    units = np.zeros((x.shape[0], groups, w.shape[0] // groups) + w.shape[1:], x.dtype)
    G.grouped_backward_numpy(x, w, dy, groups, *p, *d, dx, units, np.empty((0, 0), x.dtype))
    return y, dx, units.sum(axis=0).reshape(w.shape)


# Og of 16 and 32 take the channels-last weight gradient (``_dots16``, or
# ``_dots16x8`` with Cg of 8 or 16 where the loops have 512-bit vectors, as
# Og of 8 with Cg of 8 or 16 take ``_dots8`` there), the others the
# channels-first one; any window grid, even one reaching far past
# the image (the planes then share less of their padding, see ``_geometry``).
@given(n=st.integers(1, 3), groups=st.integers(1, 3), cg=st.sampled_from([4, 8, 12, 16]),
       og=st.sampled_from([4, 8, 12, 16, 32]), h=st.integers(1, 8), w=st.integers(1, 8),
       k=st.sampled_from([(3, 3), (2, 3), (3, 1), (1, 2), (5, 5), (4, 2)]),
       p=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       d=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       out=st.tuples(st.integers(1, 9), st.integers(1, 9)), serial=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=seeds())
def test_blocked_kernels_equal_numpy_twin(n, groups, cg, og, h, w, k, p, d, out, serial, dtype,
                                          seed):
    x, wt, bias, dy = grouped_arrays(seed, n, groups, cg, og, h, w, k, out, dtype)
    y = GB.blocked_forward(x, wt, bias, groups, p, d, np.full(dy.shape, np.nan, dtype), serial)
    dx = np.full(x.shape, np.nan, dtype)
    db = np.full(wt.shape[0], np.nan, dtype)
    dw = GB.blocked_backward(x, wt, dy, groups, p, d, dx, serial, db=db)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-11)
    for got, expected in zip((y, dx, dw, db), _twin(x, wt, bias, dy, groups, p, d)
                             + (dy.sum(axis=(0, 2, 3)),)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, **tol)


@pytest.mark.parametrize("cg,og,k", [(8, 8, (3, 3)), (16, 16, (2, 3)), (8, 32, (3, 3)),
                                      (4, 16, (3, 3)), (12, 8, (3, 3)), (8, 8, (3, 2))])
def test_blocked_kernels_sum_across_chunk_edges(cg, og, k):
    """Planes longer than a chunk of positions (``CHUNK``): every loop runs
    over several chunks, with real positions at their edges (the drawn
    shapes of the test above fit in one). Each form of the weight gradient's
    sums (``grouped_dots.py``) against the twin, in float64."""
    out = (23 - k[0], 23 - k[1])   # padding 1 on a 20x20 image
    x, wt, bias, dy = grouped_arrays(11, 3, 2, cg, og, 20, 20, k, out, np.float64)
    rows, wp = GB._geometry(x, wt, dy.shape[2:], (1, 1), (1, 1))[:2]
    assert 3 * rows * wp > GB.CHUNK
    y = GB.blocked_forward(x, wt, bias, 2, (1, 1), (1, 1), np.empty(dy.shape))
    dx = np.empty_like(x)
    dw = GB.blocked_backward(x, wt, dy, 2, (1, 1), (1, 1), dx)
    for got, expected in zip((y, dx, dw), _twin(x, wt, bias, dy, 2, (1, 1), (1, 1))):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-11)


def test_blocked_kernels_keep_samples_and_groups_apart():
    """The samples of a call lie end to end in one plane per group, sharing
    padding: large values in one sample or group must not reach another's
    outputs or gradients (padding 2 on a 3x3 kernel reads two rows and
    columns past the image, into the next sample's and row's padding)."""
    rng = np.random.default_rng(3)
    n, groups, cg, og = 4, 3, 8, 16
    x = rng.standard_normal((n, groups * cg, 6, 5))
    x[1] *= 1e6
    x[:, cg:2 * cg] *= 1e3
    wt = rng.standard_normal((groups * og, cg, 3, 3))
    bias = rng.standard_normal(groups * og)
    for pad in ((2, 2), (0, 3), (1, 0)):
        oh, ow = 6 + 2 * pad[0] - 2, 5 + 2 * pad[1] - 2
        dy = rng.standard_normal((n, groups * og, oh, ow))
        dy[2] *= 1e6
        y = GB.blocked_forward(x, wt, bias, groups, pad, (1, 1), np.empty(dy.shape))
        dx, db = np.empty_like(x), np.empty(groups * og)
        dw = GB.blocked_backward(x, wt, dy, groups, pad, (1, 1), dx, db=db)
        np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
        y_ref, dx_ref, dw_ref = _twin(x, wt, bias, dy, groups, pad, (1, 1))
        for b in range(n):   # each sample to its own scale
            np.testing.assert_allclose(y[b], y_ref[b], rtol=1e-12,
                                       atol=1e-12 * np.abs(y_ref[b]).max())
            np.testing.assert_allclose(dx[b], dx_ref[b], rtol=1e-12,
                                       atol=1e-12 * np.abs(dx_ref[b]).max())
        np.testing.assert_allclose(dw, dw_ref, rtol=1e-10, atol=1e-10 * np.abs(dw_ref).max())


@st.composite
def blocked_configs(draw):
    groups = draw(st.integers(2, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(2, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    span = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    return dict(n=draw(st.integers(1, 2)), groups=groups, c=groups * 4,
                o=groups * draw(st.sampled_from([4, 16])), kernel=kernel, dilation=dilation,
                padding=draw(st.one_of(st.sampled_from(["same", "valid"]),
                                       st.tuples(st.integers(0, 2), st.integers(0, 2)))),
                bias=draw(st.booleans()), h=draw(st.integers(span[0], span[0] + 3)),
                w=draw(st.integers(span[1], span[1] + 3)), seed=draw(seeds()))


@given(cfg=blocked_configs())
def test_blocked_gradients_and_values(cfg):
    rng = np.random.default_rng(cfg["seed"])
    layer = Conv2d(cfg["c"], cfg["o"], cfg["kernel"], 1, cfg["padding"], cfg["dilation"],
                   groups=cfg["groups"], bias=cfg["bias"], dtype=np.float64, rng=rng)
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    geo = F.make_geometry(cfg["kernel"], 1, cfg["padding"], cfg["dilation"], cfg["groups"])
    assert direct.blocked(geo, cfg["c"], cfg["o"], geo.out_size(cfg["h"], cfg["w"]))
    with whole_kernel():
        _, cache = F.conv2d_forward(x, layer.weight.data, None, 1, cfg["padding"],
                                    cfg["dilation"], cfg["groups"])
        assert isinstance(cache, DirectCache)
        gradcheck(layer, x)
    expected = naive_conv2d(x, layer.weight.data, None if layer.bias is None else
                            layer.bias.data, geo.stride, geo.pad_before, geo.dilation,
                            cfg["groups"], geo.out_size(cfg["h"], cfg["w"]))
    np.testing.assert_allclose(layer(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("c,o,groups,kernel,stride,expected", [
    (32, 32, 8, (3, 3), 1, True),      # 4 channels a group
    (64, 128, 4, (3, 3), 1, True),     # 16 in, 32 out
    (64, 64, 2, (5, 3), 1, True),      # 32 channels, any kernel
    (24, 24, 8, (3, 3), 1, False),     # 3 channels a group
    (32, 48, 8, (3, 3), 1, False),     # 6 output channels a group
    (32, 32, 8, (3, 3), 2, False),     # strided
    (32, 32, 8, (1, 1), 1, False),     # pointwise: im2col's product reads x itself
    (32, 32, 1, (3, 3), 1, False),     # not grouped
    (32, 32, 32, (3, 3), 1, False),    # depthwise: its own loops
])
def test_blocked_dispatch_rule(c, o, groups, kernel, stride, expected):
    geo = F.make_geometry(kernel, stride, 1, 1, groups)
    assert direct.blocked(geo, c, o, (8, 8)) == expected
    if expected:
        assert direct.applicable(geo, c, o, (8, 8))


def test_blocked_wrappers_reject_channels_not_in_blocks_and_bad_shapes():
    x = np.zeros((2, 8, 5, 5))
    with pytest.raises(ValueError, match="multiples of 4, got 2 in and 4 out"):
        GB.blocked_forward(np.zeros((2, 8, 5, 5)), np.zeros((16, 2, 3, 3)), np.zeros(16), 4,
                           (0, 0), (1, 1), np.empty((2, 16, 3, 3)))
    with pytest.raises(ValueError, match="grouped: inconsistent shapes"):
        GB.blocked_forward(x, np.zeros((8, 8, 3, 3)), np.zeros(8), 2, (0, 0), (1, 1),
                           np.empty((2, 8, 3, 3)))
    with pytest.raises(ValueError, match="bias must have shape"):
        GB.blocked_forward(x, np.zeros((8, 4, 3, 3)), np.zeros(4), 2, (0, 0), (1, 1),
                           np.empty((2, 8, 3, 3)))
    with pytest.raises(ValueError, match="dx must be C-contiguous"):
        GB.blocked_backward(x, np.zeros((8, 4, 3, 3)), np.zeros((2, 8, 3, 3)), 2, (0, 0),
                            (1, 1), np.empty((2, 8, 5, 6))[..., ::2])


def test_blocked_wrappers_handle_empty_inputs():
    """An empty batch hands back the caller's output untouched; an empty
    output grid gives zero gradients (the values of a sample are checked
    against the twin above)."""
    w = np.ones((8, 4, 3, 3))
    out = np.empty((0, 8, 1, 1))
    assert GB.blocked_forward(np.empty((0, 8, 3, 3)), w, np.zeros(8), 2, (0, 0), (1, 1),
                              out) is out
    dx, db = np.full((2, 8, 3, 3), np.nan), np.full(8, np.nan)
    dw = GB.blocked_backward(np.ones((2, 8, 3, 3)), w, np.empty((2, 8, 0, 1)), 2, (0, 0),
                             (1, 1), dx, db=db)
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_array_equal(dw, np.zeros(w.shape))
    np.testing.assert_array_equal(db, 0)


@pytest.mark.skipif(not GB.JIT_ENABLED, reason="NNZERO_JIT=0: the NumPy twin runs")
def test_blocked_kernels_run_only_what_was_compiled_vectorised(monkeypatch):
    """Every overload the calls use is one ``compile_vectorized`` compiled,
    and numba's SLP flag is left as it was (``helpers.compiled_vectorised``)."""
    def run():
        for dtype in (np.float32, np.float64):
            for n, serial in ((1, False), (3, False), (3, True)):
                x = np.ones((n, 8, 6, 6), dtype)
                w = np.ones((16, 4, 3, 3), dtype)
                y = GB.blocked_forward(x, w, np.zeros(16, dtype), 2, (1, 1), (1, 1),
                                       np.empty((n, 16, 6, 6), dtype), serial)
                np.testing.assert_allclose(y[:, :, 2:4, 2:4], 4 * 9)
                GB.blocked_backward(x, w, y, 2, (1, 1), (1, 1), np.empty_like(x), serial)
    kernels = (GB._blocked_forward_range, GB._blocked_backward_range)
    assert compiled_vectorised(monkeypatch, GB, kernels, run) == 4


def test_blocked_kernels_run_a_large_batch_in_blocks_of_samples(monkeypatch):
    """Past ``SCRATCH_BYTES`` of scratch a call runs its samples a few at a
    time: the same values, and the weight gradient summed over the blocks."""
    x, wt, bias, dy = grouped_arrays(7, 5, 2, 8, 16, 6, 5, (3, 3), (6, 5), np.float64)
    whole_y = GB.blocked_forward(x, wt, bias, 2, (1, 1), (1, 1), np.empty(dy.shape))
    whole_dx = np.empty_like(x)
    whole_dw = GB.blocked_backward(x, wt, dy, 2, (1, 1), (1, 1), whole_dx)
    rows, wp = GB._geometry(x, wt, (6, 5), (1, 1), (1, 1))[:2]
    assert (rows, wp) == (7, 6)            # the padding shared below and to the right
    per_sample = 16 * rows * wp * 8        # Og channels of a sample's region, float64
    assert GB._sample_chunks(5, 16, rows * wp, 8) == [(0, 5)]
    monkeypatch.setattr(GB, "SCRATCH_BYTES", 2 * per_sample + 1)
    assert GB._sample_chunks(5, 16, rows * wp, 8) == [(0, 2), (2, 4), (4, 5)]
    y = GB.blocked_forward(x, wt, bias, 2, (1, 1), (1, 1), np.empty(dy.shape))
    dx, db = np.empty_like(x), np.empty(32)
    dw = GB.blocked_backward(x, wt, dy, 2, (1, 1), (1, 1), dx, db=db)
    for got, expected in zip((y, dx, dw), (whole_y, whole_dx, whole_dw)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)   # over the blocks
    for got, expected in zip((y, dx, dw), _twin(x, wt, bias, dy, 2, (1, 1), (1, 1))):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-11)


@pytest.mark.skipif(not WIDE_VECTORS, reason="numba compiles for a CPU without AVX-512")
def test_blocked_sums_use_512_bit_registers_where_the_cpu_has_them():
    """``compile_vectorized(..., wide=True)`` lifts LLVM's 256-bit preference for
    what it compiles: ``_sums`` compiled afresh that way (numba shows no
    machine code for a kernel from its cache) holds its sums in zmm
    registers, and compiled without ``wide`` it does not. If a numba or
    llvmlite upgrade dropped the attribute, the kernels would still be right
    but slower (1.3x on conv_resnext), and this test says so."""
    import numba

    from nnzero.kernels._jit import compile_vectorized
    args = (np.ones((4, 200), np.float32), np.ones((4, 9, 8), np.float32),
            np.arange(9, dtype=np.int64), np.empty((8, 128), np.float32), 0, 128)
    registers = {}
    for wide in (True, False):
        fresh = numba.njit(GB._sums.py_func, fastmath={"contract"}, nogil=True)
        compile_vectorized(fresh, args, wide=wide)
        fresh(*args)
        np.testing.assert_allclose(args[3], 4 * 9)
        registers[wide] = "".join(fresh.inspect_asm().values()).count("zmm")
    assert registers[True] > 0 and registers[False] == 0
