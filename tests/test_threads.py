"""The convolutions and Linear split their work over threads (functional/_threads.py):
the split must not change any result, cover every sample exactly once, pass
errors on only after every piece has stopped, and give BLAS back its threads."""
import os
import threading

import numba
import numpy as np
import pytest

from helpers import blas_threads, two_threads
from nnzero.functional import _threads
from nnzero.functional import conv as F
from nnzero.functional import winograd_rules
from nnzero.functional.winograd import WinogradCache
from nnzero.layers import Conv2d, ConvTranspose2d, Linear

F64 = np.float64
def _in_python_threads(fn, count):
    """fn(0), ..., fn(count - 1), each on a Python thread of its own, at once."""
    callers = [threading.Thread(target=fn, args=(k,)) for k in range(count)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()


@two_threads
@pytest.mark.parametrize("n", [1, 2, 5])
def test_pieces_cover_the_batch_once_and_in_order(numba_threads, n):
    numba_threads(2)
    seen = []
    lock = threading.Lock()

    def piece(lo, hi):
        with lock:
            seen.append((lo, hi, threading.get_ident()))
        return lo

    out = _threads.batch_pieces(n, piece)
    covered = sorted(i for lo, hi, _ in seen for i in range(lo, hi))
    assert covered == list(range(n))
    assert out == sorted(lo for lo, _, _ in seen)
    assert len(seen) == min(2, n)


@two_threads
@pytest.mark.parametrize("failing", [0, 2], ids=["calling-thread", "worker"])
def test_a_failing_piece_raises_after_the_others_finish(numba_threads, failing):
    numba_threads(2)
    finished = []

    def piece(lo, hi):
        if lo == failing:
            raise RuntimeError("piece failed")
        threading.Event().wait(0.1)   # still running when the other piece fails
        finished.append(lo)

    with pytest.raises(RuntimeError, match="piece failed"):
        _threads.batch_pieces(4, piece)
    assert finished == [2 - failing]


@two_threads
def test_nested_calls_run_inline_and_blas_threads_are_restored(numba_threads):
    numba_threads(2)
    before = blas_threads()
    inner = []

    def piece(lo, hi):
        inner.append(blas_threads())
        return _threads.batch_pieces(hi - lo, lambda a, b: (a, b))

    out = _threads.batch_pieces(4, piece)
    assert out == [[(0, 2)], [(0, 2)]]          # each inner call: one inline piece
    assert all(t == [1] * len(before) for t in inner)
    assert blas_threads() == before


@two_threads
def test_pieces_from_several_python_threads_keep_blas_at_one_and_restore_it(numba_threads):
    """Three Python threads start pieces at once (two models run from threads):
    BLAS stays at one thread in every piece, and has its threads back after.
    Each caller limiting and restoring on its own left the last one to
    restore setting BLAS to the one thread it had found (the other callers'
    limit), and let one caller's pieces run while another had restored it."""
    numba_threads(2)
    before = blas_threads()
    seen = []
    lock = threading.Lock()
    start = threading.Barrier(3)

    def piece(lo, hi):
        with lock:
            seen.append(blas_threads())
        threading.Event().wait(0.01)   # overlap with the other callers' pieces

    def caller(k):
        start.wait()
        for _ in range(5 + k):
            _threads.batch_pieces(4, piece)

    _in_python_threads(caller, 3)
    assert len(seen) == 2 * (5 + 6 + 7)
    assert all(t == [1] * len(before) for t in seen)
    assert blas_threads() == before


@two_threads
@pytest.mark.parametrize("small_calls_whole", [False, True])
def test_layers_run_from_several_python_threads_give_the_serial_answer(
        numba_threads, monkeypatch, split_every_batch, small_calls_whole):
    """The same layers run from three Python threads at once: every result
    bit for bit the one a lone call gives (BLAS on one thread in the pieces
    either way), and BLAS's threads back afterwards. With the default
    ``MIN_SPLIT_MACS`` the first two layers run whole on their callers'
    threads and the others split: callers of both kinds at once."""
    if small_calls_whole:
        monkeypatch.setattr(_threads, "MIN_SPLIT_MACS", split_every_batch)
    numba_threads(2)
    before = blas_threads()
    rng = np.random.default_rng(5)
    makes = [lambda: Conv2d(16, 32, 3, stride=2, padding=1, rng=1),             # im2col
             lambda: Conv2d(16, 16, 3, padding=1, rng=1),                       # Winograd
             lambda: ConvTranspose2d(32, 16, 4, stride=2, padding=1, rng=1),    # sub-pixel
             lambda: Conv2d(32, 32, 3, padding=1, groups=2, rng=1)]             # blocked
    cases = []
    for make in makes:
        layer = make()
        x = rng.standard_normal((8, layer.in_channels, 16, 16)).astype(np.float32)
        y = layer(x)
        dy = np.cos(y)
        cases.append((make, x, dy, [y, layer.backward(dy), layer.weight.grad.copy()]))
    mismatches = []

    def caller(k):
        for i in range(6):
            make, x, dy, expected = cases[(k + i) % len(cases)]
            layer = make()
            got = [layer(x), layer.backward(dy), layer.weight.grad]
            if not all(np.array_equal(a, b) for a, b in zip(got, expected)):
                mismatches.append((k, i))

    _in_python_threads(caller, 3)
    assert mismatches == []
    assert blas_threads() == before


@two_threads
@pytest.mark.parametrize("n", [5, 1])   # odd batch: pieces of different sizes; one sample: none
@pytest.mark.parametrize("budget", [None, 1])
@pytest.mark.parametrize("make, hw", [
    (lambda: Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=F64, rng=1), (16, 17)),
    (lambda: Conv2d(4, 6, 1, dtype=F64, rng=1), (16, 17)),
    (lambda: ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2,
                             dtype=F64, rng=1), (16, 17)),
    (lambda: Conv2d(32, 32, 3, padding=1, dtype=F64, rng=1), (16, 17)),   # F(4x4, 3x3)
    (lambda: Conv2d(64, 64, 3, padding=1, dtype=F64, rng=1), (6, 6)),   # F(2x2, 3x3)
    (lambda: Conv2d(8, 12, 3, padding=1, groups=4, dtype=F64, rng=1), (16, 17)),   # direct
    (lambda: Conv2d(16, 32, 3, padding=1, groups=2, dtype=F64, rng=1), (16, 17)),  # blocked
    (lambda: Conv2d(6, 6, 3, stride=2, padding=1, groups=6, dtype=F64, rng=1),   # depthwise
     (16, 17)),
    (lambda: ConvTranspose2d(64, 32, 4, stride=2, padding=1, dtype=F64, rng=1),   # F(3x3, 2x2)
     (16, 17)),
    (lambda: Conv2d(32, 16, 4, stride=2, padding=1, dtype=F64, rng=1), (16, 17)),   # F(4x4, 2x2)
], ids=["conv", "conv1x1", "convT", "winograd", "winograd_f23", "grouped", "blocked",
        "depthwise", "convT_winograd", "winograd_stride2"])
def test_one_or_two_threads_give_the_same_answer(numba_threads, n, budget, make, hw,
                                                monkeypatch):
    # the same algorithm on one thread and on two, whatever the batch
    monkeypatch.setattr(winograd_rules, "WINOGRAD_BATCH_MINOR_SAMPLES", 1)
    rng = np.random.default_rng(0)
    channels = make().in_channels
    x = rng.standard_normal((n, channels) + hw)
    results = []
    for threads in (1, 2):
        numba_threads(threads)
        layer = make()
        old = F.set_im2col_budget(budget) if budget else None
        try:
            y = layer(x)
            dx = layer.backward(np.cos(y))
        finally:
            if old:
                F.set_im2col_budget(old)
        results.append([y, dx] + [p.grad for p in layer.parameters()])
        if channels in (32, 64):   # Winograd's tiles do not fit a one-byte budget
            cache = layer._ctx.cache
            winograd = isinstance(cache, WinogradCache) or getattr(cache, "wino", None) is not None
            assert winograd == (budget is None)
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@two_threads
def test_transposed_forward_in_blocks_gives_the_same_answer(numba_threads, monkeypatch):
    """One sample per block (the blocks keep the product in cache for col2im)
    on one and two threads, against the whole batch at once."""
    from nnzero.functional import conv_transpose

    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4, 6, 7))
    layer = ConvTranspose2d(4, 6, 3, stride=2, padding=1, groups=2, dtype=F64, rng=1)
    expected = layer(x)
    monkeypatch.setattr(conv_transpose, "FORWARD_BLOCK_BYTES", 1)
    for threads in (1, 2):
        numba_threads(threads)
        np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)


@two_threads
@pytest.mark.parametrize("rows", [1, 5])
def test_linear_gives_the_same_answer_on_one_or_two_threads(numba_threads, rows):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, 3, 7))
    results = []
    for threads in (1, 2):
        numba_threads(threads)
        layer = Linear(7, 9, dtype=F64, rng=2)
        y = layer(x)
        dx = layer.backward(np.sin(y))
        results.append([y, dx, layer.weight.grad, layer.bias.grad])
    w, b = layer.weight.data, layer.bias.data
    np.testing.assert_allclose(results[0][0], x @ w.T + b, rtol=1e-12)
    np.testing.assert_allclose(results[0][1], np.sin(results[0][0]) @ w, rtol=1e-12)
    for a, c in zip(*results):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


@two_threads
@pytest.mark.parametrize("units", [0, 1, 2, 7])
def test_a_split_kernel_covers_its_units_once(numba_threads, monkeypatch, units):
    """``_pool.split_kernel``: the units in contiguous pieces, one per thread,
    none twice; all in one call on the calling thread when serial, inside a
    piece, or when the arrays are small (``MIN_SPLIT_WORK``)."""
    from nnzero.kernels import _pool
    numba_threads(2)
    calls = []
    lock = threading.Lock()

    def kernel_range(a, lo, hi):
        with lock:
            calls.append((lo, hi, threading.get_ident()))
        a[lo:hi] += 1

    run, run_serial = _pool.split_kernel(kernel_range, lambda a: a.shape[0])
    assert (run.__name__, run_serial.__name__) == ("kernel_numba", "kernel_serial")
    monkeypatch.setattr(_pool, "MIN_SPLIT_WORK", 0)
    a = np.zeros(units)
    run(a)
    np.testing.assert_array_equal(a, 1)
    pieces = min(2, units)
    assert sorted(c[:2] for c in calls) == [(units * i // pieces, units * (i + 1) // pieces)
                                            for i in range(pieces)]
    assert len({c[2] for c in calls}) == pieces

    def one_call_here(call):
        calls.clear()
        here = threading.get_ident()
        call()
        assert calls == ([(0, units, here)] if units else [])

    one_call_here(lambda: run_serial(a))
    monkeypatch.setattr(_pool, "MIN_SPLIT_WORK", units + 1)
    one_call_here(lambda: run(a))
    monkeypatch.setattr(_pool, "MIN_SPLIT_WORK", 0)
    calls.clear()
    _pool.run_split([0, 1, 2], lambda lo, hi: run(a))   # two pieces, each calling the kernel
    assert sorted(c[:2] for c in calls) == ([(0, units)] * 2 if units else [])
    np.testing.assert_array_equal(a, 5)


def test_workers_grown_by_another_caller_still_take_its_work():
    """numba's thread count is per Python thread, so one caller may start more
    workers while another holds the ones it had and is about to hand them
    pieces: those must still be the pool's, and still run them."""
    from nnzero.kernels import _workers
    held = _workers.workers(1)
    grown = _workers.workers(len(_workers._WORKERS["list"]) + 1)
    assert len(held) == 1 and len(grown) >= 2 and grown[0] is held[0]
    for w in held + grown:
        w.post(lambda a, b: a * b, 6, 7)
        assert w.collect() == (True, 42)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
# Python 3.12+ warns on fork() in a process with threads (this test's point)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_child_forked_while_another_thread_holds_blas_runs_its_layers():
    """The turn at limiting BLAS is a lock: a child forked while another
    thread of the parent held it must not wait for that thread (which the
    child does not have) before its first convolution."""
    import multiprocessing

    layer = Conv2d(4, 6, 3, stride=2, padding=1, rng=1)
    x = np.ones((4, 4, 8, 8), dtype=np.float32)
    expected = layer(x)
    holding, release = threading.Event(), threading.Event()

    def hold():
        with _threads.blas_one_thread():
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait(30)
    try:
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        child = ctx.Process(target=lambda: results.put(layer(x)))
        child.start()
        child.join(60)
        hung = child.is_alive()
        if hung:
            child.kill()
    finally:
        release.set()
        holder.join()
    assert not hung
    np.testing.assert_array_equal(results.get(timeout=10), expected)


@pytest.mark.parametrize("layer_module_call, make", [
    ("conv2d_forward", lambda: Conv2d(8, 8, 3, padding=1, rng=1)),
    ("conv_transpose2d_forward", lambda: ConvTranspose2d(8, 8, 4, stride=2, padding=1, rng=1)),
], ids=["Conv2d", "ConvTranspose2d"])
def test_calls_on_one_layer_from_two_python_threads_never_share_its_workspace(
        layer_module_call, make, monkeypatch):
    """A layer reuses its column and tile buffers from call to call. A second
    Python thread calling the same layer (serving a model from threads) while
    the first is inside a call gets buffers of its own: shared, one call
    wrote its columns over the other's and both returned wrong outputs."""
    from nnzero.layers import conv as layer_conv
    layer = make()
    x = np.random.default_rng(2).standard_normal((2, 8, 6, 6)).astype(np.float32)
    expected = layer(x)
    real = getattr(F, layer_module_call)
    seen, inside, go_on = [], threading.Event(), threading.Event()

    def call(*args, workspace=None, **kwargs):
        seen.append(workspace)
        if threading.current_thread() is threading.main_thread():
            inside.set()
            go_on.wait(30)   # the other thread's whole call happens now
        return real(*args, workspace=workspace, **kwargs)

    monkeypatch.setattr(layer_conv.F, layer_module_call, call)
    other = []
    second = threading.Thread(target=lambda: (inside.wait(30), other.append(layer(x)),
                                              go_on.set()))
    second.start()
    first = layer(x)
    second.join()
    assert len(seen) == 2
    shared = seen[0] is seen[1]
    assert not shared, "both calls were handed the same buffers"
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(other[0], expected)
    np.testing.assert_array_equal(layer(x), expected)   # and calls on one thread after


@pytest.mark.parametrize("threads", [1, 2])
def test_a_model_shared_by_python_threads_gives_each_its_own_outputs(numba_threads, threads):
    """Inference from three Python threads through the same layers (each
    thread its own inputs) gives every thread the outputs a lone call gives.
    To float32 rounding: on one numba thread the products run on BLAS's own
    threads, and a Winograd layer's filter transform in another thread limits
    those to one for a moment (a process-wide setting), which moves the last
    bits (~5e-7 of the scale). Buffers shared between two calls gave errors
    the size of the outputs."""
    numba_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    rng = np.random.default_rng(4)
    layers = [(Conv2d(16, 32, 3, stride=2, padding=1, rng=1), 16),    # im2col
              (Conv2d(16, 16, 3, padding=1, rng=1), 16),               # Winograd
              (ConvTranspose2d(32, 16, 4, stride=2, padding=1, rng=1), 32),
              (Conv2d(32, 32, 3, padding=1, rng=1), 32)]               # small planes
    inputs = [[rng.standard_normal((8, c, 16 if c == 16 else 6, 16 if c == 16 else 6))
               .astype(np.float32) for _ in range(3)] for _, c in layers]
    expected = [[layer(x) for x in xs] for (layer, _), xs in zip(layers, inputs)]
    mismatches = []

    def caller(k):
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        for i in range(8):
            j = (k + i) % len(layers)
            y, want = layers[j][0](inputs[j][k]), expected[j][k]
            if not np.allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max()):
                mismatches.append((k, i, j, float(np.abs(y - want).max())))

    _in_python_threads(caller, 3)
    assert mismatches == []
