"""The only loops in nnzero: numba kernels, each with a pure-NumPy twin.

Every public kernel ``name`` is bound to ``name_numba`` or ``name_numpy``
(same signature, same result); see ``_jit.py`` for the switch. Kernels trust
their callers: inputs arrive validated, contiguous and of the right dtype.
"""
from ._jit import JIT_ENABLED

__all__ = ["JIT_ENABLED"]
