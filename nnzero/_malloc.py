"""glibc's malloc held in its steady state, so that a layer's arrays do not
fault their pages in again on every call.

Every call of a layer allocates its outputs and some temporaries (y, dx,
dW, each thread's share of dW), from ~100 KB to tens of MB. glibc serves a
request above its mmap threshold (128 KiB at start) by mmap, and each time
it frees such a block of up to 32 MiB it raises the threshold to that size
and its trim threshold to twice that; beyond the trim threshold, free memory
at the top of a heap goes back to the operating system, and the next call
faults it in again, a zeroed page at a time (with a second thread running,
each return also interrupts that thread's core to flush its TLB). Where the
largest block freed so far is small, a call's few arrays pass the trim
threshold and the heap is emptied and refilled on every call. Whether a
process got there depends on what it freed first: freshly compiled numba
kernels free large blocks early, kernels loaded from numba's cache do not.
Measured (2026-11-30, a fresh clone with its kernels cached, forward and
backward, 3 rounds of separate processes): Conv2d(64, 64, 3) on 8 samples
of 8x8 took 1.55-1.65 ms, and 1.19-1.25 with the thresholds set; 512
channels on 14x14 (16 samples) 115-123 against 106-113; conv_mid,
conv_strided, conv_1x1, convT_up, conv_small and conv_tiny the same either
way. In a slow process the operating system's share of the time (perf) was
37% against 26%: page faults, returning pages, the other core's TLB flushes.

So nnzero sets both thresholds at import to where glibc's own adjustment
ends: mmap for blocks from 32 MiB, trim from 64 MiB of free memory at the
top. It leaves malloc alone on other C libraries, when the environment sets
its thresholds already (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``
or ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``), and when
``NNZERO_MALLOC=0``.
"""
from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 32 << 20   # glibc's ceiling for its own adjustment (64-bit)
TRIM_THRESHOLD = 64 << 20   # twice that, as glibc sets it
_M_TRIM_THRESHOLD = -1      # mallopt's parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3

_ENV_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
TUNED = [False]             # whether ``steady_malloc`` set the thresholds


def _glibc():
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


def _left_to_the_environment():
    if os.environ.get("NNZERO_MALLOC", "1") == "0":
        return True
    if any(name in os.environ for name in _ENV_SETTINGS):
        return True
    return "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")


def steady_malloc():
    """Set glibc's mmap and trim thresholds (see the module); returns whether
    they were set. Called once, by ``import nnzero``."""
    if TUNED[0] or not _glibc() or _left_to_the_environment():
        return TUNED[0]
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    TUNED[0] = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                    and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return TUNED[0]
