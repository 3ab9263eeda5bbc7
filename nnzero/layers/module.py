"""Parameter, Module and Sequential: the state that wraps the functional math.

A Module's ``forward`` checks and casts its input, calls the subclass's
``_forward(x, ...) -> (y, cache)`` and remembers the cache; ``backward(dy)``
checks ``dy`` against the last output and calls ``_backward(dy, cache) -> dx``.
Subclasses therefore write only the math hand-off, and every layer gets the
same errors for backward-before-forward, a wrong ``dy`` shape or integer
input, and the same promise that ``dx`` has the shape and dtype of the ``x``
the caller passed.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .._checks import as_float_array, as_float_dtype


class Parameter:
    """A trainable array: ``.data`` and ``.grad`` (same shape, zeros until backward adds)."""

    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = np.array(data, copy=True)
        if self.data.dtype.kind != "f":
            raise TypeError(f"Parameter: data must be floating point, got {self.data.dtype}")
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class _Context:
    __slots__ = ("cache", "in_shape", "in_dtype", "out_shape", "dtype")

    def __init__(self, cache, in_shape, in_dtype, out_shape, dtype):
        self.cache = cache
        self.in_shape = in_shape
        self.in_dtype = in_dtype
        self.out_shape = out_shape
        self.dtype = dtype


class Module:
    """Base class of every layer.

    ``dtype=None`` (parameter-free layers) keeps the input's float dtype;
    a concrete dtype casts floating inputs to it.
    """

    def __init__(self, dtype=None):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        self.training = True
        self.dtype = None if dtype is None else as_float_dtype(dtype, type(self).__name__)
        self._ctx = None

    # -- registration -------------------------------------------------
    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters")
        if params is None:
            raise AttributeError("Module.__init__() must be called before assigning attributes")
        # Buffers stay registered when reassigned (running statistics are
        # replaced, not mutated); parameters and submodules follow the value.
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, value):
        """A non-trainable array that belongs in ``state_dict`` (e.g. running statistics)."""
        setattr(self, name, value)
        self._buffers[name] = True

    # -- the forward/backward protocol ----------------------------------
    @property
    def _name(self):
        return type(self).__name__

    def _prepare_input(self, x):
        return as_float_array(x, self._name, "input", self.dtype)

    def forward(self, x, *args, **kwargs):
        x_in = x if isinstance(x, np.ndarray) else np.asarray(x)
        x = self._prepare_input(x_in)
        y, cache = self._forward(x, *args, **kwargs)
        y0 = y[0] if isinstance(y, tuple) else y
        self._ctx = _Context(cache, x_in.shape, x_in.dtype, y0.shape, y0.dtype)
        return y

    __call__ = forward

    def backward(self, dy):
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError(f"{self._name}: backward() called before forward()")
        dy = np.asarray(dy)
        if dy.dtype.kind != "f":
            raise TypeError(f"{self._name}: dy must be a floating-point array, got dtype "
                            f"{dy.dtype}")
        if dy.shape != ctx.out_shape:
            raise ValueError(f"{self._name}: dy must have the shape of the last output "
                             f"{ctx.out_shape}, got {dy.shape}")
        if dy.dtype != ctx.dtype:
            dy = dy.astype(ctx.dtype)
        dx = self._backward(dy, ctx.cache)
        if dx.dtype != ctx.in_dtype:
            dx = dx.astype(ctx.in_dtype)
        return dx.reshape(ctx.in_shape)

    def _forward(self, x):
        raise NotImplementedError(f"{self._name} does not implement _forward")

    def _backward(self, dy, cache):
        raise NotImplementedError(f"{self._name} does not implement _backward")

    # -- traversal -----------------------------------------------------
    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        seen = set()
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix=""):
        for mname, m in self.named_modules(prefix):
            for bname in m._buffers:
                yield (f"{mname}.{bname}" if mname else bname), getattr(m, bname)

    def zero_grad(self):
        for p in self.parameters():
            p.grad[...] = 0

    def train(self, mode=True):
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    # -- state ------------------------------------------------------------
    def state_dict(self):
        """Copies of every parameter and buffer, keyed like PyTorch (``0.weight``)."""
        out = OrderedDict()
        for mname, m in self.named_modules():
            for pname, p in m._parameters.items():
                if p is not None:
                    out[f"{mname}.{pname}" if mname else pname] = p.data.copy()
            for bname in m._buffers:
                out[f"{mname}.{bname}" if mname else bname] = np.array(getattr(m, bname))
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the existing parameters and buffers (in place).

        Shapes must match; with ``strict`` the key sets must match too.
        """
        targets = {}
        for mname, m in self.named_modules():
            for pname, p in m._parameters.items():
                if p is not None:
                    targets[f"{mname}.{pname}" if mname else pname] = (m, pname, True)
            for bname in m._buffers:
                targets[f"{mname}.{bname}" if mname else bname] = (m, bname, False)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"{self._name}.load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for key, (m, name, is_param) in targets.items():
            if key not in state_dict:
                continue
            value = np.asarray(state_dict[key])
            current = getattr(m, name).data if is_param else np.asarray(getattr(m, name))
            lazy = not is_param and current.size == 0  # a buffer not shaped until first use
            if value.shape != current.shape and not lazy:
                raise ValueError(f"{self._name}.load_state_dict: {key} has shape "
                                 f"{value.shape}, expected {current.shape}")
            if is_param:
                getattr(m, name).data[...] = value
            else:
                setattr(m, name, value.astype(current.dtype, copy=True))
        return self

    # -- repr -----------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        if not self._modules:
            return f"{self._name}({extra})"
        lines = [f"{self._name}(" + (extra if extra else "")]
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: argument {i} must be a Module, "
                                f"got {type(m).__name__}")
            setattr(self, str(i), m)

    def _prepare_input(self, x):
        return x  # each child checks its own input

    def _forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x, None

    def _backward(self, dy, cache):
        for m in reversed(self._modules.values()):
            dy = m.backward(dy)
        return dy

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, idx):
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*mods[idx])
        return mods[idx]
