"""Dataset readers on small files in the exact formats; safe unpickling; checkpoints."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from nnzero import io as nio
from nnzero.datasets import (CIFAR10_FILES, load_cifar10, load_mnist, read_idx,
                             restricted_load)
from nnzero.layers import BatchNorm1d, Dropout, Linear, Sequential
from nnzero.optim import Adam, CosineAnnealingLR


def write_cifar(folder, n=4, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in CIFAR10_FILES:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)


def test_cifar10_reader(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    x, y = load_cifar10(tmp_path)  # the parent folder works too
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.float32 and y.shape == (20,)
    raw = restricted_load(folder / "data_batch_1")
    np.testing.assert_array_equal(x[:4], raw[b"data"].reshape(4, 3, 32, 32).astype(np.float32) / 255)
    xt, yt = load_cifar10(folder, train=False)
    assert xt.shape == (4, 3, 32, 32)
    raw = restricted_load(folder / "test_batch")
    np.testing.assert_array_equal(xt, raw[b"data"].reshape(4, 3, 32, 32).astype(np.float32) / 255)
    np.testing.assert_array_equal(yt, raw[b"labels"])


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_code_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "c"
    write_cifar(folder)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": _RunsCode(marker), b"labels": []}, fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_cifar10(folder, train=False)
    assert not marker.exists()


def test_cifar_missing_files_say_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing data_batch_1.*test_batch.*Expected"):
        load_cifar10(tmp_path)


def write_idx(path, array, compress):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reader(tmp_path, compress):
    rng = np.random.default_rng(0)
    ext = ".gz" if compress else ""
    data = {}
    for prefix, n in (("train", 6), ("t10k", 3)):
        images = rng.integers(0, 256, (n, 28, 28))
        labels = rng.integers(0, 10, n)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{ext}", images, compress)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{ext}", labels, compress)
        data[prefix] = (images, labels)
    x, y = load_mnist(tmp_path, train=True)
    assert x.shape == (6, 1, 28, 28)
    np.testing.assert_allclose(x[:, 0] * 255, data["train"][0], rtol=1e-6)
    np.testing.assert_array_equal(y, data["train"][1])
    xt, yt = load_mnist(tmp_path, train=False, name="Fashion-MNIST")
    np.testing.assert_array_equal(yt, data["t10k"][1])


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="IDX magic"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="header says"):
        read_idx(short)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)


def test_state_dict_round_trip_without_pickle(tmp_path):
    model = Sequential(Linear(3, 4, rng=0), BatchNorm1d(4), Linear(4, 2, rng=1))
    model(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    path = tmp_path / "m.npz"
    nio.save_state_dict(path, model.state_dict())
    loaded = nio.load_state_dict(path)
    assert list(loaded) == list(model.state_dict())
    other = Sequential(Linear(3, 4, rng=5), BatchNorm1d(4), Linear(4, 2, rng=6))
    other.load_state_dict(loaded)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)


def test_atomic_save_survives_a_crash(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    nio.save_state_dict(path, {"w": np.arange(3.0)})
    real = np.savez

    def crash(fh, **arrays):
        real(fh, **arrays)
        raise OSError("disk full (simulated crash mid-save)")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="simulated"):
        nio.save_state_dict(path, {"w": np.zeros(3)})
    monkeypatch.undo()
    np.testing.assert_array_equal(nio.load_state_dict(path)["w"], np.arange(3.0))
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]  # no temporary file left behind


def test_checkpoint_restores_optimizer_scheduler_and_generators(tmp_path):
    rng = np.random.default_rng(0)
    model = Sequential(Linear(3, 3, rng=1), Dropout(0.5, rng=2), Linear(3, 1, rng=3))
    opt = Adam(model.parameters(), lr=0.1)
    sched = CosineAnnealingLR(opt, 5)
    for p in model.parameters():
        p.grad[...] = 1.0
    opt.step()
    sched.step()
    nio.save_checkpoint(tmp_path / "c.npz", model, opt, sched, epoch=3, rng=rng,
                        extra={"note": "x"})
    expected_draw = rng.random(3)
    expected_dropout = model[1].rng.random(3)
    model2 = Sequential(Linear(3, 3, rng=7), Dropout(0.5, rng=8), Linear(3, 1, rng=9))
    opt2 = Adam(model2.parameters(), lr=0.5)
    sched2 = CosineAnnealingLR(opt2, 5)
    rng2 = np.random.default_rng(99)
    epoch, extra = nio.load_checkpoint(tmp_path / "c.npz", model2, opt2, sched2, rng2)
    assert epoch == 3 and extra == {"note": "x"}
    assert opt2.lr == opt.lr and sched2.last_epoch == 1
    np.testing.assert_array_equal(opt2.state[0]["exp_avg"], opt.state[0]["exp_avg"])
    np.testing.assert_array_equal(rng2.random(3), expected_draw)
    np.testing.assert_array_equal(model2[1].rng.random(3), expected_dropout)
