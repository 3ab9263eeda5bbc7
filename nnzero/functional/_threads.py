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

The threads are ``kernels/_pool.py``'s, the ones every nnzero kernel uses;
their count is numba's (``NUMBA_NUM_THREADS`` or
``numba.set_num_threads``). BLAS is
limited to one thread only while the pieces run (threadpoolctl), and put
back afterwards.

OpenBLAS's thread count is one setting for the whole process, so callers on
several Python threads (two models run from threads) take turns: one
caller's pieces at a time, each caller limiting BLAS and restoring it on its
own thread. Limiting and restoring each on its own, overlapping, callers
found BLAS already limited by another and, restoring last, left it at one
thread for good (and one caller's pieces ran with BLAS's threads back while
another's restore had come first). Taking turns costs nothing: one caller's
pieces already occupy every thread.
"""
from __future__ import annotations

import contextlib
import os
import threading

from ..kernels._pool import as_one_piece, inside_piece, run_split, split_bounds

_BLAS = {"controller": None}
_LOCK = threading.Lock()
_TURN = threading.RLock()   # one Python thread's BLAS limit at a time (see above)


def _new_turn():
    # A child forked while another thread held the turn would wait for it
    # forever (the holder does not exist there): the child starts with its own.
    global _TURN
    _TURN = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_turn)


@contextlib.contextmanager
def _one_thread_turn():
    with _TURN:   # re-entrant: a caller's products, then its pieces, nest
        with _LOCK:
            if _BLAS["controller"] is None:
                from threadpoolctl import ThreadpoolController

                _BLAS["controller"] = ThreadpoolController()
        with _BLAS["controller"].limit(limits=1, user_api="blas"):
            yield


def blas_one_thread():
    """A context manager limiting BLAS to one thread (threadpoolctl, made once),
    for the products run outside the pieces too; inside a piece, where BLAS is
    limited already, it does nothing (so that no piece restores the limit the
    caller set under another piece). Callers on other Python threads wait
    for the limit to be lifted before setting their own."""
    if inside_piece():
        return contextlib.nullcontext()
    return _one_thread_turn()


__all__ = ["inside_piece", "piece_bounds", "run_pieces", "batch_pieces", "blas_one_thread",
           "whole_if_small", "MIN_SPLIT_MACS"]

# Below this many multiply-adds a convolution's call runs whole on the calling
# thread (``whole_if_small``): on a small layer the second core saves less
# than the split costs. Measured forward+backward, both ways interleaved
# (medians of 5), over 77 Conv2d layers (N 8 and 32, 1 to 64 channels, 4x4 to
# 28x28, kernels 1, 3, 5): whole / split 0.36-1.16 below 8 M multiply-adds
# (48 of the 51 below 1; N=8 16 -> 16 channels 3x3 on 8x8, 1.2 M: 0.82
# against 1.86 ms), 0.67-1.46 from 8 to 16 M, 0.76-1.75 above. Always
# splitting took 1.47x the better of the two on average over those layers,
# this rule 1.03x; weighing in the column matrix's size as well gained ~1%
# more, within the noise. Then a hand-off to the pool's sleeping thread cost
# ~0.2 ms (an empty two-piece ``batch_pieces`` call measured 204 us); since
# the pool's threads spin before they sleep (``kernels/_workers.py``) it
# costs ~40 us with work on both threads, and the sweep again (2026-11-29)
# put the rule at 1.014x the better choice with this threshold, 1.016x with
# 2^22 and 1.034x with 2^21: what is left of the split's cost on a small
# layer is the two threads taking turns at the GIL between their kernels and
# the products' lower rate on half the columns. The transposed layers
# measured fell the same way (0.49-0.88 below 5 M, 1.24 at 17 M), and so did
# grouped layers on the blocked loops (0.40-0.49 at 1.2-2.4 M, 1.01-1.08 at
# 14-19 M). Not
# ``grouped.py``'s or the depthwise loops (``direct._small_call`` keeps their
# split): they do far more work per multiply-add than a product, and depthwise
# layers of 0.9-4.7 M took 1.12-1.70x their split time run whole.
MIN_SPLIT_MACS = 1 << 23


def whole_if_small(macs):
    """A context manager for one call of a convolution doing ``macs``
    multiply-adds: below ``MIN_SPLIT_MACS`` the call runs as one piece on the
    calling thread (BLAS held to one thread, every split inside it inline:
    what a one-thread run does); otherwise, or inside a piece already, it
    changes nothing."""
    if macs >= MIN_SPLIT_MACS or inside_piece():
        return contextlib.nullcontext()
    return _whole_here()


@contextlib.contextmanager
def _whole_here():
    with _one_thread_turn(), as_one_piece():
        yield


def piece_bounds(n):
    """``[0, ..., n]``: contiguous pieces of ``range(n)``, one per thread."""
    return split_bounds(n)


def run_pieces(bounds, fn):
    """``[fn(lo, hi) for each piece]`` of ``bounds`` (see ``piece_bounds``), run
    at once, one per thread (``kernels/_pool.py``), BLAS limited to one thread
    meanwhile; the calling thread takes the first piece.

    ``fn`` must write only its own samples' rows of shared outputs and return
    what has to be summed over the batch (its share of a weight gradient).
    Called from inside a piece, the pieces run one after another, inline (no
    nested parallelism).
    """
    if len(bounds) <= 2 or inside_piece():
        return run_split(bounds, fn)
    with blas_one_thread():
        return run_split(bounds, fn)


def add_shares(total, shares):
    """``total`` (None at first) plus each of ``shares``, in order, added in
    place: what the pieces of one chunk of a batch returned (see
    ``run_pieces``). A chunked pass folds each chunk's shares in as it goes,
    so what it holds does not grow with the batch. The shares must be arrays
    of their own (the first becomes the total)."""
    for share in shares:
        if total is None:
            total = share
        else:
            total += share
    return total


def batch_pieces(n, fn):
    """``run_pieces(piece_bounds(n), fn)``: ``range(n)`` split over the threads."""
    return run_pieces(piece_bounds(n), fn)
