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
single-threaded twin). A launch on this pool costs ~0.15 ms here, less than
numba's parallel launch did (~0.3 ms for im2col of a tiny image; see the
README's "Threads").

The thread count is numba's (``NUMBA_NUM_THREADS`` or
``numba.set_num_threads``), so one setting governs every kernel.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

# Below this many elements in a kernel's arrays (inputs and outputs together)
# one thread does the work faster than two: a hand-off to the pool costs
# ~0.15 ms here, and im2col of one 64x32x32 image (0.66 M elements) took
# 0.13 ms on one thread against 0.24 on two; of a 64x64x64 one (2.6 M), 0.47
# against 0.36.
MIN_SPLIT_WORK = 1 << 20

_STATE = threading.local()
_POOL = {"pool": None, "size": 0, "pid": None}
_LOCK = threading.Lock()


def _executor(size):
    with _LOCK:
        # a forked child inherits the pool object but not its threads: start anew.
        # A smaller pool is dropped, not shut down: a caller on another Python
        # thread may hold it still and be about to hand it pieces; its idle
        # threads leave once nothing refers to it.
        if _POOL["size"] < size or _POOL["pid"] != os.getpid():
            _POOL["pool"] = ThreadPoolExecutor(size, thread_name_prefix="nnzero")
            _POOL["size"], _POOL["pid"] = size, os.getpid()
        return _POOL["pool"]


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
    if len(pieces) == 1 or inside_piece():
        return [fn(lo, hi) for lo, hi in pieces]
    pool = _executor(len(pieces) - 1)
    futures = [pool.submit(_run_marked, fn, lo, hi) for lo, hi in pieces[1:]]
    try:
        first = _run_marked(fn, *pieces[0])
    finally:  # never return (or raise) while a piece still writes into the outputs
        rest = [f.exception() for f in futures]
    for err in rest:
        if err is not None:
            raise err
    return [first] + [f.result() for f in futures]


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
