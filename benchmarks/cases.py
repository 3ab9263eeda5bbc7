"""What a benchmark workload is, and the helpers its builders share.

A builder returns a ``Case`` (a forward callable and a forward+backward
callable over fixed float32 inputs) or ``None`` when that implementation
does not have the layer (yet): the table then shows ``-``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


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
