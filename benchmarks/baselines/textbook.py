"""The textbook NumPy baseline: layers written the way the well-known
from-scratch books write them.

* im2col loops over the KH*KW kernel offsets, each a strided block copy into
  a (N, C, KH, KW, OH, OW) buffer, then transposes it to rows of patches
  (N*OH*OW, C*KH*KW); col2im is the same loop with ``+=``.
* Convolution is one matmul of the patch rows with the reshaped filters,
  followed by a transpose back to NCHW.
* Pooling reuses im2col (one row per window) and col2im for its backward.
* Grouped convolution, which the books do not cover, is a loop over groups.

Nothing here is slowed down on purpose: buffers are made in the input's dtype
(the books' ``np.zeros`` without a dtype would silently compute in float64)
and every hot operation is a vectorised NumPy call. It is the reference the
``benchmarks/`` ratios are measured against, not part of the package.
"""
from __future__ import annotations

import numpy as np


def im2col(x, kh, kw, stride=1, pad=0):
    n, c, h, w = x.shape
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (w + 2 * pad - kw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    col = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        i_max = i + stride * oh
        for j in range(kw):
            j_max = j + stride * ow
            col[:, :, i, j, :, :] = img[:, :, i:i_max:stride, j:j_max:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


def col2im(col, shape, kh, kw, stride=1, pad=0):
    n, c, h, w = shape
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (w + 2 * pad - kw) // stride + 1
    col = col.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    img = np.zeros((n, c, h + 2 * pad + stride - 1, w + 2 * pad + stride - 1), dtype=col.dtype)
    for i in range(kh):
        i_max = i + stride * oh
        for j in range(kw):
            j_max = j + stride * ow
            img[:, :, i:i_max:stride, j:j_max:stride] += col[:, :, i, j, :, :]
    return img[:, :, pad:h + pad, pad:w + pad]


class Convolution:
    def __init__(self, w, b, stride=1, pad=0, groups=1):
        self.w, self.b, self.stride, self.pad, self.groups = w, b, stride, pad, groups

    def forward(self, x):
        fn, cg, kh, kw = self.w.shape
        n, c, h, w = x.shape
        g = self.groups
        oh = (h + 2 * self.pad - kh) // self.stride + 1
        ow = (w + 2 * self.pad - kw) // self.stride + 1
        self.x, self.cols, outs = x, [], []
        og = fn // g
        for k in range(g):
            col = im2col(x[:, k * cg:(k + 1) * cg], kh, kw, self.stride, self.pad)
            col_w = self.w[k * og:(k + 1) * og].reshape(og, -1).T
            outs.append(col @ col_w)
            self.cols.append(col)
        out = np.concatenate(outs, axis=1) + self.b
        return out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)

    def backward(self, dout):
        fn, cg, kh, kw = self.w.shape
        g = self.groups
        og = fn // g
        dout = dout.transpose(0, 2, 3, 1).reshape(-1, fn)
        self.db = dout.sum(axis=0)
        dws, dxs = [], []
        for k in range(g):
            d = dout[:, k * og:(k + 1) * og]
            col_w = self.w[k * og:(k + 1) * og].reshape(og, -1).T
            dws.append((self.cols[k].T @ d).T.reshape(og, cg, kh, kw))
            dcol = d @ col_w.T
            shape = (self.x.shape[0], cg) + self.x.shape[2:]
            dxs.append(col2im(dcol, shape, kh, kw, self.stride, self.pad))
        self.dw = np.concatenate(dws, axis=0)
        return np.concatenate(dxs, axis=1)


class Deconvolution:
    """Transposed convolution: patch rows x^T W scattered back with col2im (its
    forward is the convolution's input gradient), im2col for its backward."""

    def __init__(self, w, b, stride=1, pad=0):
        self.w, self.b, self.stride, self.pad = w, b, stride, pad

    def forward(self, x):
        cin, cout, kh, kw = self.w.shape
        n, _, h, w = x.shape
        oh = (h - 1) * self.stride - 2 * self.pad + kh
        ow = (w - 1) * self.stride - 2 * self.pad + kw
        self.x, self.out_shape = x, (n, cout, oh, ow)
        rows = x.transpose(0, 2, 3, 1).reshape(-1, cin)
        col = rows @ self.w.reshape(cin, -1)
        return col2im(col, self.out_shape, kh, kw, self.stride, self.pad) \
            + self.b.reshape(1, -1, 1, 1)

    def backward(self, dout):
        cin, cout, kh, kw = self.w.shape
        col = im2col(dout, kh, kw, self.stride, self.pad)
        rows = self.x.transpose(0, 2, 3, 1).reshape(-1, cin)
        self.db = dout.sum(axis=(0, 2, 3))
        self.dw = (rows.T @ col).reshape(self.w.shape)
        dx = col @ self.w.reshape(cin, -1).T
        n, _, h, w = self.x.shape
        return dx.reshape(n, h, w, cin).transpose(0, 3, 1, 2)


class Pooling:
    """Max, average, stochastic or mixed pooling through im2col rows."""

    def __init__(self, k, stride=None, pad=0, mode="max", rng=None):
        self.k, self.stride, self.pad, self.mode = k, stride or k, pad, mode
        self.rng = rng if rng is not None else np.random.default_rng(0)

    def forward(self, x):
        n, c, h, w = x.shape
        k, s, p = self.k, self.stride, self.pad
        oh = (h + 2 * p - k) // s + 1
        ow = (w + 2 * p - k) // s + 1
        col = im2col(x, k, k, s, p).reshape(-1, k * k)
        mode = self.mode
        if mode == "mixed":
            mode = "max" if self.rng.random() < 0.5 else "avg"
        self.x_shape, self.used = x.shape, mode
        if mode == "avg":
            out = col.mean(axis=1)
        else:
            if mode == "stochastic":
                total = col.sum(axis=1, keepdims=True)
                u = self.rng.random((col.shape[0], 1), dtype=col.dtype) * total
                arg = np.argmax(np.cumsum(col, axis=1) > u, axis=1)
            else:
                arg = np.argmax(col, axis=1)
            self.arg = arg
            out = col[np.arange(col.shape[0]), arg]
        return out.reshape(n, oh, ow, c).transpose(0, 3, 1, 2)

    def backward(self, dout):
        k = self.k
        dout = dout.transpose(0, 2, 3, 1)
        size = k * k
        if self.used == "avg":
            dcol = np.repeat(dout.reshape(-1, 1) / size, size, axis=1)
        else:
            dcol = np.zeros((dout.size, size), dtype=dout.dtype)
            dcol[np.arange(self.arg.size), self.arg.ravel()] = dout.ravel()
        dcol = dcol.reshape(dout.shape[0] * dout.shape[1] * dout.shape[2], -1)
        return col2im(dcol, self.x_shape, k, k, self.stride, self.pad)


class Affine:
    def __init__(self, w, b):
        self.w, self.b = w, b  # w: (in, out), the books' layout

    def forward(self, x):
        self.x_shape = x.shape
        self.x = x.reshape(x.shape[0], -1)
        return self.x @ self.w + self.b

    def backward(self, dout):
        self.dw = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return (dout @ self.w.T).reshape(self.x_shape)


class Relu:
    def forward(self, x):
        self.mask = x <= 0
        out = x.copy()
        out[self.mask] = 0
        return out

    def backward(self, dout):
        dx = dout.copy()
        dx[self.mask] = 0
        return dx


class SoftmaxWithLoss:
    def forward(self, x, t):
        x = x - x.max(axis=1, keepdims=True)
        self.y = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
        self.t = t
        return -np.mean(np.log(self.y[np.arange(len(t)), t] + 1e-7))

    def backward(self):
        dx = self.y.copy()
        dx[np.arange(len(self.t)), self.t] -= 1
        return dx / len(self.t)


ACTIVATIONS = {
    # name: (forward(x) -> (y, saved), backward(dy, saved) -> dx), the plain formulas
    "Sigmoid": (lambda x: (lambda y: (y, y))(1 / (1 + np.exp(-x))),
                lambda dy, y: dy * (1.0 - y) * y),
    "Tanh": (lambda x: (lambda y: (y, y))(np.tanh(x)), lambda dy, y: dy * (1 - y * y)),
    "ReLU": None,  # the Relu class above
    "LeakyReLU": (lambda x: (np.where(x > 0, x, 0.01 * x), x),
                  lambda dy, x: np.where(x > 0, dy, 0.01 * dy)),
    "ELU": (lambda x: (np.where(x > 0, x, np.exp(x) - 1), x),
            lambda dy, x: np.where(x > 0, dy, dy * np.exp(x))),
    "Softplus": (lambda x: (np.log(1 + np.exp(x)), x),
                 lambda dy, x: dy / (1 + np.exp(-x))),
    "Swish": (lambda x: (lambda s: (x * s, (x, s)))(1 / (1 + np.exp(-x))),
              lambda dy, c: dy * (c[1] + c[0] * c[1] * (1 - c[1]))),
}
