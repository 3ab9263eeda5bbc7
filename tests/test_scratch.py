"""The convolutions' scratch buffers: the columns a layer's cache keeps stay
the layer's own, everything else comes from one pool per Python thread that
all layers share (``functional/_scratch.py``)."""
import threading
import tracemalloc

import numpy as np
import pytest

from helpers import conv_algorithm
from nnzero.functional import _scratch
from nnzero.functional import conv as F
from nnzero.layers import Conv2d, ConvTranspose2d


def test_transient_buffers_are_views_of_one_pool_per_thread():
    ws = {}
    _scratch.release_transients()
    a = _scratch.transient(ws, "t", (4, 5), np.float32)
    b = _scratch.transient(ws, "t", (2, 3), np.float32)
    assert np.shares_memory(a, b) and b.shape == (2, 3) and b.flags.c_contiguous
    assert _scratch.transient_bytes() == 4 * 5 * 4
    c = _scratch.transient(ws, "t", (30,), np.float32)            # grows the pool
    assert not np.shares_memory(a, c) and _scratch.transient_bytes() == 30 * 4
    assert not np.shares_memory(c, _scratch.transient(ws, "t", (30,), np.float64))
    assert not np.shares_memory(c, _scratch.transient(ws, "u", (30,), np.float32))
    assert not ws   # the layer's own dict holds none of them
    other = []
    thread = threading.Thread(target=lambda: other.append(
        _scratch.transient({}, "t", (30,), np.float32)))
    thread.start()
    thread.join()
    assert not np.shares_memory(c, other[0])
    # without a workspace (the functional API) every buffer is fresh
    assert not np.shares_memory(_scratch.transient(None, "t", (30,), np.float32), c)
    assert _scratch.release_transients() == 30 * 4 + 30 * 8 + 30 * 4
    assert _scratch.transient_bytes() == 0


def _conv(seed):
    return Conv2d(8, 8, 3, padding=1, dtype=np.float64, rng=seed)


def _subpixel(seed):
    return ConvTranspose2d(8, 8, 4, stride=2, padding=1, dtype=np.float64, rng=seed)


def _col2im(seed):
    return ConvTranspose2d(8, 8, 3, stride=2, padding=1, dtype=np.float64, rng=seed)


@pytest.mark.parametrize("make,plane,algorithm,budget,path", [
    (_conv, 12, "im2col", None, "ConvCache"),
    (_conv, 12, "im2col", 1, "ConvCache"),
    (_conv, 4, "auto", None, "BatchMinorCache"),
    (_conv, 4, "auto", 1, "BatchMinorCache"),
    (_conv, 12, "winograd", None, "WinogradCache"),   # Winograd never runs in chunks
    (_subpixel, 6, "auto", None, "SubpixelCache"),
    (_subpixel, 6, "auto", 1, "SubpixelCache"),
    (_col2im, 6, "auto", None, "ConvTransposeCache"),
    (_col2im, 6, "auto", 1, "ConvTransposeCache"),
])
def test_another_layer_between_forward_and_backward_changes_nothing(make, plane, algorithm,
                                                                    budget, path):
    """Layer A's forward, then layer B's forward and backward, then A's
    backward: A's gradients equal those of A alone. A buffer A's cache keeps
    taken from the shared pool would have been overwritten by B, which has
    the same shapes and so asks for every buffer by the same name and size.
    With the whole batch's columns kept, and (a one-byte budget) rebuilt by
    chunks."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8, plane, plane))
    old = F.set_im2col_budget(budget) if budget else None
    try:
        with conv_algorithm(algorithm):
            alone = make(1)
            y = alone(x)
            assert type(alone._ctx.cache).__name__ == path
            dy = rng.standard_normal(y.shape)
            dx = alone.backward(dy)
            a, b = make(1), make(2)
            np.testing.assert_array_equal(a(x), y)
            b.backward(np.ones_like(b(x + 1)))
            np.testing.assert_array_equal(a.backward(dy), dx)
    finally:
        if budget:
            F.set_im2col_budget(old)
    for got, want in zip(a.parameters(), alone.parameters()):
        np.testing.assert_array_equal(got.grad, want.grad)


def test_a_stack_of_layers_holds_one_set_of_transient_buffers():
    """Four layers whose batches run in chunks hold, after a training step,
    what one such layer holds plus their own cached inputs: a chunk's columns
    and their gradient (2.25 MiB each here) are made once, not once per layer
    (before the pool, with chunks of 3 samples, four layers held 17.4 MB and
    one 3.6)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 16, 32, 32), dtype=np.float32)   # 1 MiB per layer's input

    def step(layers):
        h = x
        for layer in layers:
            h = layer(h)
        d = np.ones_like(h)
        for layer in reversed(layers):
            d = layer.backward(d)
        assert type(layers[0]._ctx.cache).__name__ == "ConvCache"
        assert layers[0]._ctx.cache.cols is None   # in chunks

    old = F.set_im2col_budget(5 * 2 ** 19)   # 4 samples' columns a chunk: 2.25 of 9.0 MiB
    held = []
    try:
        with conv_algorithm("im2col"):
            step([Conv2d(16, 16, 3, padding=1, rng=0)])   # compiled outside the traced window
            for depth in (1, 4):
                layers = [Conv2d(16, 16, 3, padding=1, rng=i) for i in range(depth)]
                _scratch.release_transients()
                tracemalloc.start()
                try:
                    step(layers)
                    held.append(tracemalloc.get_traced_memory()[0])
                finally:
                    tracemalloc.stop()
    finally:
        F.set_im2col_budget(old)
    one, four = held
    extra_inputs = 3 * x.nbytes   # layers 2 to 4 keep their inputs in their caches
    assert one > 4 * 2 ** 20, one   # the pool's columns and their gradient (4.5 MiB)
    assert four - one < extra_inputs + 2 ** 20, (one, four)


@pytest.mark.parametrize("make,plane,algorithm,path", [
    (_conv, 12, "im2col", "ConvCache"),
    (_conv, 4, "auto", "BatchMinorCache"),
    (_subpixel, 6, "auto", "SubpixelCache"),
])
def test_a_layer_in_eval_mode_keeps_no_columns(make, plane, algorithm, path):
    """In eval mode the forward pass's columns come from the shared pool and
    the cache keeps none (in training mode these layers keep the whole
    batch's); a backward pass then rebuilds them and gives the training-mode
    gradients."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 8, plane, plane))
    with conv_algorithm(algorithm):
        train, infer = make(1), make(1).eval()
        y = train(x)
        assert type(train._ctx.cache).__name__ == path and train._ctx.cache.cols is not None
        dy = rng.standard_normal(y.shape)
        dx = train.backward(dy)
        np.testing.assert_array_equal(infer(x), y)
        assert type(infer._ctx.cache).__name__ == path and infer._ctx.cache.cols is None
        assert "cols" not in infer._workspace
        make(2).eval()(x + 1)   # the same layer again, over the pool's columns
        np.testing.assert_allclose(infer.backward(dy), dx, rtol=1e-12, atol=1e-12)
    for got, want in zip(infer.parameters(), train.parameters()):
        np.testing.assert_allclose(got.grad, want.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make,shape,algorithm,family", [
    (lambda s: Conv2d(16, 16, 3, padding=1, dtype=np.float64, rng=s), (8, 16, 16, 16), "auto",
     "F(4x4,3x3)"),
    (_conv, (6, 8, 12, 12), "winograd", "F(2x2,3x3)"),
    (lambda s: Conv2d(8, 8, 4, stride=2, padding=1, dtype=np.float64, rng=s), (6, 8, 12, 12),
     "winograd", "F(4x4,2x2)/2"),
    (_subpixel, (6, 8, 6, 6), "winograd", "F(3x3,2x2)"),   # the sub-pixel transposed layer
])
def test_winograd_in_eval_mode_keeps_no_tiles(make, shape, algorithm, family):
    """In eval mode Winograd's transformed input V comes from the shared pool
    and the cache keeps x instead; a backward pass transforms the tiles again
    (another layer has written over the pool's since) and gives the
    training-mode gradients."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    with conv_algorithm(algorithm):
        train, infer = make(1), make(1).eval()
        y = train(x)
        dy = rng.standard_normal(y.shape)
        dx = train.backward(dy)
        np.testing.assert_array_equal(infer(x), y)
        kept, cache = train._ctx.cache, infer._ctx.cache
        kept, cache = getattr(kept, "wino", kept), getattr(cache, "wino", cache)
        assert cache.family == family and kept.family == family
        assert kept.v is not None and kept.x is None
        assert cache.v is None and cache.x is not None
        assert "wino_v" not in infer._workspace
        make(2).eval()(x + 1)   # the same layer again, over the pool's tiles
        np.testing.assert_allclose(infer.backward(dy), dx, rtol=1e-12, atol=1e-12)
    for got, want in zip(infer.parameters(), train.parameters()):
        np.testing.assert_allclose(got.grad, want.grad, rtol=1e-12, atol=1e-12)
