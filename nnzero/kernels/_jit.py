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


def _host_has_avx512():
    """Whether numba compiles for a CPU with AVX-512 (its NUMBA_CPU_NAME /
    NUMBA_CPU_FEATURES when set, else the host's features)."""
    try:
        from numba.core import config
        if config.CPU_NAME is not None:   # e.g. 'generic', for a portable cache
            return "+avx512f" in (config.CPU_FEATURES or "")
        from llvmlite import binding
        return "+avx512f" in (config.CPU_FEATURES or binding.get_host_cpu_features().flatten())
    except Exception:   # noqa: BLE001 -- an unknown numba/llvmlite: take the narrow vectors
        return False


# Whether the kernels that ask for it (``compile_vectorized(..., wide=True)``)
# are compiled for 512-bit vectors. LLVM prefers 256-bit vectors on every
# AVX-512 Intel core since Skylake-X (the clock drops less), for all code;
# the blocked grouped loops hold more accumulators in the 32 512-bit
# registers and measured up to 1.6x faster with them (``grouped_blocked.py``).
# It follows the CPU numba compiles for and nothing else: kernels read it as a
# compile-time constant (their block sizes), and numba's disk cache tells
# compiled code apart by that CPU, not by any other setting.
WIDE_VECTORS = JIT_ENABLED and _host_has_avx512()
_PREFER_512 = '"prefer-vector-width"="512"'


def compile_vectorized(dispatcher, args, wide=False):
    """Compile ``dispatcher`` for the types of ``args`` with LLVM's SLP
    vectoriser on, unless it already has that overload (or from numba's cache).

    numba leaves the SLP vectoriser off for all code (LLVM has miscompiled
    with it). The kernels of ``grouped_blocked.py`` and ``depthwise_lanes.py``
    need it to hold their accumulators in vector registers, so they are
    compiled here, before their first call, under numba's compiler lock (no
    other compilation can see the flag), and the flag is put back. Their
    callees compile with them.

    With ``wide`` (and WIDE_VECTORS), every function compiled in that window
    also carries LLVM's ``prefer-vector-width=512`` attribute, which lifts the
    256-bit preference for those functions alone: numba has no switch for one
    function's vector width, so the attribute is added to the IR on its way
    into numba's code library. If numba's internals differ from what this
    expects, the kernel compiles without it (correct, 256-bit).

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
            restore = _prefer_512() if wide and WIDE_VECTORS else None
            try:
                dispatcher.compile(sig)
            finally:
                config.SLP_VECTORIZE = old
                if restore is not None:
                    restore()
    _COMPILED.add(key)


def _prefer_512():
    """Give every function numba's CPU code library takes in from now on the
    512-bit preference; returns the function that stops it (None if numba's
    internals are not as expected). Call under numba's compiler lock."""
    try:
        from numba.core.codegen import CPUCodeLibrary
        original = CPUCodeLibrary.add_ir_module
    except (ImportError, AttributeError):
        return None

    def add_ir_module(self, ir_module, *args, **kwargs):
        try:
            for fn in ir_module.functions:
                if not fn.is_declaration:
                    # llvmlite checks attribute names against a fixed list that
                    # has no key=value attributes; its set prints each item as
                    # written
                    set.add(fn.attributes, _PREFER_512)
        except (AttributeError, TypeError):   # not llvmlite's IR as expected: 256-bit
            pass
        return original(self, ir_module, *args, **kwargs)

    CPUCodeLibrary.add_ir_module = add_ir_module

    def restore():
        CPUCodeLibrary.add_ir_module = original
    return restore


# (dispatcher, argument key) pairs compile_vectorized has seen compiled
_COMPILED = set()


def _arg_key(a):
    """What decides numba's type of an argument: for an array its dtype,
    dimensions, layout and flags; otherwise its Python type."""
    if hasattr(a, "flags") and hasattr(a, "ndim"):
        f = a.flags
        return (a.dtype.str, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned)
    return type(a)
