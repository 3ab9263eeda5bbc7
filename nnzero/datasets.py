"""Datasets read from local files, splits and a NumPy DataLoader.

Nothing is downloaded. The digits data ship in the repository's ``data/``
folder; ``find_data_dir`` looks for it in the ``data_dir`` argument, then
``$NNZERO_DATA``, then ``./data``, then the ``data/`` folder beside the
installed package's source tree.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ._checks import as_rng, positive_int


def find_data_dir(filename, data_dir=None):
    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    else:
        if os.environ.get("NNZERO_DATA"):
            candidates.append(Path(os.environ["NNZERO_DATA"]))
        candidates.append(Path.cwd() / "data")
        candidates.append(Path(__file__).resolve().parent.parent / "data")
    for c in candidates:
        if (c / filename).is_file():
            return c
    raise FileNotFoundError(
        f"could not find {filename}; looked in: " + ", ".join(str(c) for c in candidates)
        + ". Pass data_dir=... (or set NNZERO_DATA) to the folder that holds it.")


def load_digits(data_dir=None):
    """The UCI 8x8 digits: images (1797, 1, 8, 8) float32 in [0, 1] and labels int64."""
    path = find_data_dir("digits.csv.gz", data_dir) / "digits.csv.gz"
    with gzip.open(path, "rt") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 65:
        raise ValueError(f"load_digits: {path} should have 65 columns (64 pixels, label), "
                         f"got shape {table.shape}")
    images = (table[:, :64].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return images, table[:, 64].copy()


def split_indices(n, fractions=(0.7, 0.15, 0.15), rng=None):
    """A seeded random partition of ``range(n)`` into parts of the given fractions."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split_indices: fractions must be non-negative and sum to 1, "
                         f"got {tuple(fractions)}")
    perm = as_rng(rng, "split_indices").permutation(n)
    bounds = np.round(np.cumsum(fractions)[:-1] * n).astype(np.int64)
    return [np.sort(part) for part in np.split(perm, bounds)]


class DataLoader:
    """Mini-batches of a tuple of equally long arrays, e.g. ``(images, labels)``."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, rng=None):
        if not isinstance(dataset, (tuple, list)) or not dataset:
            raise TypeError("DataLoader: dataset must be a non-empty tuple of arrays")
        n = len(dataset[0])
        if any(len(a) != n for a in dataset):
            raise ValueError(f"DataLoader: arrays have different lengths "
                             f"{[len(a) for a in dataset]}")
        self.dataset = tuple(dataset)
        self.batch_size = positive_int(batch_size, "DataLoader", "batch_size")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.rng = as_rng(rng, "DataLoader")

    def __len__(self):
        n = len(self.dataset[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        n = len(self.dataset[0])
        order = self.rng.permutation(n) if self.shuffle else np.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield tuple(a[idx] for a in self.dataset)
