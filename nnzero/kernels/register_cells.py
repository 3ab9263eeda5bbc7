"""Accumulators that numba kernels hold in vector registers.

A kernel that sums a block of outputs over a long loop (``grouped_blocked.py``,
``grouped_dots.py``, ``depthwise_lanes.py``) keeps the block's sums in a small
array on its stack (``stack_cells``). Once the constant-length loops over the
block are unrolled, LLVM turns the array into registers and its SLP
vectoriser packs them into vectors; such kernels are compiled with that
vectoriser on (``_jit.compile_vectorized``), and without it they run as
scalar code.

RP, the positions of a block, and ACC, the cells of the array, depend on the
vectors the kernels are compiled for (``_jit.WIDE_VECTORS``); numba reads them
as compile-time constants.
"""
from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import WIDE_VECTORS

# Positions a block: 16 (two 8-wide float32 vectors a channel, 8 registers of
# AVX2's 16 for the 4 channels), or 64 where the loops are compiled for
# 512-bit vectors (``_jit.WIDE_VECTORS``: four 16-wide vectors a channel, 16
# of AVX-512's 32 registers). Measured on the Intel machine (2026-11-29, one
# thread, ``_sums`` over 32 groups of 16 channels, 8 samples of 14x14):
# RP = 16 91 GFLOP/s (100 with 512-bit vectors, where 4 accumulators cannot
# cover the multiply-add latency), 32: 96-105 (125), 64: 93-101 (138-151).
RP = 64 if WIDE_VECTORS else 16
# Accumulator cells: the most any kernel takes (``_sums`` 4*RP, ``_dots``
# 2*2*RP, ``_dots16`` 4*16, ``_dots16x8`` 8*16, the depthwise lanes 8*L).
ACC = 4 * RP


@intrinsic
def stack_cells(typingctx, like):
    """A 1-D C-contiguous array of ACC elements of ``like``'s dtype, on the
    stack of the calling function (allocated once, in its entry block)."""
    dtype = like.dtype
    arr = types.Array(dtype, 1, "C")

    def codegen(context, builder, sig, args):
        item = context.get_value_type(dtype)
        ptr = cgutils.alloca_once(builder, item, size=ACC)
        size = context.get_constant(types.intp, context.get_abi_sizeof(item))
        view = context.make_array(arr)(context, builder)
        context.populate_array(view, data=ptr, shape=[context.get_constant(types.intp, ACC)],
                               strides=[size], itemsize=size, meminfo=None)
        return view._getvalue()

    return arr(like), codegen
