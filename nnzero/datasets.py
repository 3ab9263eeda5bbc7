"""Datasets read from local files, splits and a NumPy DataLoader.

Nothing is downloaded. The digits data ship in the repository's ``data/``
folder; ``find_data_dir`` looks for it in the ``data_dir`` argument, then
``$NNZERO_DATA``, then ``./data``, then the ``data/`` folder beside the
installed package's source tree.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
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


# -- CIFAR-10: the "python version" batches, read without running any pickled code ------
def _numpy_reconstruct():
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    return core.multiarray._reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only plain containers, bytes/str/numbers and NumPy arrays.

    A pickle names every callable it wants to run (``find_class``); this one
    answers only for the few that rebuild an ndarray, and refuses everything
    else before it can run, e.g. ``os.system``.
    """

    def find_class(self, module, name):
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
            ("numpy", "ndarray"): lambda: np.ndarray,
            ("numpy", "dtype"): lambda: np.dtype,
            ("_codecs", "encode"): lambda: __import__("codecs").encode,
        }
        if (module, name) in allowed:
            return allowed[(module, name)]()
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: CIFAR-10 batches hold only plain "
            f"containers and NumPy arrays, so this file is not one (or it is unsafe)")


def restricted_load(path):
    with open(path, "rb") as fh:
        return RestrictedUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()


CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _expect_files(folder, names, what, hint):
    folder = Path(folder)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{what}: missing {', '.join(missing)} in {folder}. Expected the files "
            f"{', '.join(names)} there ({hint}).")


def load_cifar10(data_dir, train=True):
    """CIFAR-10 from the folder of the python batches (``cifar-10-batches-py``):
    images (N, 3, 32, 32) float32 in [0, 1] and labels int64."""
    folder = Path(data_dir)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    _expect_files(folder, CIFAR10_FILES, "load_cifar10",
                  "the 'CIFAR-10 python version' archive, extracted")
    names = CIFAR10_FILES[:5] if train else CIFAR10_FILES[5:]
    images, labels = [], []
    for name in names:
        batch = restricted_load(folder / name)
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise ValueError(f"load_cifar10: {folder / name} is not a CIFAR-10 batch "
                             f"(no b'data'/b'labels' entries)")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"load_cifar10: {folder / name} holds data of shape "
                             f"{data.shape}, expected (N, 3072)")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return (np.concatenate(images).astype(np.float32) / 255.0, np.concatenate(labels))


# -- MNIST and Fashion-MNIST: IDX files, gzipped or not ---------------------------------
MNIST_FILES = {True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path):
    """An IDX array (the MNIST format): big-endian header, then raw unsigned bytes."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"read_idx: {path} does not start with an IDX magic number")
    if raw[2] != 0x08:
        raise ValueError(f"read_idx: {path} holds type code {raw[2]:#x}; only unsigned "
                         f"bytes (0x08) are supported")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"read_idx: {path} header says {dims} but holds {data.size} values")
    return data.reshape(dims)


def load_mnist(data_dir, train=True, name="MNIST"):
    """MNIST (or Fashion-MNIST, same files): (N, 1, 28, 28) float32 in [0, 1], int64 labels."""
    folder = Path(data_dir)
    paths = []
    for base in MNIST_FILES[train]:
        found = [folder / (base + ext) for ext in ("", ".gz") if (folder / (base + ext)).is_file()]
        if not found:
            raise FileNotFoundError(
                f"load_mnist: missing {base}[.gz] in {folder}. Expected the {name} IDX files "
                f"{', '.join(b + '[.gz]' for b in MNIST_FILES[True] + MNIST_FILES[False])}")
        paths.append(found[0])
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"load_mnist: images {images.shape} and labels {labels.shape} in "
                         f"{folder} do not match")
    return images[:, None].astype(np.float32) / 255.0, labels.astype(np.int64)


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
