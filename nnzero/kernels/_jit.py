"""The switch between numba kernels and their NumPy twins.

``NNZERO_JIT=0`` in the environment (read once, at import) makes every
kernel module hand out its NumPy twin instead of the compiled loop: the
path for debugging, for platforms without numba, and the "what does numba
buy" column of the benchmarks.
"""
from __future__ import annotations

import os

# numba's OpenMP layer keeps its threads spinning after each parallel loop, and
# they then fight OpenBLAS's threads for the cores during the next matmul (on
# 2 cores a conv step measured 2.5x slower). The workqueue layer's threads sleep.
# An explicit NUMBA_THREADING_LAYER in the environment wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    os.environ["NUMBA_THREADING_LAYER"] = "workqueue"
    import numba.core.config as _numba_config  # already imported: it read the env before us

    _numba_config.THREADING_LAYER = "workqueue"

def _flag(name):
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


JIT_ENABLED = _flag("NNZERO_JIT")
# NNZERO_PARALLEL=0 compiles every prange loop as a plain loop. It exists for
# checking kernels: numba's NUMBA_BOUNDSCHECK=1 does not check (or does not
# report) indexing inside parallel loops, so a bounds-checked run needs this
# too, and a fresh NUMBA_CACHE_DIR (kernels loaded from the cache keep the
# flags they were compiled with).
PARALLEL_ENABLED = _flag("NNZERO_PARALLEL")


def njit(*args, parallel=False, **kwargs):
    """``numba.njit(cache=True, ...)``: compile once per machine, reuse from disk."""
    import numba

    return numba.njit(*args, cache=True, parallel=parallel and PARALLEL_ENABLED, nogil=True,
                      **kwargs)


def choose(numba_impl, numpy_impl):
    """The implementation in force: the compiled one unless ``NNZERO_JIT=0``."""
    return numba_impl if JIT_ENABLED else numpy_impl


def compile_vectorized(dispatcher, args):
    """Compile ``dispatcher`` for the types of ``args`` with LLVM's SLP
    vectoriser on, unless it already has that overload (or from numba's cache).

    numba leaves the SLP vectoriser off for all code (LLVM has miscompiled
    with it). The kernels of ``grouped_blocked.py`` and ``depthwise_lanes.py``
    need it to hold their accumulators in vector registers, so they are
    compiled here, before their first call, under numba's compiler lock (no
    other compilation can see the flag), and the flag is put back. Their
    callees compile with them.

    Called before every call of those kernels, it first looks up a cheap key
    of the arguments (``_arg_key``): ``numba.typeof`` on each argument took
    ~100 us a call, as long as a small layer's whole kernel call.
    """
    if not JIT_ENABLED:
        return
    key = (dispatcher, tuple(_arg_key(a) for a in args))
    if key in _COMPILED:
        return
    from numba import typeof
    from numba.core import config
    from numba.core.compiler_lock import global_compiler_lock

    sig = tuple(typeof(a) for a in args)
    if sig not in dispatcher.overloads:
        with global_compiler_lock:
            old = config.SLP_VECTORIZE
            config.SLP_VECTORIZE = 1
            try:
                dispatcher.compile(sig)
            finally:
                config.SLP_VECTORIZE = old
    _COMPILED.add(key)


# (dispatcher, argument key) pairs compile_vectorized has seen compiled
_COMPILED = set()


def _arg_key(a):
    """What decides numba's type of an argument: for an array its dtype,
    dimensions, layout and flags; otherwise its Python type."""
    if hasattr(a, "flags") and hasattr(a, "ndim"):
        f = a.flags
        return (a.dtype.str, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned)
    return type(a)
