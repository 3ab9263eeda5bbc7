"""Small convolution calls run whole on the calling thread
(``functional/_threads.py: whole_if_small``): below ``MIN_SPLIT_MACS``
multiply-adds a call keeps BLAS at one thread, never hands work to the pool,
takes the path it would take on one thread, and gives the split answer; the
direct loops of grouped layers keep the split.

The rest of the suite runs with the threshold at 0 (``conftest.py``); these
tests set it themselves."""
import threading

import numba
import numpy as np
import pytest
from hypothesis import given
from threadpoolctl import threadpool_limits

from helpers import (CONV_PATHS, CONVT_PATHS, blas_threads, conv_configs, conv_path,
                     drawn_conv2d, drawn_conv_transpose2d, fits, two_threads)
from nnzero.functional import _threads
from nnzero.kernels import _pool
from nnzero.layers import Conv2d, ConvTranspose2d

F64 = np.float64
WHOLE = 1 << 62   # every call below it
@pytest.fixture
def threshold(monkeypatch):
    """``threshold(macs)`` sets ``_threads.MIN_SPLIT_MACS`` for this test."""
    return lambda macs: monkeypatch.setattr(_threads, "MIN_SPLIT_MACS", macs)


@pytest.fixture
def pool_calls(monkeypatch):
    """A list that gets one entry per hand-off to the pool (``_pool.workers``)."""
    calls = []
    real = _pool.workers

    def counted(count):
        calls.append(count)
        return real(count)

    monkeypatch.setattr(_pool, "workers", counted)
    return calls


def test_a_small_call_holds_blas_to_one_thread_and_keeps_every_split_inline(
        threshold, split_every_batch):
    threshold(split_every_batch)
    before = blas_threads()
    me = threading.get_ident()
    with _threads.whole_if_small(split_every_batch - 1):
        assert _threads.inside_piece()
        assert _threads.piece_bounds(10) == [0, 10]
        assert _threads.batch_pieces(4, lambda lo, hi: (lo, hi, threading.get_ident())) == [
            (0, 4, me)]
        assert blas_threads() == [1] * len(before)
    assert not _threads.inside_piece()
    assert blas_threads() == before
    with _threads.whole_if_small(split_every_batch):   # at the threshold: nothing changes
        assert not _threads.inside_piece()
        assert blas_threads() == before


def test_a_small_call_that_raises_gives_back_blas_and_the_split(threshold):
    threshold(WHOLE)
    before = blas_threads()
    with pytest.raises(KeyError):
        with _threads.whole_if_small(0):
            raise KeyError("inside")
    assert not _threads.inside_piece()
    assert blas_threads() == before


def _layer(transposed, shape, rng):
    n, c, h, o, k, s, p, last = shape
    n = n or 4 * numba.get_num_threads()   # see CONV_PATHS
    if transposed:
        layer = ConvTranspose2d(c, o, k, s, p, output_padding=last, dtype=F64, rng=rng)
    else:
        layer = Conv2d(c, o, k, s, p, groups=last, dtype=F64, rng=rng)
    return layer, rng.standard_normal((n, c, h, h))


def _run(layer, x, dy_seed):
    y = layer(x)
    dy = np.random.default_rng(dy_seed).standard_normal(y.shape)
    layer.zero_grad()
    dx = layer.backward(dy)
    bias = None if layer.bias is None else layer.bias.grad.copy()
    return y, dx, layer.weight.grad.copy(), bias, conv_path(layer._ctx.cache)


def _same(a, b, exact=False):
    for u, v in zip(a[:4], b[:4]):
        if u is None:
            assert v is None
        elif exact:
            np.testing.assert_array_equal(u, v)
        else:   # other pieces' products, perhaps another path: float64 rounding apart
            np.testing.assert_allclose(u, v, rtol=1e-9, atol=1e-9 * np.abs(v).max())


@pytest.mark.parametrize("transposed,path,shape",
                         [(False,) + row for row in CONV_PATHS if row[0] != "direct"]
                         + [(True,) + row for row in CONVT_PATHS])
def test_every_path_run_whole_is_a_one_thread_run_and_gives_the_split_answer(
        threshold, pool_calls, numba_threads, transposed, path, shape):
    """Run whole, a layer takes the path, and gets the very values, that it
    gets with numba and BLAS on one thread (F(4x4, ...) then needs 4 samples in
    all, not per thread, so that a 4-sample batch-minor row goes to F(4x4, 3x3))."""
    layer, x = _layer(transposed, shape, np.random.default_rng(0))
    threshold(0)
    split = _run(layer, x, 1)
    threads = numba.get_num_threads()
    numba_threads(1)
    with threadpool_limits(1, "blas"):
        one = _run(layer, x, 1)
    numba_threads(threads)
    threshold(WHOLE)
    pool_calls.clear()
    whole = _run(layer, x, 1)
    assert pool_calls == []
    assert whole[4] == one[4]
    _same(whole, one, exact=True)
    _same(whole, split)


@two_threads
@pytest.mark.parametrize("shape", [shape for path, shape in CONV_PATHS if path == "direct"])
def test_the_direct_loops_split_at_every_size(threshold, pool_calls, numba_threads, shape):
    """Grouped and depthwise layers on grouped.py's and the depthwise loops
    measured slower run whole even at 0.9 M multiply-adds: they keep the
    split (the blocked loops follow the rule: CONV_PATHS's "blocked" row is
    in the test above)."""
    threshold(WHOLE)
    numba_threads(2)
    layer, x = _layer(False, shape, np.random.default_rng(0))
    pool_calls.clear()
    y = layer(x)
    assert pool_calls and conv_path(layer._ctx.cache) == "direct"
    pool_calls.clear()
    layer.backward(np.ones_like(y))
    assert pool_calls


@two_threads
def test_the_default_threshold_splits_large_calls_only(threshold, pool_calls, numba_threads,
                                                       split_every_batch):
    threshold(split_every_batch)
    numba_threads(2)
    rng = np.random.default_rng(0)
    layer = Conv2d(16, 16, 3, padding=1, dtype=F64, rng=rng)
    per_sample = 16 * 16 * layer.weight.data.size   # OH*OW times O*C*KH*KW
    assert 8 * per_sample < split_every_batch <= 16 * per_sample
    for n, splits in ((8, False), (16, True)):
        pool_calls.clear()
        y = layer(rng.standard_normal((n, 16, 16, 16)))
        layer.backward(np.ones_like(y))
        assert bool(pool_calls) is splits, n


@two_threads
def test_the_lanes_loops_count_their_calls_four_times(threshold, pool_calls, numba_threads,
                                                      split_every_batch):
    """A depthwise call on the lanes loops weighs LANES_WORK times its
    multiply-adds against the threshold (their transposes cost more than the
    sums): 256 channels on 7x7 split from 19 samples, not from 75."""
    from nnzero.functional import direct

    threshold(split_every_batch)
    numba_threads(2)
    rng = np.random.default_rng(0)
    layer = Conv2d(256, 256, 3, padding=1, groups=256, dtype=F64, rng=rng)
    per_sample = direct.LANES_WORK * 7 * 7 * layer.weight.data.size
    assert 18 * per_sample < split_every_batch <= 19 * per_sample
    for n, splits in ((18, False), (19, True)):
        pool_calls.clear()
        y = layer(rng.standard_normal((n, 256, 7, 7)))
        assert layer._ctx.cache.loops == "lanes"
        layer.backward(np.ones_like(y))
        assert bool(pool_calls) is splits, n


def _check_whole_against_split(layer, x, seed):
    # Hypothesis runs the examples inside one test call: no monkeypatch here
    old = _threads.MIN_SPLIT_MACS
    try:
        _threads.MIN_SPLIT_MACS = 0
        split = _run(layer, x, seed)
        _threads.MIN_SPLIT_MACS = WHOLE
        whole = _run(layer, x, seed)
    finally:
        _threads.MIN_SPLIT_MACS = old
    _same(whole, split)


@given(conv_configs())
def test_drawn_layers_give_the_same_answer_whole_or_split(cfg):
    if not fits(cfg):
        return
    layer, x, _ = drawn_conv2d(cfg)
    _check_whole_against_split(layer, x, cfg["seed"])


@given(conv_configs(transposed=True))
def test_drawn_transposed_layers_give_the_same_answer_whole_or_split(cfg):
    drawn = drawn_conv_transpose2d(cfg, 0)
    if drawn is None:
        return
    layer, x, _ = drawn
    _check_whole_against_split(layer, x, cfg["seed"])
