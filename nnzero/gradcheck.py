"""Check a hand-written backward pass against central finite differences.

For a random upstream gradient ``g`` (never all ones: a sum of outputs hides
errors such as a zero softmax gradient), the scalar ``f = sum(g * y)`` has
``df/dv = (dL/dv with dL/dy = g)`` for every input or parameter ``v``. Each
element of ``v`` is nudged by ``+-eps`` and

    numerical = (f(v + eps) - f(v - eps)) / (2 eps)

is compared with the analytic gradient: ``|a - n| <= atol + rtol * |n|``.

Use float64 (finite differences in float32 are noise) and keep inputs away
from kinks (ReLU at 0, ties in a max window), where the derivative jumps.

Stochastic modules are checked with their random draws held fixed: the state
of every ``np.random.Generator`` found on the module tree is restored before
each forward pass, so every evaluation replays the same draws.
"""
from __future__ import annotations

import numpy as np

from .layers.module import Module


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree; the message names the worst element."""


def _generators(module):
    gens = []
    for m in module.modules():
        for value in vars(m).values():
            if isinstance(value, np.random.Generator) and all(value is not g for g in gens):
                gens.append(value)
    return gens


def _compare(name, analytic, numerical, atol, rtol):
    if analytic is None:
        analytic = np.zeros_like(numerical)
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numerical.shape:
        raise GradcheckError(f"gradcheck: gradient of {name} has shape {analytic.shape}, "
                             f"expected {numerical.shape}")
    err = np.abs(analytic - numerical)
    allowed = atol + rtol * np.abs(numerical)
    bad = ~(err <= allowed)  # NaN counts as a failure
    if bad.any():
        excess = np.where(np.isnan(err), np.inf, err - allowed)
        worst = np.unravel_index(int(np.argmax(excess)), err.shape)
        raise GradcheckError(
            f"gradcheck: gradient mismatch for {name} at index {tuple(int(i) for i in worst)}: "
            f"analytic {analytic[worst]!r}, numerical {numerical[worst]!r} "
            f"(|difference| {err[worst]:.3g} > atol + rtol*|numerical| = {allowed[worst]:.3g}); "
            f"{int(bad.sum())} of {bad.size} elements differ")


def _numerical(f, array, eps):
    """Central differences of the scalar ``f()`` with respect to ``array`` (perturbed in place)."""
    grad = np.zeros(array.shape, dtype=np.float64)
    for idx in np.ndindex(array.shape):
        orig = array[idx]
        array[idx] = orig + eps
        fp = f()
        array[idx] = orig - eps
        fm = f()
        array[idx] = orig
        grad[idx] = (fp - fm) / (2 * eps)
    return grad


def _require_float64(name, array):
    if array.dtype != np.float64:
        raise TypeError(f"gradcheck: {name} must be float64 for finite differences to be "
                        f"meaningful, got {array.dtype} (build layers with dtype=np.float64)")


def gradcheck(module_or_fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0):
    """Compare a manual backward with central finite differences; raise on mismatch.

    ``module_or_fn`` is either

    * a ``Module``: ``inputs`` is ``x`` or a tuple ``(x, *extra)`` passed to
      ``forward``; the gradient with respect to ``x`` and to every parameter is
      checked (parameters' ``.grad`` are zeroed first and hold the analytic
      gradient afterwards); or
    * a function ``fn(*inputs) -> (y, backward)`` where ``backward(dy)``
      returns one gradient per input (``None`` for an input not to check),
      e.g. a wrapper around a functional ``*_forward``/``*_backward`` pair.

    Returns True, or raises ``GradcheckError`` naming the worst element.
    Also checks that neither pass modifies its arguments and that ``dx`` has
    the shape and dtype of ``x``.
    """
    if not isinstance(inputs, tuple):
        inputs = (inputs,)
    inputs = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in inputs)
    rng = np.random.default_rng(seed)
    if isinstance(module_or_fn, Module):
        return _check_module(module_or_fn, inputs, eps, atol, rtol, rng)
    if callable(module_or_fn):
        return _check_function(module_or_fn, inputs, eps, atol, rtol, rng)
    raise TypeError(f"gradcheck: expected a Module or a callable, got "
                    f"{type(module_or_fn).__name__}")


def _first(y):
    return y[0] if isinstance(y, tuple) else y


def _check_module(module, inputs, eps, atol, rtol, rng):
    x, extra = inputs[0], inputs[1:]
    _require_float64("the input", x)
    params = list(module.named_parameters())
    for name, p in params:
        _require_float64(f"parameter {name}", p.data)
    gens = _generators(module)
    states = [g.bit_generator.state for g in gens]

    def run(xv):
        for g, s in zip(gens, states):
            g.bit_generator.state = s
        return _first(module(xv, *extra))

    x_before = x.copy()
    y = np.asarray(run(x))
    if not np.all(np.array_equal(x, x_before, equal_nan=True)):
        raise GradcheckError("gradcheck: forward modified its input x")
    dy = rng.standard_normal(y.shape)
    dy_before = dy.copy()
    module.zero_grad()
    dx = module.backward(dy)
    if not np.array_equal(dy, dy_before):
        raise GradcheckError("gradcheck: backward modified dy")
    if dx.shape != x.shape or dx.dtype != x.dtype:
        raise GradcheckError(f"gradcheck: dx has shape {dx.shape} and dtype {dx.dtype}, "
                             f"expected {x.shape} and {x.dtype}")
    analytic = {name: p.grad.copy() for name, p in params}

    def f():
        return float(np.sum(np.asarray(run(x)) * dy))

    _compare("input x", dx, _numerical(f, x, eps), atol, rtol)
    for name, p in params:
        _compare(f"parameter {name}", analytic[name], _numerical(f, p.data, eps), atol, rtol)
    # leave the module as after one forward/backward at the unperturbed point
    run(x)
    module.zero_grad()
    module.backward(dy)
    return True


def _check_function(fn, inputs, eps, atol, rtol, rng):
    for i, a in enumerate(inputs):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            _require_float64(f"input {i}", a)
    y, backward = fn(*inputs)
    dy = rng.standard_normal(np.shape(y))
    grads = backward(dy)
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    if len(grads) != len(inputs):
        raise GradcheckError(f"gradcheck: backward returned {len(grads)} gradients for "
                             f"{len(inputs)} inputs")

    def f():
        return float(np.sum(np.asarray(fn(*inputs)[0]) * dy))

    for i, (a, g) in enumerate(zip(inputs, grads)):
        if g is None or not isinstance(a, np.ndarray):
            continue
        _compare(f"input {i}", g, _numerical(f, a, eps), atol, rtol)
    return True
