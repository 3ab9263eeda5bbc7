"""The Module protocol: registration, state, train/eval, errors, Sequential."""
import numpy as np
import pytest

from nnzero import gradcheck
from nnzero.layers import Linear, Module, Parameter, PReLU, ReLU, RReLU, Sequential, Sigmoid

F64 = np.float64


def mlp(seed=0, dtype=F64):
    rng = np.random.default_rng(seed)
    return Sequential(Linear(4, 5, dtype=dtype, rng=rng), ReLU(), Linear(5, 3, dtype=dtype, rng=rng))


def test_sequential_gradients_and_pytorch_keys():
    model = mlp()
    x = np.random.default_rng(1).standard_normal((6, 4))
    gradcheck(model, x)
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in model.named_parameters()] == list(model.state_dict())


def test_backward_accumulates_and_zero_grad_resets():
    model = mlp()
    x = np.random.default_rng(1).standard_normal((2, 4))
    dy = np.random.default_rng(2).standard_normal((2, 3))
    model(x)
    model.backward(dy)
    once = [p.grad.copy() for p in model.parameters()]
    model(x)
    model.backward(dy)
    for p, g in zip(model.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * g)
    model.zero_grad()
    assert all(not p.grad.any() for p in model.parameters())


def test_state_dict_round_trip_copies_in_place():
    a, b = mlp(0), mlp(1)
    params_before = list(b.parameters())
    b.load_state_dict(a.state_dict())
    x = np.ones((1, 4))
    np.testing.assert_array_equal(a(x), b(x))
    assert all(p is q for p, q in zip(b.parameters(), params_before))  # optimizers keep refs
    sd = a.state_dict()
    sd["0.weight"][...] = 0  # a copy, not a view
    assert a[0].weight.data.any()


def test_load_state_dict_errors():
    m = mlp()
    sd = m.state_dict()
    sd["0.weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"0.weight has shape \(2, 2\), expected \(5, 4\)"):
        m.load_state_dict(sd)
    with pytest.raises(KeyError, match="missing keys"):
        m.load_state_dict({})


def test_train_eval_recurse():
    model = Sequential(Linear(2, 2), RReLU(rng=0), Sequential(ReLU()))
    model.eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_repr_like_pytorch():
    assert repr(mlp()) == (
        "Sequential(\n"
        "  (0): Linear(in_features=4, out_features=5, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Linear(in_features=5, out_features=3, bias=True)\n"
        ")")
    assert repr(PReLU(3)) == "PReLU(num_parameters=3)"


def test_backward_before_forward_and_wrong_dy():
    with pytest.raises(RuntimeError, match="Sigmoid: backward\\(\\) called before forward\\(\\)"):
        Sigmoid().backward(np.ones(3))
    layer = Linear(3, 2, dtype=F64)
    layer(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"dy must have the shape of the last output \(4, 2\), "
                                         r"got \(4, 3\)"):
        layer.backward(np.ones((4, 3)))
    with pytest.raises(TypeError, match="dy must be a floating-point"):
        layer.backward(np.ones((4, 2), dtype=np.int64))


def test_forward_and_backward_leave_arguments_alone():
    model = mlp(dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((3, 4))  # float64: the layer casts
    x_copy = x.copy()
    y = model(x)
    dy = np.ones_like(y)
    dx = model.backward(dy)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, 1)
    assert dx.dtype == np.float64 and y.dtype == np.float32
    # the values: the two affine maps and the ReLU between them, by hand in float64
    (w1, b1), (w2, b2) = [(m.weight.data.astype(F64), m.bias.data.astype(F64))
                          for m in (model[0], model[2])]
    h = x @ w1.T + b1
    np.testing.assert_allclose(y, np.maximum(h, 0) @ w2.T + b2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, ((dy @ w2) * (h > 0)) @ w1, rtol=1e-5, atol=1e-6)


def test_non_contiguous_input_gives_same_answer():
    model = mlp()
    x = np.random.default_rng(0).standard_normal((4, 6))
    view = x[:, ::-1][:, 1:5]
    y1 = model(view)
    d1 = model.backward(np.ones_like(y1))
    y2 = model(np.ascontiguousarray(view))
    d2 = model.backward(np.ones_like(y2))
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(d1, d2)


def test_custom_module_registration_and_sequential_type_check():
    class Scale(Module):
        def __init__(self):
            super().__init__(F64)
            self.w = Parameter(np.array([2.0]))
            self.inner = Linear(2, 2, dtype=F64)

        def _forward(self, x):
            return x * self.w.data, x

        def _backward(self, dy, x):
            self.w.grad += np.sum(dy * x)
            return dy * self.w.data

    m = Scale()
    assert [n for n, _ in m.named_parameters()] == ["w", "inner.weight", "inner.bias"]
    gradcheck(m, np.array([1.0, -2.0, 3.0]))
    with pytest.raises(TypeError, match="Sequential: argument 1 must be a Module"):
        Sequential(ReLU(), lambda x: x)
