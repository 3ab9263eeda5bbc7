"""The minimal training stack behind the main job: loss, SGD, data, end to end."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import seeds
from nnzero import gradcheck
from nnzero.cli import main
from nnzero.datasets import DataLoader, load_digits, split_indices
from nnzero.layers import Linear, Parameter
from nnzero.losses import CrossEntropyLoss
from nnzero.optim import SGD


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
    np.testing.assert_allclose(loss(logits, target), expected, rtol=1e-12)


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


def test_main_job_end_to_end(capsys):
    assert main(["train", "--epochs", "5", "--quiet"]) == 0
    out = capsys.readouterr().out
    acc = float(out.strip().splitlines()[-1].split()[-1])
    assert acc > 0.9
