"""Batch-parallel execution for the convolutions and Linear: one pipeline per core.

A convolution alternates BLAS products with numba kernels (im2col, col2im).
Run as "every step parallel in turn", each hand-off between OpenBLAS's
threads and numba's costs time on a 2-core machine: OpenBLAS's workers spin
after a product and compete with the next kernel for the cores (a numba
kernel right after a GEMM measured 9.5 ms against 6.0 ms after a pause).
Splitting the batch instead, each thread running im2col, its products and
col2im for its own samples with single-threaded BLAS and serial kernels,
leaves nothing to hand off (measured: conv_stem 16 -> 9.5 ms, convT_up
41 -> 25 ms, forward plus backward).

Linear's products run the same way (blocks of rows), so that in a model
built from nnzero layers OpenBLAS's own worker threads are never woken: once
woken by a product they spin on for a while, and the convolution after a
multithreaded Linear measured 1.5x slower for it (cnn_step: 1.6-2.0x
PyTorch's time before, 1.24x after).

The thread count is numba's (``NUMBA_NUM_THREADS`` or
``numba.set_num_threads``), the one every nnzero kernel uses. BLAS is
limited to one thread only while the pieces run (threadpoolctl), and put
back afterwards.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

_STATE = threading.local()
_POOL = {"pool": None, "size": 0, "pid": None, "blas": None}
_LOCK = threading.Lock()


def _blas_one_thread():
    """A context manager limiting BLAS to one thread (threadpoolctl, made once)."""
    with _LOCK:
        if _POOL["blas"] is None:
            from threadpoolctl import ThreadpoolController

            _POOL["blas"] = ThreadpoolController()
    return _POOL["blas"].limit(limits=1, user_api="blas")


def _executor(size):
    with _LOCK:
        # a forked child inherits the pool object but not its threads: start anew
        if _POOL["size"] < size or _POOL["pid"] != os.getpid():
            if _POOL["pool"] is not None and _POOL["pid"] == os.getpid():
                _POOL["pool"].shutdown(wait=False)
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
    """Whether the calling thread is running a piece of ``run_pieces``."""
    return getattr(_STATE, "inside", False)


def piece_bounds(n):
    """``[0, ..., n]``: contiguous pieces of ``range(n)``, one per thread."""
    t = 1 if inside_piece() else max(1, min(numba.get_num_threads(), n))
    return [n * i // t for i in range(t + 1)]


def run_pieces(bounds, fn):
    """``[fn(lo, hi) for each piece]`` of ``bounds`` (see ``piece_bounds``), run
    at once, one per thread; the calling thread takes the first piece.

    ``fn`` must write only its own samples' rows of shared outputs and return
    what has to be summed over the batch (its share of a weight gradient).
    Called from inside a piece, the pieces run one after another, inline (no
    nested parallelism).
    """
    pieces = list(zip(bounds[:-1], bounds[1:]))
    if len(pieces) == 1 or inside_piece():
        return [fn(lo, hi) for lo, hi in pieces]
    pool = _executor(len(pieces) - 1)
    with _blas_one_thread():
        futures = [pool.submit(_run_marked, fn, lo, hi) for lo, hi in pieces[1:]]
        try:
            first = _run_marked(fn, *pieces[0])
        finally:  # never return (or raise) while a piece still writes into the outputs
            rest = [f.exception() for f in futures]
        for err in rest:
            if err is not None:
                raise err
        return [first] + [f.result() for f in futures]


def batch_pieces(n, fn):
    """``run_pieces(piece_bounds(n), fn)``: ``range(n)`` split over the threads."""
    return run_pieces(piece_bounds(n), fn)
