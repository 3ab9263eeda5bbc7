"""The benchmark table: each workload built for nnzero, PyTorch and the textbook baseline.

A builder returns a ``Case`` (a forward callable and a forward+backward
callable over fixed float32 inputs) or ``None`` when that implementation
does not have the layer (yet): the table then shows ``-``.

Convolutions without groups also get a ``products`` row: the layer's three
matrix products alone (``_products_case``), the floor under any
implementation that computes the layer as im2col-style products.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .baselines import textbook as tb


@dataclass
class Case:
    forward: Callable[[], object]
    step: Callable[[], object]


@dataclass
class Workload:
    name: str
    desc: str
    builders: dict          # impl name -> builder(quick) -> Case | None
    flops: Optional[Callable[[bool], float]] = None  # forward+backward FLOPs


def _rand(shape, seed=0, positive=False):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return np.abs(x) if positive else x


def _nnzero_layer(name):
    import nnzero.layers as L
    return getattr(L, name, None)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _module_case(layer, x, dy):
    def step():
        layer(x)
        layer.backward(dy)
    return Case(lambda: layer(x), step)


def _textbook_case(layer, x, dy):
    """A baseline layer's forward and forward+backward on fixed inputs."""
    def step():
        layer.forward(x)
        layer.backward(dy)
    return Case(lambda: layer.forward(x), step)


def _torch_case(torch, module, x, dy, needs_input_grad=True):
    xt = torch.from_numpy(x).requires_grad_(needs_input_grad)
    dyt = torch.from_numpy(dy)

    def step():
        module(xt).backward(dyt)
    return Case(lambda: module(xt), step)


# -- convolution -----------------------------------------------------------------------
CONV = {  # name: (N, C, H, O, k, stride, padding, groups)
    "conv_stem": (64, 3, 32, 32, 3, 1, 1, 1),
    "conv_mid": (32, 64, 32, 64, 3, 1, 1, 1),
    "conv_strided": (32, 64, 32, 128, 3, 2, 1, 1),
    "conv_k4s2": (32, 64, 32, 128, 4, 2, 1, 1),    # a DCGAN / PatchGAN downsampling layer
    "conv_1x1": (32, 128, 16, 256, 1, 1, 0, 1),
    "conv_grouped": (32, 64, 32, 64, 3, 1, 1, 8),
    "conv_depthwise": (32, 128, 16, 128, 3, 1, 1, 128),
    "conv_dw_strided": (32, 256, 16, 256, 3, 2, 1, 256),   # a MobileNet downsampling layer
    "conv_small": (32, 512, 4, 512, 3, 1, 1, 1),   # a ResNet's last stage on 32x32 images
}


def _conv_cfg(name, quick):
    n, c, h, o, k, s, p, g = CONV[name]
    if quick:
        depthwise = g == c == o
        n, h, c, o = 2, 8, min(c, 16), min(o, 16)
        g = c if depthwise else g
    oh = (h + 2 * p - k) // s + 1
    return n, c, h, o, k, s, p, g, oh


def _products_case(p, q, m, flops):
    """The three products of a layer computed as ``y = A @ B``, alone.

    A is (p, q) (the weight matrix), B is (q, m) (the columns: one per output
    position of the whole batch), G is dL/dy (p, m). The forward is A @ B; the
    step adds the weight gradient G @ B.T and the column gradient A.T @ G,
    each one np.matmul over the whole batch into a preallocated result, so
    nothing but BLAS runs: no im2col, no col2im, no reordering, no bias. Any
    implementation that forms these products (nnzero's im2col paths, the
    textbook's, PyTorch's) takes at least this long at the machine's GEMM
    rate; one that multiplies less (Winograd) can go below it.
    """
    if 3 * 2 * p * q * m != flops:
        raise RuntimeError(f"products case: {p}x{q}x{m} products do {6 * p * q * m} "
                           f"FLOPs, the workload counts {flops}")
    a, b, g = _rand((p, q), 2) * 0.1, _rand((q, m)), _rand((p, m), 1)
    y, da, db = np.empty((p, m), np.float32), np.empty_like(a), np.empty_like(b)

    def forward():
        return np.matmul(a, b, out=y)

    def step():
        np.matmul(a, b, out=y)
        np.matmul(g, b.T, out=da)
        np.matmul(a.T, g, out=db)
    return Case(forward, step)


def _conv_builders(name):
    def nnz(quick):
        conv = _nnzero_layer("Conv2d")
        if conv is None:
            return None
        n, c, h, o, k, s, p, g, oh = _conv_cfg(name, quick)
        layer = conv(c, o, k, stride=s, padding=p, groups=g, rng=0)
        return _module_case(layer, _rand((n, c, h, h)), _rand((n, o, oh, oh), 1))

    def torch_(quick):
        torch = _torch()
        if torch is None:
            return None
        n, c, h, o, k, s, p, g, oh = _conv_cfg(name, quick)
        m = torch.nn.Conv2d(c, o, k, stride=s, padding=p, groups=g)
        return _torch_case(torch, m, _rand((n, c, h, h)), _rand((n, o, oh, oh), 1))

    def text(quick):
        n, c, h, o, k, s, p, g, oh = _conv_cfg(name, quick)
        layer = tb.Convolution(_rand((o, c // g, k, k), 2) * 0.1, np.zeros(o, np.float32),
                               s, p, g)
        return _textbook_case(layer, _rand((n, c, h, h)), _rand((n, o, oh, oh), 1))

    def flops(quick):
        n, c, h, o, k, s, p, g, oh = _conv_cfg(name, quick)
        return 3 * 2 * n * o * oh * oh * (c // g) * k * k

    def products(quick):
        n, c, h, o, k, s, p, g, oh = _conv_cfg(name, quick)
        if g > 1:   # grouped layers run direct loops, not products
            return None
        return _products_case(o, c * k * k, n * oh * oh, flops(quick))

    return {"nnzero": nnz, "torch": torch_, "textbook": text, "products": products}, flops


CONVT = {  # name: (N, C, H=W, O, kernel, stride, padding)
    "convT_up": (32, 64, 16, 32, 4, 2, 1),     # a DCGAN-style upsampling layer
    # a U-Net decoder's: its 2x2 sub-pixel convolution runs as Winograd F(3x3, 2x2)
    "convT_wide": (8, 128, 32, 64, 4, 2, 1),
}


def _convt_cfg(name, quick):
    n, c, h, o, k, s, p = CONVT[name]
    if quick:
        n, h, c, o = 2, 4, 8, 8
    oh = (h - 1) * s - 2 * p + k
    return n, c, h, o, k, s, p, oh


def _convt_builders(name):
    def nnz(quick):
        cls = _nnzero_layer("ConvTranspose2d")
        if cls is None:
            return None
        n, c, h, o, k, s, p, oh = _convt_cfg(name, quick)
        return _module_case(cls(c, o, k, stride=s, padding=p, rng=0), _rand((n, c, h, h)),
                            _rand((n, o, oh, oh), 1))

    def torch_(quick):
        torch = _torch()
        if torch is None:
            return None
        n, c, h, o, k, s, p, oh = _convt_cfg(name, quick)
        m = torch.nn.ConvTranspose2d(c, o, k, stride=s, padding=p)
        return _torch_case(torch, m, _rand((n, c, h, h)), _rand((n, o, oh, oh), 1))

    def text(quick):
        n, c, h, o, k, s, p, oh = _convt_cfg(name, quick)
        layer = tb.Deconvolution(_rand((c, o, k, k), 2) * 0.1, np.zeros(o, np.float32), s, p)
        return _textbook_case(layer, _rand((n, c, h, h)), _rand((n, o, oh, oh), 1))

    def flops(quick):
        n, c, h, o, k, s, p, oh = _convt_cfg(name, quick)
        return 3 * 2 * n * c * h * h * o * k * k

    def products(quick):
        # the forward's columns are W.T (O*k*k, C) @ x (C, N*H*W), col2im'd into y
        n, c, h, o, k, s, p, oh = _convt_cfg(name, quick)
        return _products_case(o * k * k, c, n * h * h, flops(quick))

    return {"nnzero": nnz, "torch": torch_, "textbook": text, "products": products}, flops


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
    table = []
    for name, (n, c, h, o, k, s, p, g) in CONV.items():
        b, f = _conv_builders(name)
        desc = f"Conv2d N={n}, C={c}, {h}x{h}, O={o}, k={k}, s={s}, p={p}" + (
            f", groups={g}" if g > 1 else "")
        table.append(Workload(name, desc, b, f))
    for name, (n, c, h, o, k, s, p) in CONVT.items():
        b, f = _convt_builders(name)
        table.append(Workload(name, f"ConvTranspose2d N={n}, C={c}, {h}x{h}, O={o}, k={k}, "
                                    f"s={s}, p={p}", b, f))
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
