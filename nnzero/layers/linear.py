"""Linear, Flatten, and the two forms of maxout."""
from __future__ import annotations

import numpy as np

from .._checks import as_float_dtype, normalize_dim, positive_int
from ..functional import linear as L
from ._params import add_grads, weight_and_bias
from .module import Module


class Linear(Module):
    """y = x W^T + b.

    Shape: input (*, in_features) (a 1-D vector too), output (*, out_features).
    ``weight`` (out_features, in_features) and ``bias`` (out_features,) start
    as U(-1/sqrt(in_features), 1/sqrt(in_features)), PyTorch's default.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__(as_float_dtype(dtype, "Linear"))
        self.in_features = positive_int(in_features, "Linear", "in_features")
        self.out_features = positive_int(out_features, "Linear", "out_features")
        self.weight, self.bias = weight_and_bias(
            (self.out_features, self.in_features), self.out_features if bias else None,
            self.in_features, self.dtype, rng, "Linear")

    def _forward(self, x):
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected input of shape (*, {self.in_features}), "
                             f"got {x.shape}")
        return L.linear_forward(x, self.weight.data,
                                None if self.bias is None else self.bias.data)

    def _backward(self, dy, cache):
        dx, dw, db = L.linear_backward(dy, cache)
        add_grads(self, dw, db)
        return dx

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Maxout(Module):
    """Dense maxout (Goodfellow et al. 2013): ``out_features`` units of ``pieces`` pieces.

    z = x W^T + b with ``weight`` (out_features*pieces, in_features); unit j
    outputs max(z[j*pieces : (j+1)*pieces]) (contiguous groups, as pylearn2).
    Ties go to the first maximal piece. Shape: (*, in_features) -> (*, out_features).
    """

    def __init__(self, in_features, out_features, pieces, bias=True, dtype=np.float32,
                 rng=None):
        super().__init__(as_float_dtype(dtype, "Maxout"))
        self.in_features = positive_int(in_features, "Maxout", "in_features")
        self.out_features = positive_int(out_features, "Maxout", "out_features")
        self.pieces = positive_int(pieces, "Maxout", "pieces")
        rows = self.out_features * self.pieces
        self.weight, self.bias = weight_and_bias((rows, self.in_features),
                                                 rows if bias else None, self.in_features,
                                                 self.dtype, rng, "Maxout")

    def _forward(self, x):
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"Maxout: expected input of shape (*, {self.in_features}), "
                             f"got {x.shape}")
        return L.maxout_forward(x, self.weight.data,
                                None if self.bias is None else self.bias.data, self.pieces)

    def _backward(self, dy, cache):
        dx, dw, db = L.maxout_backward(dy, cache)
        add_grads(self, dw, db)
        return dx

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"pieces={self.pieces}, bias={self.bias is not None}")


class ChannelMaxout(Module):
    """Maxout across feature maps: (N, C, *) -> (N, C/pieces, *), contiguous groups."""

    def __init__(self, pieces, dtype=None):
        super().__init__(dtype)
        self.pieces = positive_int(pieces, "ChannelMaxout", "pieces")

    def _forward(self, x):
        if x.ndim < 2:
            raise ValueError(f"ChannelMaxout: expected input of shape (N, C, ...), got {x.shape}")
        if x.shape[1] % self.pieces:
            raise ValueError(f"ChannelMaxout: the channel count must be divisible by "
                             f"pieces={self.pieces}, got {x.shape[1]} channels "
                             f"(input shape {x.shape})")
        return L.channel_maxout_forward(x, self.pieces)

    def _backward(self, dy, cache):
        return L.channel_maxout_backward(dy, cache)

    def extra_repr(self):
        return f"pieces={self.pieces}"


class Flatten(Module):
    """Merge axes ``start_dim`` .. ``end_dim`` (inclusive) into one."""

    def __init__(self, start_dim=1, end_dim=-1, dtype=None):
        super().__init__(dtype)
        self.start_dim = start_dim
        self.end_dim = end_dim

    def _forward(self, x):
        start = normalize_dim(self.start_dim, x.ndim, "Flatten", "start_dim")
        end = normalize_dim(self.end_dim, x.ndim, "Flatten", "end_dim")
        if start > end:
            raise ValueError(f"Flatten: start_dim ({self.start_dim}) comes after end_dim "
                             f"({self.end_dim}) for an input of shape {x.shape}")
        if x.ndim == 0:
            return L.flatten_forward(x.reshape(1), 0, 0)
        return L.flatten_forward(x, start, end)

    def _backward(self, dy, cache):
        return L.flatten_backward(dy, cache)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
