"""nnzero: a neural-network engine written from scratch in NumPy and numba.

Every forward and backward pass is readable NumPy (``nnzero.functional``),
the hot loops are numba kernels with NumPy twins (``nnzero.kernels``), the
layers behave like PyTorch's (``nnzero.layers``), and every gradient is
checked against finite differences (``nnzero.gradcheck``).
"""
from ._malloc import steady_malloc
from .gradcheck import GradcheckError, gradcheck
from .summary import summary

steady_malloc()   # glibc's malloc thresholds at their steady state: see _malloc.py

__version__ = "0.1.0"
__all__ = ["gradcheck", "GradcheckError", "summary", "__version__"]
