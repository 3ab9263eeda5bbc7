"""The pool's worker threads (nnzero/kernels/_workers.py): every piece handed to
a worker runs once and comes back with its result or its error, whether the
worker was watching for it or had gone to sleep, and with or without the
spinning watchers."""
import threading

import numpy as np
import pytest

from nnzero.kernels import _pool, _workers


@pytest.fixture(params=["spinning", "sleeping at once", "no spinning"])
def worker(request, monkeypatch):
    """A fresh worker, stopped after the test. 'sleeping at once' watches for a
    single turn before sleeping (and the caller naps at once): every hand-off
    takes the condition's path. 'no spinning' is the path of platforms
    without ``sched_yield``."""
    if request.param == "sleeping at once":
        monkeypatch.setattr(_workers, "IDLE_SPIN", 0.0)
        monkeypatch.setattr(_workers, "WAIT_SPIN", 0.0)
    if request.param == "no spinning":
        monkeypatch.setattr(_workers, "SPINS", False)
    w = _workers.Worker("nnzero-test")
    yield w
    w.stop()
    assert not w.thread.is_alive()


def test_each_piece_runs_once_on_the_worker_and_returns_its_result(worker):
    ran = []

    def piece(k, delay):
        ran.append((k, threading.get_ident()))
        threading.Event().wait(delay)   # some pieces outlast the caller's watching
        return k * k

    for k in range(40):
        worker.post(piece, k, 0.004 if k % 10 == 9 else 0.0)
        if k % 7 == 3:
            threading.Event().wait(0.008)   # the worker sleeps (past IDLE_SPIN) before some
        assert worker.collect() == (True, k * k)
    assert [k for k, _ in ran] == list(range(40))
    assert {ident for _, ident in ran} == {worker.thread.ident}


def test_an_error_comes_back_to_the_caller_and_the_worker_goes_on(worker):
    def piece(k):
        if k == 1:
            raise KeyError(k)
        return k

    worker.post(piece, 1)
    ok, err = worker.collect()
    assert not ok and isinstance(err, KeyError) and err.args == (1,)
    worker.post(piece, 2)
    assert worker.collect() == (True, 2)


def test_a_caller_finding_the_workers_busy_runs_its_pieces_inline(monkeypatch):
    """Another Python thread holds the workers: this caller's pieces run on its
    own thread, each once, in order."""
    monkeypatch.setattr(_pool.numba, "get_num_threads", lambda: 2)
    me = threading.get_ident()
    with _pool._BUSY:
        got = _pool.run_split([0, 3, 5], lambda lo, hi: (lo, hi, threading.get_ident()))
    assert got == [(0, 3, me), (3, 5, me)]
    got = _pool.run_split([0, 3, 5], lambda lo, hi: (lo, hi, threading.get_ident()))
    assert [g[:2] for g in got] == [(0, 3), (3, 5)] and got[0][2] == me != got[1][2]


def test_the_watchers_see_a_word_written_by_another_thread():
    """The compiled watch loop loads the word again on every turn (a hoisted
    load would never see the other thread's write, and spin out its turns)."""
    watch, mark_and_watch, rate = _workers._watchers()
    word, mark = np.zeros(8, np.int64), np.zeros(8, np.int64)
    assert not watch(word, 1, 10)
    timer = threading.Timer(0.01, lambda: word.__setitem__(0, 5))
    timer.start()
    assert watch(word, 5, int(rate * 5))   # up to ~5 s of turns; the write comes at 10 ms
    timer.join()
    assert mark_and_watch(mark, 9, word, 5, 1) and mark[0] == 9
    assert not mark_and_watch(mark, 10, word, 6, 100) and mark[0] == 10


def test_a_worker_keeps_nothing_of_a_piece_it_has_run(worker):
    """A piece's closure holds the layer's arrays: once the piece is back, the
    worker, waiting for its next one, must not keep it alive."""
    import weakref

    class Arrays:
        pass

    arrays = Arrays()
    gone = weakref.ref(arrays)
    worker.post(lambda held: type(held).__name__, arrays)
    assert worker.collect() == (True, "Arrays")
    del arrays
    assert gone() is None


def test_workers_that_cannot_build_their_watchers_sleep_instead(monkeypatch):
    """If numba cannot build or link the watch loops (a platform without
    ``sched_yield``), the workers take the sleeping path: pieces still run."""
    def broken():
        raise RuntimeError("no sched_yield here")

    monkeypatch.setattr(_workers, "_WATCH", {})
    monkeypatch.setattr(_workers, "_compile_watchers", broken)
    w = _workers.Worker("nnzero-test")
    try:
        assert not w._spins
        w.post(lambda a: a + 1, 41)
        assert w.collect() == (True, 42)
    finally:
        w.stop()
    assert not w.thread.is_alive()
