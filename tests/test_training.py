"""The training stack end to end: loss, SGD, data, the train command, resume,
divergence, interruption, early stopping and the summary table."""
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import seeds
from nnzero import gradcheck
from nnzero import summary
from nnzero.cli import main
from nnzero.datasets import DataLoader, load_digits, split_indices
from nnzero.layers import Conv2d, Flatten, Linear, MaxPool2d, Parameter, ReLU, Sequential
from nnzero.losses import CrossEntropyLoss
from nnzero.optim import SGD
from nnzero.train import Trainer, TrainingDiverged


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@given(n=st.integers(1, 5), c=st.integers(2, 5), smoothing=st.sampled_from([0.0, 0.1, 0.5]),
       seed=seeds())
def test_cross_entropy_gradient_and_value(reduction, n, c, smoothing, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c)) * 3
    target = rng.integers(0, c, n)
    loss = CrossEntropyLoss(reduction=reduction, label_smoothing=smoothing)
    gradcheck(loss, (logits, target))
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    per = -(1 - smoothing) * logp[np.arange(n), target] - smoothing * logp.mean(axis=1)
    expected = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    # the reference rounds differently (log of a sum vs log-softmax): 1e-10 relative
    np.testing.assert_allclose(loss(logits, target), expected, rtol=1e-10, atol=1e-15)


def test_cross_entropy_scales_by_upstream_gradient_and_errors():
    loss = CrossEntropyLoss()
    logits = np.array([[1.0, 2.0, 0.5]])
    loss(logits, np.array([1]))
    np.testing.assert_allclose(loss.backward(np.array(3.0)), 3 * loss.backward())
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 2\]"):
        loss(logits, np.array([3]))
    with pytest.raises(TypeError, match="integer class indices"):
        loss(logits, np.array([1.0]))


def test_sgd_matches_hand_computed_momentum_nesterov_decay():
    p = Parameter(np.array([1.0, -2.0]))
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    g = np.array([0.5, 0.25])
    theta = p.data.copy()
    buf = None
    for _ in range(3):
        p.grad[...] = g
        opt.step()
        d = g + 0.01 * theta
        buf = d if buf is None else 0.9 * buf + d
        theta = theta - 0.1 * (d + 0.9 * buf)
        np.testing.assert_allclose(p.data, theta, rtol=1e-14)


def test_data_loader_and_split():
    x = np.arange(10)
    loader = DataLoader((x, x * 2), batch_size=4, shuffle=True, rng=0)
    batches = list(loader)
    assert [len(b[0]) for b in batches] == [4, 4, 2] and len(loader) == 3
    assert sorted(np.concatenate([b[0] for b in batches])) == list(range(10))
    assert all(np.array_equal(b[1], 2 * b[0]) for b in batches)
    assert len(DataLoader((x,), batch_size=4, drop_last=True)) == 2
    parts = split_indices(100, (0.7, 0.15, 0.15), rng=1)
    assert [len(p) for p in parts] == [70, 15, 15]
    assert sorted(np.concatenate(parts)) == list(range(100))
    again = split_indices(100, (0.7, 0.15, 0.15), rng=1)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_digits_loader():
    images, labels = load_digits()
    assert images.shape == (1797, 1, 8, 8) and images.dtype == np.float32
    assert images.min() == 0 and images.max() == 1
    assert set(labels) == set(range(10))
    # the published first rows of the UCI (scikit-learn) digits: a zero, then 1 ... 9;
    # pixel counts 0-16 scaled by 1/16
    np.testing.assert_array_equal(labels[:10], np.arange(10))
    np.testing.assert_array_equal(images[0, 0, 0] * 16, [0, 0, 5, 13, 9, 1, 0, 0])


def test_missing_data_file_names_the_places_searched(tmp_path):
    with pytest.raises(FileNotFoundError, match="digits.csv.gz.*looked in"):
        load_digits(tmp_path)


def test_a_linear_model_learns_the_digits():
    images, labels = load_digits()
    x = images.reshape(len(images), -1)
    model = Linear(64, 10, rng=0)
    opt = SGD(model.parameters(), lr=0.5, momentum=0.9)
    loss_fn = CrossEntropyLoss()
    first = None
    for _ in range(30):
        loss = float(loss_fn(model(x), labels))
        first = first if first is not None else loss
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    assert first > 2.0 and loss < 0.5


def test_main_job_end_to_end(tmp_path, capsys):
    assert main(["train", "--epochs", "4", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    acc = float(out.strip().splitlines()[-1].split()[-1])
    assert acc > 0.9
    run = tmp_path / "digits-cnn-seed0"
    metrics = json.loads((run / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics] == [1, 2, 3, 4]
    assert metrics[-1]["train_loss"] < 0.5 < metrics[0]["train_loss"] + 1  # it learned
    with open(run / "metrics.csv") as fh:
        assert fh.readline().startswith("epoch,train_loss,train_acc,val_loss,val_acc")
    report = json.loads((run / "report.json").read_text())
    assert set(report) >= {"train", "validation", "test", "best_epoch"}
    assert "train " in out and "validation " in out and "generalization gap" in out


def _weights(model):
    return [p.data.copy() for p in model.parameters()]


def _interrupt_at_epoch(monkeypatch, k):
    """Make the k-th call of Trainer.train_epoch raise KeyboardInterrupt (Ctrl-C)."""
    from nnzero import train as train_mod

    calls = {"n": 0}
    real = train_mod.Trainer.train_epoch

    def train_epoch(self, *a):
        calls["n"] += 1
        if calls["n"] == k:
            raise KeyboardInterrupt
        return real(self, *a)

    monkeypatch.setattr(train_mod.Trainer, "train_epoch", train_epoch)


def test_resume_is_bit_identical(tmp_path, monkeypatch):
    common = ["train", "--epochs", "4", "--quiet", "--augment"]
    assert main(common + ["--out", str(tmp_path / "a")]) == 0
    with monkeypatch.context() as m:
        _interrupt_at_epoch(m, 3)  # stopped after two whole epochs
        assert main(common + ["--out", str(tmp_path / "b")]) == 130
    ckpt = tmp_path / "b" / "digits-cnn-seed0" / "checkpoint.npz"
    assert main(common + ["--out", str(tmp_path / "b"), "--resume", str(ckpt)]) == 0
    a = np.load(tmp_path / "a" / "digits-cnn-seed0" / "checkpoint.npz")
    b = np.load(tmp_path / "b" / "digits-cnn-seed0" / "checkpoint.npz")
    keys = [k for k in a.files if k.startswith("model/") or k.startswith("optimizer/state")]
    assert len(keys) > 10 and all(np.array_equal(a[k], b[k]) for k in keys)
    history = json.loads((tmp_path / "b" / "digits-cnn-seed0" / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    images, labels = load_digits()
    x = images[:64]
    rng = np.random.default_rng(0)
    model = Sequential(Flatten(), Linear(64, 10, rng=rng))
    trainer = Trainer(model, SGD(model.parameters(), lr=0.1), rng, batch_size=32,
                      checkpoint_dir=tmp_path)
    trainer.fit((x, labels[:64]), (x, labels[:64]), 1)
    good = np.load(tmp_path / "checkpoint.npz")["model/1.weight"].copy()
    bad = x.copy()
    bad[5, 0, 0, 0] = np.nan
    with pytest.raises(TrainingDiverged, match="loss became nan.*last good checkpoint"):
        trainer.fit((bad, labels[:64]), (x, labels[:64]), 2)
    np.testing.assert_array_equal(np.load(tmp_path / "checkpoint.npz")["model/1.weight"], good)


def test_ctrl_c_saves_and_exits_cleanly(tmp_path, monkeypatch, capsys):
    _interrupt_at_epoch(monkeypatch, 2)
    assert main(["train", "--epochs", "3", "--quiet", "--out", str(tmp_path)]) == 130
    assert (tmp_path / "digits-cnn-seed0" / "interrupted.npz").is_file()
    assert "interrupted after 1 epochs" in capsys.readouterr().err


def test_early_stopping(tmp_path, capsys):
    assert main(["train", "--epochs", "30", "--patience", "1", "--lr", "1e-9", "--quiet",
                 "--out", str(tmp_path)]) == 0
    assert "early stopping" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "digits-cnn-seed0" / "metrics.json").read_text())) < 30


def test_summary_table(capsys):
    model = Sequential(Conv2d(1, 4, 3, padding=1, rng=0), ReLU(), MaxPool2d(2), Flatten(),
                       Linear(64, 10, rng=0))
    text = summary(model, (1, 8, 8), print_fn=None)
    lines = text.splitlines()
    assert "(N, 4, 8, 8)" in lines[2] and "40" in lines[2]          # 4*1*3*3 + 4 params
    assert "(N, 4, 4, 4)" in lines[4]
    assert "Total params: 690" in text                              # 40 + 64*10 + 10
    assert f"{2 * 4 * 8 * 8 * 9:,}" in lines[2]                     # conv FLOPs
    assert main(["summary"]) == 0 and "Total params" in capsys.readouterr().out
