"""gradcheck must fail on a wrong backward, and name the worst element."""
import numpy as np
import pytest

from nnzero import GradcheckError, gradcheck
from nnzero.layers import Linear, Module, Sigmoid


class WrongSigmoid(Sigmoid):
    """Sigmoid whose backward forgets the (1 - y) factor."""

    def _backward(self, dy, y):
        return dy * y


class WrongBiasGrad(Linear):
    def _backward(self, dy, cache):
        dx = super()._backward(dy, cache)
        self.bias.grad[1] += 0.5  # a wrong parameter gradient, right input gradient
        return dx


def test_catches_wrong_input_gradient():
    x = np.linspace(-2, 2, 6).reshape(2, 3)
    with pytest.raises(GradcheckError, match=r"input x at index \(\d, \d\)"):
        gradcheck(WrongSigmoid(), x)
    assert gradcheck(Sigmoid(), x)


def test_catches_wrong_parameter_gradient_and_names_it():
    layer = WrongBiasGrad(3, 2, dtype=np.float64, rng=0)
    with pytest.raises(GradcheckError, match=r"parameter bias at index \(1,\)"):
        gradcheck(layer, np.ones((2, 3)))


def test_function_form_and_float32_refusal():
    def square(x):
        return x * x, lambda dy: (2 * dy * x,)

    def wrong(x):
        return x * x, lambda dy: (dy * x,)

    x = np.array([1.0, -2.0, 0.5])
    assert gradcheck(square, x)
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(wrong, x)
    with pytest.raises(TypeError, match="float64"):
        gradcheck(Sigmoid(), x.astype(np.float32))
    with pytest.raises(TypeError, match="float64"):
        gradcheck(Linear(3, 1), x)


def test_detects_a_backward_that_mutates_dy():
    class Mutating(Module):
        def _forward(self, x):
            return 2 * x, None

        def _backward(self, dy, cache):
            dy *= 2
            return dy

    with pytest.raises(GradcheckError, match="modified dy"):
        gradcheck(Mutating(), np.ones(3))
