"""The pool's worker threads, and hand-offs that do not wait for a wake-up.

A piece handed to a sleeping thread starts only when the kernel has woken
that thread, and the caller that then sleeps until the piece is done waits
for a second wake-up. On this machine (2 vCPUs) each wake-up took tens of
microseconds: an empty piece handed to ``concurrent.futures``' pool and waited
for took a median 86 us back to back and 129 us after 5 ms of quiet, as long
as a small layer's whole kernel call.

So, as OpenMP runtimes and OpenBLAS do, the threads spin before they sleep:

- a worker, its piece done, watches for its next piece for ``IDLE_SPIN``
  seconds (yielding the core on every turn, ``sched_yield``), then sleeps on
  a condition that the next hand-off notifies;
- the caller, its own piece done, watches for the worker's for ``WAIT_SPIN``
  seconds, then naps in short sleeps until it is there.

The watching runs in compiled code without the GIL (``watch`` and
``mark_and_watch``, made by ``_compile_watchers``), so it holds up no Python
thread. A worker marks its piece done
only from inside that compiled code, after it has let go of the GIL: the
caller, which sees the mark, then finds the GIL free instead of queueing for
it behind the worker (measured: 20 us for an empty hand-off and its return,
against 45 us with the mark set from Python).

Where there is no ``sched_yield`` (not POSIX), or numba cannot build the
loops, the threads do not spin: the worker sleeps on its condition and the
caller naps.
"""
from __future__ import annotations

import atexit
import os
import threading
import time

import numba
import numpy as np

IDLE_SPIN = 5e-3     # seconds a worker watches for its next piece before sleeping
WAIT_SPIN = 2e-3     # seconds a caller watches for a worker's piece before napping
NAP = 50e-6          # one of the caller's sleeps after that

# sched_yield is POSIX; under NUMBA_DISABLE_JIT the watchers would be Python loops
SPINS = os.name == "posix" and not numba.config.DISABLE_JIT


def _compile_watchers():
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def sched_yield(typingctx):
        # an opaque call: the loop below must load the word again on every turn
        def codegen(context, builder, signature, args):
            fnty = ir.FunctionType(ir.IntType(32), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "sched_yield")
            return builder.call(fn, [])
        return types.int32(), codegen

    @numba.njit(nogil=True, cache=True)
    def watch(word, target, turns):
        """Whether ``word[0]`` reached ``target`` within ``turns`` yields."""
        for _ in range(turns):
            if word[0] >= target:
                return True
            sched_yield()
        return word[0] >= target

    @numba.njit(nogil=True, cache=True)
    def mark_and_watch(mark, value, word, target, turns):
        """``mark[0] = value`` (with the GIL let go), then ``watch``."""
        mark[0] = value
        return watch(word, target, turns)

    return watch, mark_and_watch


_WATCH = {}


def _watchers():
    """``(watch, mark_and_watch, turns_per_second)``, compiled on first use;
    None where they cannot be built (no ``sched_yield`` to link against):
    the workers then sleep and nap without spinning."""
    if not _WATCH:
        try:
            watch, mark_and_watch = _compile_watchers()
            never = np.zeros(1, np.int64)
            watch(never, 1, 1)   # compile (or load from the cache) before timing
        except Exception:   # numba could not build or link them: no spinning
            _WATCH["fns"] = None
            return None
        t0 = time.perf_counter()
        watch(never, 1, 2000)
        _WATCH["fns"] = (watch, mark_and_watch, 2000 / max(time.perf_counter() - t0, 1e-6))
    return _WATCH["fns"]


_STOP = object()


class Worker:
    """One thread that runs pieces handed to it by ``post`` and returned by
    ``collect``, one at a time (the caller holds the pool while it uses it)."""

    def __init__(self, name):
        words = np.zeros(16, np.int64)   # the two counters on separate cache lines
        self._posted, self._done = words[0:1], words[8:9]
        self._count = 0
        self._job = None
        self._outcome = None
        self._wake = threading.Condition(threading.Lock())
        self._watchers = _watchers() if SPINS else None
        self._spins = self._watchers is not None
        if self._spins:
            rate = self._watchers[2]
            self._idle_turns = max(1, int(IDLE_SPIN * rate))
            self._wait_turns = max(1, int(WAIT_SPIN * rate))
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def _serve(self):
        count = 0
        while True:
            count += 1
            if self._spins:
                _, mark_and_watch, _ = self._watchers
                got = mark_and_watch(self._done, count - 1, self._posted, count,
                                     self._idle_turns)
            else:
                self._done[0] = count - 1
                with self._wake:
                    self._wake.notify_all()
                got = False
            if not got:
                with self._wake:
                    while self._posted[0] < count:
                        self._wake.wait()
            job, self._job = self._job, None
            if job is _STOP:
                return
            fn, args = job
            try:
                self._outcome = (True, fn(*args))
            except BaseException as err:   # handed back to the caller by ``collect``
                self._outcome = (False, err)
            # drop the piece (its closure holds the layer's arrays) before waiting
            job = fn = args = None

    def post(self, fn, *args):
        """Start ``fn(*args)`` on this worker's thread (once the piece posted
        before it, if a caller left it uncollected, has ended)."""
        self._hand((fn, args))

    def _hand(self, job):
        if self._done[0] < self._count:
            self.collect()
        self._job = job
        self._count += 1
        self._posted[0] = self._count
        with self._wake:
            self._wake.notify()

    def collect(self):
        """Wait for the piece posted last; ``(True, result)`` or ``(False, error)``."""
        if self._spins:
            watch, _, _ = self._watchers
            if not watch(self._done, self._count, self._wait_turns):
                while self._done[0] < self._count:
                    time.sleep(NAP)
        else:
            with self._wake:
                while self._done[0] < self._count:
                    self._wake.wait(NAP * 20)
        outcome, self._outcome = self._outcome, None
        return outcome

    def stop(self, timeout=1.0):
        """End the thread (at exit: no thread may be inside compiled code then)."""
        if not self.thread.is_alive():
            return
        self._hand(_STOP)
        self.thread.join(timeout)


_WORKERS = {"list": [], "pid": os.getpid()}
_GROW = threading.Lock()


def _forget():
    # a forked child has none of the threads, and a lock another thread held
    # at the fork would stay held for good
    global _GROW
    _GROW = threading.Lock()
    _WORKERS["list"], _WORKERS["pid"] = [], os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget)


def workers(count):
    """The first ``count`` workers, started as needed (once per process)."""
    with _GROW:
        if _WORKERS["pid"] != os.getpid():
            _forget()
        have = _WORKERS["list"]
        while len(have) < count:
            have.append(Worker(f"nnzero-{len(have) + 1}"))
        return have[:count]


@atexit.register
def _stop_all():
    with _GROW:
        if _WORKERS["pid"] == os.getpid():
            for w in _WORKERS["list"]:
                w.stop()
            _WORKERS["list"] = []
