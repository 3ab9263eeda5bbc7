"""Classic image preprocessing and augmentation, in NumPy.

Normalization
    min-max (linear) scaling   x' = (x - min) / (max - min) * (b - a) + a
                               (a constant input maps to a, as OpenCV and sklearn do)
    z-score standardisation    x' = (x - mu_c) / sigma_c per channel, statistics fitted
                               on the training set over (N, H, W), population sigma;
                               a fitted zero sigma is replaced by 1 (sklearn's choice),
                               a user-given zero sigma is an error
    histogram equalisation     of 8-bit images, exactly Pillow's ``ImageOps.equalize``,
                               each band on its own

Augmentation (implicit regularization), on batches (N, C, H, W) with an ``rng``:
RandomCrop with zero padding, RandomHorizontalFlip; Compose chains transforms.
"""
from __future__ import annotations

import numpy as np

from ._checks import as_float_array, as_rng, pair


def minmax_scale(x, feature_range=(0.0, 1.0), axis=None):
    """Scale ``x`` linearly so its min/max over ``axis`` become the range's ends."""
    x = as_float_array(x, "minmax_scale", "x")
    a, b = feature_range
    lo = x.min(axis=axis, keepdims=True)
    hi = x.max(axis=axis, keepdims=True)
    span = hi - lo
    scale = np.where(span > 0, (b - a) / np.where(span > 0, span, 1), 0)
    return ((x - lo) * scale + a).astype(x.dtype, copy=False)


class MinMaxScaler:
    """Min-max scaling with the min and max fitted on training data (per channel
    for (N, C, ...) inputs when ``per_channel``), reused on validation and test."""

    def __init__(self, feature_range=(0.0, 1.0), per_channel=True):
        self.feature_range = tuple(float(v) for v in feature_range)
        self.per_channel = per_channel

    def _axes(self, x):
        return (0,) + tuple(range(2, x.ndim)) if self.per_channel and x.ndim > 1 else None

    def fit(self, x):
        x = as_float_array(x, "MinMaxScaler", "x")
        axes = self._axes(x)
        self.min_ = x.min(axis=axes, keepdims=True)
        self.max_ = x.max(axis=axes, keepdims=True)
        return self

    def transform(self, x):
        x = as_float_array(x, "MinMaxScaler", "x")
        a, b = self.feature_range
        span = self.max_ - self.min_
        scale = np.where(span > 0, (b - a) / np.where(span > 0, span, 1), 0)
        return ((x - self.min_) * scale + a).astype(x.dtype, copy=False)

    def fit_transform(self, x):
        return self.fit(x).transform(x)


class Standardize:
    """z-score per channel (axis 1). Either fit on training data or give ``mean``
    and ``std`` (e.g. ImageNet's (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))."""

    def __init__(self, mean=None, std=None):
        if (mean is None) != (std is None):
            raise ValueError("Standardize: give both mean and std, or neither (then fit)")
        if std is not None:
            std = np.asarray(std, dtype=np.float64)
            if np.any(std == 0):
                raise ValueError(f"Standardize: std must be non-zero, got {std.tolist()}")
            self.mean_, self.std_ = np.asarray(mean, dtype=np.float64), std

    def fit(self, x):
        x = as_float_array(x, "Standardize", "x")
        axes = (0,) + tuple(range(2, x.ndim))
        self.mean_ = x.mean(axis=axes, dtype=np.float64)
        std = x.std(axis=axes, dtype=np.float64)
        self.std_ = np.where(std > 0, std, 1.0)
        return self

    def _view(self, v, x):
        return v.reshape((1, -1) + (1,) * (x.ndim - 2)).astype(x.dtype)

    def transform(self, x):
        x = as_float_array(x, "Standardize", "x")
        return (x - self._view(self.mean_, x)) / self._view(self.std_, x)

    def inverse_transform(self, x):
        x = as_float_array(x, "Standardize", "x")
        return x * self._view(self.std_, x) + self._view(self.mean_, x)

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    __call__ = transform


def _equalize_lut(band):
    """Pillow's ImageOps.equalize look-up table for one 8-bit band."""
    h = np.bincount(band.reshape(-1), minlength=256).astype(np.int64)
    present = h[h > 0]
    if present.size <= 1:
        return np.arange(256, dtype=np.uint8)
    step = (int(present.sum()) - int(present[-1])) // 255
    if step == 0:
        return np.arange(256, dtype=np.uint8)
    before = np.concatenate([[0], np.cumsum(h)[:-1]])   # pixels strictly below each value
    return np.minimum((step // 2 + before) // step, 255).astype(np.uint8)


def equalize_hist(image):
    """Histogram equalisation of a uint8 image, (H, W) or channels-last (H, W, C),
    each channel separately: the same result as Pillow's ``ImageOps.equalize``."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"equalize_hist: expected a uint8 image, got dtype {image.dtype}; "
                        f"scale to 0..255 and use .astype(np.uint8)")
    if image.ndim == 2:
        return _equalize_lut(image)[image]
    if image.ndim == 3:
        out = np.empty_like(image)
        for ch in range(image.shape[2]):
            out[..., ch] = _equalize_lut(image[..., ch])[image[..., ch]]
        return out
    raise ValueError(f"equalize_hist: expected (H, W) or (H, W, C), got {image.shape}")


class RandomCrop:
    """Zero-pad a batch (N, C, H, W) by ``padding`` and crop a random ``size``
    window per sample (all samples at once, no Python loop over the batch)."""

    def __init__(self, size, padding=0, rng=None):
        self.size = pair(size, "RandomCrop", "size")
        self.padding = pair(padding, "RandomCrop", "padding")
        self.rng = as_rng(rng, "RandomCrop")

    def __call__(self, x):
        n, c, h, w = x.shape
        ph, pw = self.padding
        th, tw = self.size
        if th > h + 2 * ph or tw > w + 2 * pw:
            raise ValueError(f"RandomCrop: crop {self.size} is larger than the padded input "
                             f"{(h + 2 * ph, w + 2 * pw)}")
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        top = self.rng.integers(0, h + 2 * ph - th + 1, n)
        left = self.rng.integers(0, w + 2 * pw - tw + 1, n)
        rows = top[:, None] + np.arange(th)                  # (N, th)
        cols = left[:, None] + np.arange(tw)                 # (N, tw)
        out = xp[np.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))  # (N, th, tw, C) -> NCHW


class RandomHorizontalFlip:
    """Mirror each sample left-right with probability ``p``."""

    def __init__(self, p=0.5, rng=None):
        self.p = float(p)
        self.rng = as_rng(rng, "RandomHorizontalFlip")

    def __call__(self, x):
        flip = self.rng.random(x.shape[0]) < self.p
        out = x.copy()
        out[flip] = x[flip][..., ::-1]
        return out


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x
