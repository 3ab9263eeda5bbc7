"""nnzero's worker threads, and the split of a kernel's units over them.

Every parallel loop in the convolution kernels is a compiled (``nogil``)
function over a range of independent units (image planes, blocks of samples,
(sample, group) pairs), called once per thread on its own contiguous share of
the units: ``over_units`` below. The convolutions split their batch over the
same threads (``functional/_threads.py``); a kernel called from inside such a
piece, or with ``serial=True``, runs all its units on the calling thread.

Why not numba's ``prange``: numba compiles each parallel loop into a separate
function and links and optimises every function it calls again, so a kernel
took 8-10 s to compile against ~1.5 s for the same loops compiled once (the
cold test run and every user's first call paid it, twice per dtype with the
single-threaded twin). The pool's threads (``_workers.py``) spin for a few
milliseconds before they sleep, so a hand-off between layers costs ~20 us
rather than a thread's wake-up (~90-130 us here through
``concurrent.futures``).

The thread count is numba's (``NUMBA_NUM_THREADS`` or
``numba.set_num_threads``), so one setting governs every kernel.
"""
from __future__ import annotations

import contextlib
import os
import threading

import numba
import numpy as np

from ._workers import workers

# Below this many elements in a kernel's arrays (inputs and outputs together)
# one thread does the work faster than two: a hand-off to the pool cost
# ~0.15 ms here, and im2col of one 64x32x32 image (0.66 M elements) took
# 0.13 ms on one thread against 0.24 on two; of a 64x64x64 one (2.6 M), 0.47
# against 0.36. With the cheaper hand-off of ``_workers.py``, five
# single-sample 3x3 convolutions (16 to 64 channels, 32x32 and 64x64; 0.15-2.4
# M column values) took 0.98-1.17x their one-thread time split at every size,
# so the threshold stayed.
MIN_SPLIT_WORK = 1 << 20

_STATE = threading.local()
# One caller's pieces on the workers at a time: a caller on another Python
# thread that finds them busy runs its own pieces inline (the cores are taken).
_BUSY = threading.Lock()


def _unbusy():
    global _BUSY
    _BUSY = threading.Lock()   # a forked child's workers are new, and idle


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_unbusy)


def _run_marked(fn, lo, hi):
    _STATE.inside = True
    try:
        return fn(lo, hi)
    finally:
        _STATE.inside = False


def inside_piece():
    """Whether the calling thread is running a piece of ``run_split``."""
    return getattr(_STATE, "inside", False)


@contextlib.contextmanager
def as_one_piece():
    """Run the block as a piece: every split inside it (``split_bounds``,
    ``run_split``) keeps its work on the calling thread."""
    before, _STATE.inside = inside_piece(), True
    try:
        yield
    finally:
        _STATE.inside = before


def split_bounds(n, serial=False):
    """``[0, ..., n]``: contiguous pieces of ``range(n)``, one per thread (one
    piece when ``serial`` or inside a piece already)."""
    t = 1 if serial or inside_piece() else max(1, min(numba.get_num_threads(), n))
    return [n * i // t for i in range(t + 1)]


def run_split(bounds, fn):
    """``[fn(lo, hi) for each piece of bounds]``, the pieces at once, one per
    thread; the calling thread takes the first. Inside a piece they run one
    after another, inline (no nested parallelism). ``fn`` must write only its
    own share of any shared output."""
    pieces = list(zip(bounds[:-1], bounds[1:]))
    if len(pieces) == 1 or inside_piece() or not _BUSY.acquire(blocking=False):
        return [fn(lo, hi) for lo, hi in pieces]
    posted = []
    try:
        for w, (lo, hi) in zip(workers(len(pieces) - 1), pieces[1:]):
            w.post(_run_marked, fn, lo, hi)
            posted.append(w)
        first = _run_marked(fn, *pieces[0])
    finally:  # never return (or raise) while a piece still writes into the outputs
        try:
            rest = [w.collect() for w in posted]
        finally:
            _BUSY.release()
    for ok, value in rest:
        if not ok:
            raise value
    return [first] + [value for _, value in rest]


def over_units(units, fn, serial=False):
    """``fn(lo, hi)`` over ``range(units)`` split over the threads (see
    ``split_bounds``); returns the pieces' results in order."""
    if units <= 0:
        return []
    return run_split(split_bounds(units, serial), fn)


def split_kernel(range_kernel, count):
    """The two Python entry points of a compiled ``range_kernel(*args, lo, hi)``
    that handles units lo ... hi-1 of ``count(*args)``: ``(run, run_serial)``,
    ``run(*args)`` splitting the units over the threads (unless its arrays hold
    fewer than ``MIN_SPLIT_WORK`` elements in all), ``run_serial(*args)``
    taking them all on the calling thread. Both are named after the kernel."""
    base = range_kernel.__name__.lstrip("_").replace("_range", "")

    def run(*args, serial=False):
        if not serial:   # small arrays stay on this thread (see MIN_SPLIT_WORK)
            serial = sum(a.size for a in args if isinstance(a, np.ndarray)) < MIN_SPLIT_WORK
        over_units(count(*args), lambda lo, hi: range_kernel(*args, lo, hi), serial)

    def run_serial(*args):
        run(*args, serial=True)

    run.__name__ = run.__qualname__ = base + "_numba"
    run_serial.__name__ = run_serial.__qualname__ = base + "_serial"
    run.__doc__ = f"``{range_kernel.__name__}`` over all units, split over the threads."
    run_serial.__doc__ = f"``{range_kernel.__name__}`` over all units, on the calling thread."
    return run, run_serial
