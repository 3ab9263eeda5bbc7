"""Stateless math: every operation as a ``*_forward`` / ``*_backward`` pair.

``y, cache = op_forward(x, ...)`` computes the output and whatever the
derivative needs; ``op_backward(dy, cache)`` returns the gradient with respect
to the input (and to each parameter, in argument order). Each docstring or
section comment states the formula and the derivative it implements.
"""
from .activations import *  # noqa: F401,F403
from .activations_extra import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
