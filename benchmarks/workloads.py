"""The benchmark table: each workload built for nnzero, PyTorch and the textbook baseline.

The convolution rows are built in ``workloads_conv.py``; this module adds
pooling, Linear, the activations and one SGD step of a small CNN. What a
builder returns is described in ``cases.py``.
"""
from __future__ import annotations

import numpy as np

from .baselines import textbook as tb
from .cases import (Case, Workload, _module_case, _nnzero_layer, _rand, _textbook_case,
                    _torch, _torch_case)
from .workloads_conv import conv_workloads


# -- pooling ---------------------------------------------------------------------------
POOL = {  # name: (nnzero class, torch class, textbook mode, k, stride, padding, extra kwargs)
    "maxpool_2": ("MaxPool2d", "MaxPool2d", "max", 2, 2, 0, {}),
    "maxpool_3s2": ("MaxPool2d", "MaxPool2d", "max", 3, 2, 1, {}),
    "avgpool_3s1": ("AvgPool2d", "AvgPool2d", "avg", 3, 1, 1, {}),
    "stochpool_2": ("StochasticPool2d", None, "stochastic", 2, 2, 0, {"rng": 0}),
    "mixedpool_2": ("MixedPool2d", None, "mixed", 2, 2, 0, {"rng": 0}),
}


def _pool_builders(name):
    cls_name, torch_name, mode, k, s, p, extra = POOL[name]

    def shape(quick):
        n, c, h = (2, 4, 8) if quick else (64, 64, 32)
        oh = (h + 2 * p - k) // s + 1
        return (n, c, h, h), (n, c, oh, oh)

    def nnz(quick):
        cls = _nnzero_layer(cls_name)
        if cls is None:
            return None
        xs, ys = shape(quick)
        return _module_case(cls(k, stride=s, padding=p, **extra), _rand(xs, positive=True),
                            _rand(ys, 1))

    def torch_(quick):
        torch = _torch()
        if torch is None or torch_name is None:
            return None
        xs, ys = shape(quick)
        m = getattr(torch.nn, torch_name)(k, stride=s, padding=p)
        return _torch_case(torch, m, _rand(xs, positive=True), _rand(ys, 1))

    def text(quick):
        xs, ys = shape(quick)
        layer = tb.Pooling(k, s, p, mode, rng=np.random.default_rng(0))
        return _textbook_case(layer, _rand(xs, positive=True), _rand(ys, 1))

    return {"nnzero": nnz, "torch": torch_, "textbook": text}, None


# -- linear ----------------------------------------------------------------------------
def _linear_cfg(quick):
    return (8, 64, 32) if quick else (256, 4096, 1024)


def _linear_builders():
    def nnz(quick):
        n, fin, fout = _linear_cfg(quick)
        return _module_case(_nnzero_layer("Linear")(fin, fout, rng=0), _rand((n, fin)),
                            _rand((n, fout), 1))

    def torch_(quick):
        torch = _torch()
        if torch is None:
            return None
        n, fin, fout = _linear_cfg(quick)
        return _torch_case(torch, torch.nn.Linear(fin, fout), _rand((n, fin)),
                           _rand((n, fout), 1))

    def text(quick):
        n, fin, fout = _linear_cfg(quick)
        layer = tb.Affine(_rand((fin, fout), 2) * 0.01, np.zeros(fout, np.float32))
        return _textbook_case(layer, _rand((n, fin)), _rand((n, fout), 1))

    def flops(quick):
        n, fin, fout = _linear_cfg(quick)
        return 3 * 2 * n * fin * fout

    return {"nnzero": nnz, "torch": torch_, "textbook": text}, flops


# -- activations -----------------------------------------------------------------------
ACTIVATIONS = ["Sigmoid", "Tanh", "ReLU", "Softplus", "LeakyReLU", "PReLU", "RReLU", "ELU",
               "Swish", "GELU", "SELU", "SiLU", "Mish", "Hardswish", "Softmax"]


def _act_builders(name):
    def shape(quick):
        return (2, 4, 8, 8) if quick else (64, 32, 32, 32)

    def nnz(quick):
        cls = _nnzero_layer(name)
        if cls is None:
            return None
        kwargs = {"dim": 1} if name == "Softmax" else ({"rng": 0} if name == "RReLU" else {})
        return _module_case(cls(**kwargs), _rand(shape(quick)), _rand(shape(quick), 1))

    def torch_(quick):
        torch = _torch()
        if torch is None:
            return None
        if name == "Swish":
            beta = torch.ones(1, requires_grad=True)

            def m(x):
                return x * torch.sigmoid(beta * x)
        else:
            m = getattr(torch.nn, name)(**({"dim": 1} if name == "Softmax" else {}))
        return _torch_case(torch, m, _rand(shape(quick)), _rand(shape(quick), 1))

    def text(quick):
        x, dy = _rand(shape(quick)), _rand(shape(quick), 1)
        if name == "ReLU":
            return _textbook_case(tb.Relu(), x, dy)
        pair = tb.ACTIVATIONS.get(name)
        if pair is None:
            return None
        fwd, bwd = pair

        def step_pair():
            y, saved = fwd(x)
            bwd(dy, saved)
        return Case(lambda: fwd(x), step_pair)

    return {"nnzero": nnz, "torch": torch_, "textbook": text}, None


# -- one SGD step of a small CNN -------------------------------------------------------
def _cnn_cfg(quick):
    return (4, 8) if quick else (64, 32)


def _cnn_builders():
    def nnz(quick):
        import nnzero.layers as L
        if not all(hasattr(L, n) for n in ("Conv2d", "MaxPool2d")):
            return None
        from nnzero.losses import CrossEntropyLoss
        from nnzero.optim import SGD
        n, h = _cnn_cfg(quick)
        rng = np.random.default_rng(0)
        model = L.Sequential(L.Conv2d(3, 32, 3, padding=1, rng=rng), L.ReLU(), L.MaxPool2d(2),
                             L.Conv2d(32, 64, 3, padding=1, rng=rng), L.ReLU(), L.MaxPool2d(2),
                             L.Flatten(), L.Linear(64 * (h // 4) ** 2, 10, rng=rng))
        loss, opt = CrossEntropyLoss(), SGD(model.parameters(), lr=0.01)
        x, t = _rand((n, 3, h, h)), np.arange(n) % 10

        def step():
            opt.zero_grad()
            loss(model(x), t)
            model.backward(loss.backward())
            opt.step()
        return Case(lambda: loss(model(x), t), step)

    def torch_(quick):
        torch = _torch()
        if torch is None:
            return None
        nn = torch.nn
        n, h = _cnn_cfg(quick)
        model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(64 * (h // 4) ** 2, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.from_numpy(_rand((n, 3, h, h)))
        t = torch.from_numpy(np.arange(n) % 10)
        lossf = nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            lossf(model(x), t).backward()
            opt.step()
        return Case(lambda: lossf(model(x), t), step)

    def text(quick):
        n, h = _cnn_cfg(quick)
        layers = [tb.Convolution(_rand((32, 3, 3, 3), 2) * 0.1, np.zeros(32, np.float32), 1, 1),
                  tb.Relu(), tb.Pooling(2), tb.Convolution(_rand((64, 32, 3, 3), 3) * 0.05,
                                                           np.zeros(64, np.float32), 1, 1),
                  tb.Relu(), tb.Pooling(2),
                  tb.Affine(_rand((64 * (h // 4) ** 2, 10), 4) * 0.01, np.zeros(10, np.float32))]
        last = tb.SoftmaxWithLoss()
        x, t = _rand((n, 3, h, h)), np.arange(n) % 10

        def forward():
            y = x
            for layer in layers:
                y = layer.forward(y)
            return last.forward(y, t)

        def step():
            forward()
            d = last.backward()
            for layer in reversed(layers):
                d = layer.backward(d)
            for layer in layers:
                if hasattr(layer, "dw"):
                    layer.w -= 0.01 * layer.dw
                    layer.b -= 0.01 * layer.db
        return Case(forward, step)

    return {"nnzero": nnz, "torch": torch_, "textbook": text}, None


def all_workloads():
    table = conv_workloads()
    for name, (cls, _, _, k, s, p, _) in POOL.items():
        b, f = _pool_builders(name)
        table.append(Workload(name, f"{cls} N=64, C=64, 32x32, k={k}, s={s}, p={p}", b, f))
    b, f = _linear_builders()
    table.append(Workload("linear", "Linear N=256, 4096 -> 1024", b, f))
    for act in ACTIVATIONS:
        b, f = _act_builders(act)
        table.append(Workload(f"act_{act}", f"{act} on (64, 32, 32, 32)", b, f))
    b, f = _cnn_builders()
    table.append(Workload("cnn_step", "SGD step, 2-conv CNN + cross-entropy, N=64 3x32x32", b, f))
    return table
