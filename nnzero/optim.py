"""Optimizers that update ``Parameter.data`` in place from ``Parameter.grad``.

SGD follows PyTorch (``torch.optim.SGD``) exactly:

    g = grad + weight_decay * theta                 (coupled L2)
    b = g (first step), else momentum * b + (1 - dampening) * g
    g = g + momentum * b if nesterov else b         (when momentum != 0)
    theta = theta - lr * g
"""
from __future__ import annotations

import math
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


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) as PyTorch computes it; ``weight_decay`` is the
    coupled L2 form (added to the gradient, so it passes through m and v).

        g = grad + wd theta;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        theta -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        who = type(self).__name__
        super().__init__(params, who)
        self.lr = _check_nonnegative(lr, who, "lr")
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{who}: betas must be two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _check_nonnegative(eps, who, "eps")
        self.weight_decay = _check_nonnegative(weight_decay, who, "weight_decay")

    def step(self):
        b1, b2 = self.betas
        for p, st in zip(self.params, self.state):
            g = p.grad
            if self.weight_decay:
                if self._decoupled:
                    p.data *= 1 - self.lr * self.weight_decay
                else:
                    g = g + self.weight_decay * p.data
            if "step" not in st:
                st["step"] = np.array(0, dtype=np.int64)
                st["exp_avg"] = np.zeros_like(p.data)
                st["exp_avg_sq"] = np.zeros_like(p.data)
            st["step"] = st["step"] + 1
            t = int(st["step"])
            m, v = st["exp_avg"], st["exp_avg_sq"]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + self.eps
            p.data -= (self.lr / (1 - b1 ** t)) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019):
    theta *= 1 - lr wd first, then the Adam step from the raw gradient."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr, betas, eps, weight_decay)


class _Scheduler:
    """Sets ``optimizer.lr`` from the epoch count; call ``step()`` once per epoch."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)

    def get_last_lr(self):
        return self.optimizer.lr

    def state_dict(self):
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, state):
        self.base_lr = float(state["base_lr"])
        self.last_epoch = int(state["last_epoch"])
        self.optimizer.lr = self.lr_at(self.last_epoch)


class StepLR(_Scheduler):
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer)
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, float(gamma)

    def lr_at(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(_Scheduler):
    """lr = eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2 (closed form)."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer)
        if not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        self.T_max, self.eta_min = T_max, float(eta_min)

    def lr_at(self, epoch):
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * epoch / self.T_max)) / 2
