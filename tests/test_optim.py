"""Optimizers and schedulers against hand-computed updates; penalties; losses."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import seeds
from nnzero import gradcheck
from nnzero.layers import Linear, Parameter, PReLU, Sequential, BatchNorm1d
from nnzero.losses import BCEWithLogitsLoss, MSELoss, NLLLoss
from nnzero.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR
from nnzero.regularization import (add_l1_grad, add_l2_grad, decay_parameters, l1_penalty,
                                   l2_penalty)


def _adam_by_hand(theta, grads, lr, b1, b2, eps, wd, decoupled):
    m = v = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        if decoupled:
            theta = theta * (1 - lr * wd)
        else:
            g = g + wd * theta
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        theta = theta - lr * mhat / (np.sqrt(vhat) + eps)
    return theta


@pytest.mark.parametrize("cls,decoupled", [(Adam, False), (AdamW, True)])
def test_adam_and_adamw_match_the_formulas(cls, decoupled):
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(6)
    grads = [rng.standard_normal(6) for _ in range(5)]
    p = Parameter(theta)
    opt = cls([p], lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    for g in grads:
        p.grad[...] = g
        opt.step()
    # (PyTorch divides sqrt(v) by sqrt(1 - b2^t) before adding eps: the same as vhat here)
    np.testing.assert_allclose(p.data, _adam_by_hand(theta, grads, 0.01, 0.8, 0.99, 1e-6, 0.1,
                                                     decoupled), rtol=1e-12)


def test_sgd_plain_equals_decoupled_decay_and_state_round_trip():
    p, q = Parameter(np.array([1.0, -2.0])), Parameter(np.array([1.0, -2.0]))
    a = SGD([p], lr=0.1, weight_decay=0.5)
    p.grad[...] = [0.3, 0.1]
    a.step()
    np.testing.assert_allclose(p.data, np.array([1.0, -2.0]) * (1 - 0.05) - 0.1 * np.array(
        [0.3, 0.1]))
    b = SGD([q], lr=0.1, momentum=0.9)
    q.grad[...] = 1.0
    b.step()
    c = SGD([Parameter(q.data)], lr=0.1, momentum=0.9)
    c.load_state_dict(b.state_dict())
    np.testing.assert_array_equal(c.state[0]["momentum_buffer"], [1.0, 1.0])


def test_schedulers_closed_forms():
    opt = SGD([Parameter(np.zeros(1))], lr=1.0)
    step = StepLR(opt, step_size=3, gamma=0.5)
    lrs = []
    for _ in range(7):
        step.step()
        lrs.append(opt.lr)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    opt = SGD([Parameter(np.zeros(1))], lr=0.2)
    cos = CosineAnnealingLR(opt, T_max=4, eta_min=0.0)
    seen = []
    for _ in range(4):
        cos.step()
        seen.append(opt.lr)
    np.testing.assert_allclose(seen, [0.1 * (1 + math.cos(math.pi * e / 4)) for e in range(1, 5)])
    fresh = CosineAnnealingLR(SGD([Parameter(np.zeros(1))], lr=0.2), T_max=4)
    fresh.load_state_dict(cos.state_dict())
    assert fresh.optimizer.lr == opt.lr


def test_optimizer_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        SGD([], lr=0.1)
    with pytest.raises(TypeError, match="expected nnzero.layers.Parameter"):
        SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        SGD([Parameter(np.zeros(1))], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        Adam([Parameter(np.zeros(1))], betas=(0.9, 1.0))


def test_penalties_value_and_gradient():
    p = Parameter(np.array([1.0, -2.0, 0.0]))
    assert l2_penalty([p], 0.1) == pytest.approx(0.05 * 5)
    assert l1_penalty([p], 0.1) == pytest.approx(0.3)
    add_l2_grad([p], 0.1)
    np.testing.assert_allclose(p.grad, [0.1, -0.2, 0.0])
    p.grad[...] = 0
    add_l1_grad([p], 0.1)
    np.testing.assert_allclose(p.grad, [0.1, -0.1, 0.0])  # sign(0) = 0
    model = Sequential(Linear(3, 4), BatchNorm1d(4), PReLU(), Linear(4, 2))
    assert decay_parameters(model) == [model[0].weight, model[3].weight]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(n=st.integers(1, 4), c=st.integers(1, 4), seed=seeds())
def test_other_losses_gradients_and_values(reduction, n, c, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, c)) * 3
    t = rng.uniform(0, 1, (n, c))
    loss = BCEWithLogitsLoss(reduction=reduction, pos_weight=rng.uniform(0.5, 2, c))
    gradcheck(loss, (z, t))
    mse = MSELoss(reduction=reduction)
    gradcheck(mse, (z, t))
    per = (z - t) ** 2
    np.testing.assert_allclose(mse(z, t), {"mean": per.mean(), "sum": per.sum(),
                                           "none": per}[reduction])
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    k = rng.integers(0, c, n)
    nll = NLLLoss(reduction=reduction)
    gradcheck(nll, (logp, k))
    per = -logp[np.arange(n), k]
    np.testing.assert_allclose(nll(logp, k), {"mean": per.mean(), "sum": per.sum(),
                                              "none": per}[reduction])


def test_bce_is_stable_and_matches_the_definition():
    z = np.array([-800.0, -3.0, 0.0, 2.0, 800.0])
    t = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    loss = BCEWithLogitsLoss(reduction="none")(z, t)
    assert np.all(np.isfinite(loss))
    zm, tm = z[1:4], t[1:4]
    sig = 1 / (1 + np.exp(-zm))
    np.testing.assert_allclose(loss[1:4], -(tm * np.log(sig) + (1 - tm) * np.log(1 - sig)))
    np.testing.assert_allclose(loss[[0, 4]], [800.0, 800.0])
