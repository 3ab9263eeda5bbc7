"""Conv2d and ConvTranspose2d against PyTorch, when it is installed (it is an
optional reference: without it these tests skip).

Drawn float64 layers must agree with ``torch.nn.functional`` to rounding, in
values and in every gradient, for each option (including 'same', output_padding
and ``forward(x, output_size)``, and dilations and paddings reaching past the
image, where Conv2d drops its dead taps); and every fast float32 path the 'auto' rules
pick on realistic shapes (each Winograd family, the batch-minor products, the
direct loops, the sub-pixel transposed convolution) must agree with PyTorch's
float64 result to float32 rounding of the output's scale. Both layers also
refuse (ValueError) exactly the drawn configurations PyTorch refuses."""
import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import (CONV_PATHS, CONVT_PATHS, conv_configs, conv_path, dead_tap_configs,
                     drawn_conv2d, drawn_conv_transpose2d, fits, seeds)
from nnzero.layers import Conv2d, ConvTranspose2d
from nnzero.shapes import conv_output_size, conv_transpose_output_size

F64 = np.float64
EXACT = dict(rtol=1e-10, atol=1e-12)


def _torch():
    return pytest.importorskip("torch")


def _run(torch, fn, x, weight, bias, dy):
    """fn's output and its gradients for x, weight and bias (None without), in float64."""
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(weight, dtype=torch.float64, requires_grad=True)
    bt = None if bias is None else torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    yt = fn(xt, wt, bt)
    if dy is None:
        return yt.detach().numpy(), None, None, None
    yt.backward(torch.tensor(dy, dtype=torch.float64))
    return (yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(),
            None if bt is None else bt.grad.numpy())


def _check(layer, x, y, dy, ref, **tol):
    """layer's forward y, and its backward for dy, against ``ref`` (y, dx, dw, db)."""
    np.testing.assert_allclose(y, ref[0], **tol)
    np.testing.assert_allclose(layer.backward(dy), ref[1], **tol)
    np.testing.assert_allclose(layer.weight.grad, ref[2], **tol)
    if layer.bias is not None:
        np.testing.assert_allclose(layer.bias.grad, ref[3], **tol)


# PyTorch warns that it copies the input for 'same' with an even kernel (speed only)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@given(cfg=st.one_of(conv_configs(), dead_tap_configs()))
def test_conv2d_matches_pytorch(cfg):
    torch = _torch()
    if not fits(cfg):
        return
    layer, x, rng = drawn_conv2d(cfg)
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    bias = None if layer.bias is None else layer.bias.data

    def fn(xt, wt, bt):
        return torch.nn.functional.conv2d(xt, wt, bt, cfg["stride"], cfg["padding"],
                                          cfg["dilation"], cfg["groups"])

    _check(layer, x, y, dy, _run(torch, fn, x, layer.weight.data, bias, dy), **EXACT)


@given(cfg=conv_configs(transposed=True), data=st.data())
def test_conv_transpose2d_matches_pytorch(cfg, data):
    """Every output_padding in range, and ``output_size`` against the module's
    own rule for it (``torch.nn.ConvTranspose2d.forward(x, output_size)``)."""
    torch = _torch()
    s, d = cfg["stride"], cfg["dilation"]
    op = tuple(data.draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d))
    drawn = drawn_conv_transpose2d(cfg, op)
    if drawn is None:
        return
    layer, x, rng = drawn
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    bias = None if layer.bias is None else layer.bias.data

    def fn(xt, wt, bt):
        return torch.nn.functional.conv_transpose2d(xt, wt, bt, s, cfg["padding"], op,
                                                    cfg["groups"], d)

    _check(layer, x, y, dy, _run(torch, fn, x, layer.weight.data, bias, dy), **EXACT)

    ref = torch.nn.ConvTranspose2d(cfg["c"], cfg["o"], cfg["kernel"], s, cfg["padding"], 0,
                                   cfg["groups"], cfg["bias"], d, dtype=torch.float64)
    ref.weight.data = torch.tensor(layer.weight.data)
    if cfg["bias"]:
        ref.bias.data = torch.tensor(layer.bias.data)
    plain = ConvTranspose2d(cfg["c"], cfg["o"], cfg["kernel"], s, cfg["padding"], 0,
                            cfg["groups"], cfg["bias"], d, dtype=F64, rng=0)
    plain.weight.data[...] = layer.weight.data
    if cfg["bias"]:
        plain.bias.data[...] = layer.bias.data
    # torch's rule: output_size picks output_padding in [0, stride)
    lo = [(size - 1) * si - 2 * p + di * (k - 1) + 1 for size, si, p, di, k in
          zip((cfg["h"], cfg["w"]), s, cfg["padding"], d, cfg["kernel"])]
    if any(m + si - 1 < 1 for m, si in zip(lo, s)):
        return
    want = tuple(data.draw(st.integers(max(m, 1), m + si - 1)) for m, si in zip(lo, s))
    yt = ref(torch.tensor(x), output_size=list(want)).detach().numpy()
    np.testing.assert_allclose(plain(x, output_size=want), yt, **EXACT)
    too_big = (lo[0] + s[0], want[1])
    with pytest.raises(ValueError):
        ref(torch.tensor(x), output_size=list(too_big))
    with pytest.raises(ValueError, match="ConvTranspose2d: requested an output size"):
        plain(x, output_size=too_big)


def _check_float32(layer, x, fn, path, rng):
    """layer takes ``path`` on x, and its float32 output and gradients come
    within 1e-5 of the float64 result's scale."""
    torch = _torch()
    y = layer(x)
    assert conv_path(layer._ctx.cache) == path
    assert y.dtype == np.float32
    dy = rng.standard_normal(y.shape).astype(np.float32)
    bias = None if layer.bias is None else layer.bias.data
    ref = _run(torch, fn, x, layer.weight.data, bias, dy)
    got = (y, layer.backward(dy), layer.weight.grad, None if bias is None else layer.bias.grad)
    for name, a, b in zip(("y", "dx", "dw", "db"), got, ref):
        if b is None:
            continue
        assert a.dtype == np.float32, name
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max(), err_msg=name)


def _ids(table):
    return [f"{path}-{'x'.join(map(str, shape))}" for path, shape in table]


@pytest.mark.parametrize("path,shape", CONV_PATHS, ids=_ids(CONV_PATHS))
def test_float32_conv2d_paths_match_pytorch(path, shape):
    torch = _torch()
    n, c, h, o, k, s, p, g = shape
    n = n or 4 * numba.get_num_threads()   # see CONV_PATHS
    rng = np.random.default_rng(sum(shape))
    layer = Conv2d(c, o, k, stride=s, padding=p, groups=g, rng=rng)
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)

    def fn(xt, wt, bt):
        return torch.nn.functional.conv2d(xt, wt, bt, s, p, 1, g)

    _check_float32(layer, x, fn, path, rng)


@pytest.mark.parametrize("path,shape", CONVT_PATHS, ids=_ids(CONVT_PATHS))
def test_float32_conv_transpose2d_paths_match_pytorch(path, shape):
    torch = _torch()
    n, c, h, o, k, s, p, op = shape
    rng = np.random.default_rng(sum(shape))
    layer = ConvTranspose2d(c, o, k, stride=s, padding=p, output_padding=op, rng=rng)
    x = rng.standard_normal((n, c, h, h)).astype(np.float32)

    def fn(xt, wt, bt):
        return torch.nn.functional.conv_transpose2d(xt, wt, bt, s, p, op)

    _check_float32(layer, x, fn, path, rng)


def _raises(fn, error):
    """Whether fn() raises ``error``; any other exception propagates (nnzero
    may raise only a ValueError here, PyTorch a RuntimeError)."""
    try:
        fn()
    except error:
        return True
    return False


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@given(cfg=conv_configs(), transposed=st.booleans(), data=st.data())
def test_refuses_exactly_what_pytorch_refuses(cfg, transposed, data):
    """Drawn configurations include kernels larger than the padded input and,
    for the transposed layer, output_padding out of range and padding that
    crops the whole output: nnzero raises a ValueError (in the constructor or
    the forward) exactly where PyTorch's forward raises."""
    torch = _torch()
    if transposed and isinstance(cfg["padding"], str):
        return
    s, d = cfg["stride"], cfg["dilation"]
    size = (data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5)))   # often too small
    x = np.random.default_rng(cfg["seed"]).standard_normal((cfg["n"], cfg["c"]) + size)
    xt = torch.tensor(x)
    wshape = ((cfg["c"], cfg["o"] // cfg["groups"]) if transposed
              else (cfg["o"], cfg["c"] // cfg["groups"])) + cfg["kernel"]
    wt = torch.zeros(wshape, dtype=torch.float64)
    if transposed:
        op = tuple(data.draw(st.integers(0, max(si, di))) for si, di in zip(s, d))

        def ours():
            ConvTranspose2d(cfg["c"], cfg["o"], cfg["kernel"], s, cfg["padding"], op,
                            cfg["groups"], dilation=d, dtype=F64, rng=0)(x)

        def theirs():
            torch.nn.functional.conv_transpose2d(xt, wt, None, s, cfg["padding"], op,
                                                 cfg["groups"], d)
    else:
        def ours():
            Conv2d(cfg["c"], cfg["o"], cfg["kernel"], s, cfg["padding"], d, cfg["groups"],
                   dtype=F64, rng=0)(x)

        def theirs():
            torch.nn.functional.conv2d(xt, wt, None, s, cfg["padding"], d, cfg["groups"])
    assert _raises(ours, ValueError) == _raises(theirs, RuntimeError)


FAR = st.sampled_from([1, 2, 3, 1000, 30000, 10 ** 9])


@given(transposed=st.booleans(), groups=st.integers(1, 2), kernel=st.integers(1, 3),
       stride=FAR, dilation=FAR, h=st.integers(1, 6), w=st.integers(1, 6), seed=seeds(),
       data=st.data())
def test_strides_paddings_and_dilations_far_past_the_image_match_pytorch(
        transposed, groups, kernel, stride, dilation, h, w, seed, data):
    """Both layers, with paddings drawn around the stride and the kernel's reach
    so that the output stays small: most of these run tap by tap
    (``conv_taps.py``), the rest by the ordinary paths."""
    torch = _torch()
    reach = dilation * (kernel - 1)
    middle = ((min(h, w) - 1) * stride + reach) // 2   # a transposed output of ~1 row
    candidates = [0, 1, stride - 1, stride, 2 * stride, reach // 2, reach, reach + stride]
    if transposed:
        candidates += [middle, max(0, middle - 1)]

    def small(padding):   # PyTorch's output size is at least 1x1 and at most 10**4 cells
        try:
            size = (conv_transpose_output_size((h, w), kernel, stride, padding, 0, dilation)
                    if transposed else conv_output_size((h, w), kernel, stride, padding,
                                                        dilation))
        except ValueError:
            return False
        return size[0] * size[1] <= 10 ** 4
    fitting = sorted({p for p in candidates if small(p)})
    if not fitting:
        return
    padding = data.draw(st.sampled_from(fitting))
    rng = np.random.default_rng(seed)
    c, o = 2 * groups, 3 * groups
    f = torch.nn.functional
    if transposed:
        layer = ConvTranspose2d(c, o, kernel, stride, padding, 0, groups, True, dilation,
                                dtype=F64, rng=rng)

        def fn(xt, wt, bt):
            return f.conv_transpose2d(xt, wt, bt, stride, padding, 0, groups, dilation)
    else:
        layer = Conv2d(c, o, kernel, stride, padding, dilation, groups, dtype=F64, rng=rng)

        def fn(xt, wt, bt):
            return f.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    x = rng.standard_normal((2, c, h, w))
    y = layer(x)
    dy = rng.standard_normal(y.shape)
    try:
        ref = _run(torch, fn, x, layer.weight.data, layer.bias.data, dy)
    except RuntimeError:   # PyTorch's own limits (32-bit sizes inside its col2im)
        return
    _check(layer, x, y, dy, ref, **EXACT)
