"""The column matrix of Conv2d and ConvTranspose2d: the memory budget that
splits a batch into chunks (and sends Winograd's buffers back to im2col), and
the bias riding in the products as a row of ones under the columns."""
import numpy as np
import pytest

from helpers import conv_algorithm, naive_conv2d, two_threads
from nnzero.functional import conv as F
from nnzero.layers import Conv2d, ConvTranspose2d

F64 = np.float64


@pytest.mark.parametrize("transposed,groups,algorithm", [
    (False, 1, "auto"), (False, 1, "im2col"), (False, 2, "auto"), (True, 2, "auto")])
def test_tiny_im2col_budget_gives_the_same_result(transposed, groups, algorithm):
    # groups=1: batch-minor columns ('auto', a 4x4 output) or one product per
    # sample with the bias riding in it as a ones row under the columns ('im2col')
    rng = np.random.default_rng(0)
    if transposed:
        layer = ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=groups, dtype=F64, rng=1)
    else:
        layer = Conv2d(4, 6, 3, stride=2, padding=1, groups=groups, dtype=F64, rng=1)
    x = rng.standard_normal((5, 4, 7, 7))
    with conv_algorithm(algorithm):
        y = layer(x)
        dy = rng.standard_normal(y.shape)
        dx = layer.backward(dy)
        grads = [p.grad.copy() for p in layer.parameters()]
        layer.zero_grad()
        old = F.set_im2col_budget(1)  # one sample per chunk
        try:
            y2 = layer(x)
            dx2 = layer.backward(dy)
        finally:
            F.set_im2col_budget(old)
    np.testing.assert_allclose(y2, y, rtol=1e-12)
    np.testing.assert_allclose(dx2, dx, rtol=1e-12)
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-12)


@pytest.mark.parametrize("transposed", [False, True])
def test_winograd_holds_its_tiles_and_products_within_the_budget(transposed):
    """Winograd keeps V (P, C', T) and M (P, O, T) at once: a budget that
    holds V but not V and M together sends the layer to im2col, where it
    gives the same answer (a wide 4x output: M is 4 times V)."""
    from nnzero.functional import winograd
    rng = np.random.default_rng(0)
    if transposed:   # kernel 4, stride 2: a 2x2 convolution to 4*O channels (sub-pixel)
        layer = ConvTranspose2d(2, 2, 4, stride=2, padding=1, dtype=F64, rng=1)
        shape, out, family, o = (3, 2, 6, 6), (7, 7), "F(3x3,2x2)", 8
    else:
        layer = Conv2d(2, 8, 3, padding=1, dtype=F64, rng=1)
        shape, out, family, o = (3, 2, 6, 6), (6, 6), "F(2x2,3x3)", 8
    x = rng.standard_normal(shape)
    both = winograd.buffer_bytes(shape, out, 8, family, o)
    tiles = winograd.buffer_bytes(shape, out, 8, family, 0)
    assert both == 5 * tiles
    results = []
    for budget in (both, both - 1):
        old = F.set_im2col_budget(budget)
        try:
            with conv_algorithm("winograd"):
                y = layer(x)
                cache = layer._ctx.cache
                wino = cache.wino if transposed else cache
                results.append((isinstance(wino, winograd.WinogradCache), y))
        finally:
            F.set_im2col_budget(old)
    assert [took for took, _ in results] == [True, False]
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-12, atol=1e-12)


def test_bias_rides_in_the_columns_as_a_row_of_ones():
    """to_columns(ones_row=True): the same columns plus a row of ones, so that
    [W | b] @ cols is the convolution with its bias and the weight gradient's
    product carries the bias gradient (checked against the naive reference)."""
    from nnzero.functional._columns import from_columns, to_columns
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 6, 5))
    geo = F.make_geometry((3, 2), (2, 1), (1, 0), (1, 2), 1)
    out = geo.out_size(6, 5)
    plain = to_columns(x, geo, out)
    wide = to_columns(x, geo, out, out=np.full((3, 13, plain.shape[2]), np.nan), ones_row=True)
    np.testing.assert_array_equal(wide[:, :12], plain)
    np.testing.assert_array_equal(wide[:, 12], 1.0)
    pointwise = F.make_geometry((1, 1), 1, 0, 1, 1)
    with pytest.raises(ValueError, match="pointwise convolution's ones row needs"):
        to_columns(x, pointwise, (6, 5), ones_row=True)
    copied = to_columns(x, pointwise, (6, 5), out=np.full((3, 3, 30), np.nan), ones_row=True)
    np.testing.assert_array_equal(copied[:, :2], x.reshape(3, 2, 30))
    np.testing.assert_array_equal(copied[:, 2], 1.0)
    w, b = rng.standard_normal((4, 2, 3, 2)), rng.standard_normal(4)
    y, cache = F.conv2d_forward(x, w, b, (2, 1), (1, 0), (1, 2))
    np.testing.assert_allclose(y, naive_conv2d(x, w, b, (2, 1), (1, 0), (1, 2), 1, out),
                               rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx, dw, db = F.conv2d_backward(dy, cache)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
    d = dy.reshape(3, 4, -1)
    np.testing.assert_allclose(dw, np.einsum("nol,nkl->ok", d, plain).reshape(w.shape),
                               rtol=1e-12)
    dcols = np.einsum("ok,nol->nkl", w.reshape(4, -1), d)
    np.testing.assert_allclose(dx, from_columns(dcols, x.shape, geo, out), rtol=1e-12)


@pytest.mark.parametrize("budget", [None, 1])
def test_widening_pointwise_layers_fold_their_bias_into_the_products(budget):
    """A 1x1 convolution with at least POINTWISE_FOLD times as many output
    channels as input ones copies x with a ones row so that its bias rides in
    the products; one that does not widen keeps x itself as its columns. Both
    against the naive reference, with the whole batch's columns kept and (a
    one-byte budget) rebuilt chunk by chunk in the backward pass. Planes of
    16x15 take im2col's products, not the batch-minor ones."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 16, 15))
    for o, folds in [(2 * F.POINTWISE_FOLD, True), (3, False)]:
        w, b = rng.standard_normal((o, 2, 1, 1)), rng.standard_normal(o)
        old = F.set_im2col_budget(budget) if budget else None
        try:
            y, cache = F.conv2d_forward(x, w, b)
            dy = rng.standard_normal(y.shape)
            dx, dw, db = F.conv2d_backward(dy, cache)
        finally:
            if budget:
                F.set_im2col_budget(old)
        if budget:
            assert cache.cols is None
        else:
            assert cache.cols.shape[1] == 2 + folds
            assert np.shares_memory(cache.cols, x) != folds
        np.testing.assert_allclose(y, naive_conv2d(x, w, b, (1, 1), (0, 0), (1, 1), 1, (16, 15)),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
        np.testing.assert_allclose(dw[:, :, 0, 0], np.einsum("nohw,nchw->oc", dy, x),
                                   rtol=1e-12)
        np.testing.assert_allclose(dx, np.einsum("oc,nohw->nchw", w[:, :, 0, 0], dy),
                                   rtol=1e-12, atol=1e-12)


def test_weight_product_is_a_times_b_transposed_in_either_orientation():
    """weight_product(a, b) = a @ b^T, stacked or not; with few rows in a
    against b's and a long sum it returns the transpose of b @ a^T (a view in
    column order), otherwise the product as written; with out= either way
    into out."""
    from nnzero.functional import _columns as C
    rng = np.random.default_rng(5)
    p = 3
    for q, length, reversed_ in [(C.REVERSED_ROW_RATIO * p, C.REVERSED_LENGTH_PER_ROW * p, True),
                                 (C.REVERSED_ROW_RATIO * p - 1, 200, False),
                                 (40, C.REVERSED_LENGTH_PER_ROW * p - 1, False)]:
        for stack in [(), (4,)]:
            a = rng.standard_normal(stack + (p, length))
            b = rng.standard_normal(stack + (q, length))
            got = C.weight_product(a, b)
            want = np.einsum("...pl,...ql->...pq", a, b)
            np.testing.assert_allclose(got, want, rtol=1e-12)
            assert got.shape == stack + (p, q)
            assert got.flags.c_contiguous != reversed_
            out = np.full(stack + (p, q), np.nan)
            assert C.weight_product(a, b, out=out) is out
            np.testing.assert_allclose(out, want, rtol=1e-12)
    big = C.REVERSED_MAX_ROWS + 1
    got = C.weight_product(np.ones((big, 64 * big)), np.ones((4 * big, 64 * big)))
    assert got.flags.c_contiguous


@pytest.mark.parametrize("kernel,stride,path", [
    (3, 2, "BatchMinorCache"),   # a 12x12 output: batch-minor columns
    (5, 1, "ConvCache"),         # a 24x24 output: one product per sample
])
def test_weight_gradient_by_the_reversed_product(kernel, stride, path):
    """Layers with few output channels against their column rows (16 against
    9 * 8 or 25 * 8) and long sums take weight_product's reversed branch; their
    weight and bias gradients against einsum over the columns."""
    from nnzero.functional._columns import to_columns
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 8, 24, 24))
    w, b = rng.standard_normal((4, 8, kernel, kernel)), rng.standard_normal(4)
    pad = kernel // 2
    y, cache = F.conv2d_forward(x, w, b, stride, pad)
    assert type(cache).__name__ == path
    dy = rng.standard_normal(y.shape)
    _, dw, db = F.conv2d_backward(dy, cache)
    geo = F.make_geometry((kernel, kernel), stride, pad, 1, 1)
    cols = to_columns(x, geo, y.shape[2:])
    np.testing.assert_allclose(dw.reshape(4, -1), np.einsum("nol,nkl->ok",
                               dy.reshape(6, 4, -1), cols), rtol=1e-12)
    np.testing.assert_allclose(db, dy.sum(axis=(0, 2, 3)), rtol=1e-12)


def _held_beyond_outputs(layer, x):
    """The most memory the forward and the backward pass each held at once
    (numpy's allocations, traced) beyond the array it returns, and the cache's
    type: the path the layer took."""
    import tracemalloc
    tracemalloc.start()
    try:
        y = layer(x)
        forward = tracemalloc.get_traced_memory()[1] - y.nbytes
        dy = np.ones_like(y)
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        dx = layer.backward(dy)
        backward = tracemalloc.get_traced_memory()[1] - start - dx.nbytes
    finally:
        tracemalloc.stop()
    return forward, backward, type(layer._ctx.cache).__name__


@pytest.mark.parametrize("make,plane,algorithm,path", [
    (lambda: Conv2d(32, 32, 3, padding=1, rng=1), 16, "im2col", "ConvCache"),
    (lambda: Conv2d(32, 32, 3, padding=1, rng=1), 4, "auto", "BatchMinorCache"),
    (lambda: ConvTranspose2d(32, 32, 4, stride=2, padding=1, rng=1), 8, "auto", "SubpixelCache"),
    (lambda: ConvTranspose2d(32, 32, 3, stride=2, padding=1, rng=1), 8, "auto",
     "ConvTransposeCache"),
])
def test_chunked_passes_hold_no_more_for_a_bigger_batch(make, plane, algorithm, path):
    """With a one-byte budget (one sample per chunk) what a pass holds beyond
    its result must not grow with the batch: 256 samples against 64, each
    pass within 64 KiB of the other (one sample's input is 2-32 KiB, these
    layers' weight gradients 36 and 64 KiB). On one thread, so that what is
    held at once does not depend on two threads' timing (split, their
    temporaries overlap or not: +-0.1 MiB). A backward pass that kept each
    chunk's share of the weight gradient until the end held 192 more of
    them."""
    from nnzero.kernels._pool import as_one_piece
    rng = np.random.default_rng(7)
    held = []
    old = F.set_im2col_budget(1)
    try:
        with conv_algorithm(algorithm):
            for n in (64, 256):
                x = rng.standard_normal((n, 32, plane, plane), dtype=np.float32)
                with as_one_piece():
                    make()(x)   # compiled and warmed outside the traced window
                    held.append(_held_beyond_outputs(make(), x))
    finally:
        F.set_im2col_budget(old)
    assert [took for _, _, took in held] == [path, path]
    (f64, b64, _), (f256, b256, _) = held
    assert f256 - f64 < 64 * 1024, (f64, f256)
    assert b256 - b64 < 64 * 1024, (b64, b256)


@two_threads
def test_chunks_hold_whole_pieces_for_every_thread(numba_threads):
    """A batch that runs in chunks takes a multiple of the thread count a
    chunk (7 samples' worth of budget on 2 threads: 6), so that no thread
    waits for the other's extra sample in every chunk (3 and 4 samples a
    thread took 1.25x the time of 3 and 3 on a 256 -> 256 layer); a batch
    that fits, or a budget below the thread count, is left as it is."""
    from nnzero.functional._columns import chunk_size
    numba_threads(2)
    old = F.set_im2col_budget(7 * 1000)
    try:
        assert chunk_size(20, 250, 1, 4) == 6      # 1000 bytes a sample
        assert chunk_size(7, 250, 1, 4) == 7       # the whole batch fits
        assert chunk_size(20, 250, 4, 4) == 1      # one sample's worth
        assert chunk_size(20, 250, 1, 4, limit=4000) == 4
        assert chunk_size(7, 250, 1, 4, limit=4000) == 7   # fits the budget: whole
        numba_threads(1)
        assert chunk_size(20, 250, 1, 4) == 7
    finally:
        F.set_im2col_budget(old)


@pytest.mark.parametrize("transposed", [False, True])
def test_per_sample_paths_chunk_within_their_own_limit(transposed, monkeypatch):
    """Past the budget, the one-product-per-sample paths (im2col's, the
    sub-pixel layer's) take chunks of at most PER_SAMPLE_CHUNK_BYTES of
    columns: here 2 samples' worth under a budget of 5, so the pool's column
    buffer holds 2 samples, and the layer gives the whole batch's answer."""
    from nnzero.functional import _columns, _scratch, subpixel
    rng = np.random.default_rng(8)
    if transposed:
        layer = ConvTranspose2d(4, 3, 4, stride=2, padding=1, dtype=F64, rng=1)
        x, path, per = rng.standard_normal((9, 4, 6, 6)), "SubpixelCache", (4 * 4 + 4 * 3) * 49 * 8
    else:
        layer = Conv2d(4, 3, 3, padding=1, dtype=F64, rng=1)
        x, path, per = rng.standard_normal((9, 4, 12, 12)), "ConvCache", (36 + 1) * 144 * 8
    with conv_algorithm("im2col" if not transposed else "auto"):
        y = layer(x)
        dy = rng.standard_normal(y.shape)
        dx = layer.backward(dy)
        grads = [p.grad.copy() for p in layer.parameters()]
        layer.zero_grad()
        monkeypatch.setattr(F, "PER_SAMPLE_CHUNK_BYTES", 2 * per)
        monkeypatch.setattr(subpixel, "PER_SAMPLE_CHUNK_BYTES", 2 * per)
        old = F.set_im2col_budget(5 * per)
        _scratch.release_transients()
        try:
            y2 = layer(x)
            assert type(layer._ctx.cache).__name__ == path and layer._ctx.cache.cols is None
            dx2 = layer.backward(dy)
        finally:
            F.set_im2col_budget(old)
    assert _scratch._pool()[("cols", np.dtype(F64))].nbytes <= 2 * per
    np.testing.assert_allclose(y2, y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx2, dx, rtol=1e-12, atol=1e-12)
    for p, g in zip(layer.parameters(), grads):
        np.testing.assert_allclose(p.grad, g, rtol=1e-12, atol=1e-12)
    assert _columns.PER_SAMPLE_CHUNK_BYTES == 64 * 2 ** 20
