"""Optimizers that update ``Parameter.data`` in place from ``Parameter.grad``.

SGD follows PyTorch (``torch.optim.SGD``) exactly:

    g = grad + weight_decay * theta                 (coupled L2)
    b = g (first step), else momentum * b + (1 - dampening) * g
    g = g + momentum * b if nesterov else b         (when momentum != 0)
    theta = theta - lr * g
"""
from __future__ import annotations

import numbers

import numpy as np

from .layers.module import Parameter


def _check_nonnegative(value, who, arg):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{who}: {arg} must be a non-negative number, got {value!r}")
    return float(value)


class Optimizer:
    def __init__(self, params, who):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{who}: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"{who}: parameter {i} is a {type(p).__name__}, "
                                f"expected nnzero.layers.Parameter")
        self.state = [dict() for _ in self.params]

    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0

    def state_dict(self):
        """Hyper-parameters and per-parameter buffers (copies), by parameter position."""
        hyper = {k: v for k, v in vars(self).items() if k not in ("params", "state")}
        return {"hyper": dict(hyper),
                "state": [{k: np.array(v, copy=True) for k, v in s.items()}
                          for s in self.state]}

    def load_state_dict(self, state_dict):
        if len(state_dict["state"]) != len(self.params):
            raise ValueError(f"{type(self).__name__}.load_state_dict: state for "
                             f"{len(state_dict['state'])} parameters, this optimizer has "
                             f"{len(self.params)}")
        for k, v in state_dict["hyper"].items():
            setattr(self, k, v)
        self.state = [{k: np.array(v, copy=True) for k, v in s.items()}
                      for s in state_dict["state"]]


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, nesterov and L2 decay."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, "SGD")
        self.lr = _check_nonnegative(lr, "SGD", "lr")
        self.momentum = _check_nonnegative(momentum, "SGD", "momentum")
        self.dampening = float(dampening)
        self.weight_decay = _check_nonnegative(weight_decay, "SGD", "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0, "
                             f"got momentum={momentum}, dampening={dampening}")

    def step(self):
        for p, st in zip(self.params, self.state):
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = np.array(g, copy=True)
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g
