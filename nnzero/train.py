"""A small training loop: mini-batch SGD on a classifier, with accuracy reports."""
from __future__ import annotations

import numpy as np

from .datasets import DataLoader
from .losses import CrossEntropyLoss


def accuracy(model, images, labels, batch_size=256):
    """Fraction of correct argmax predictions, computed in eval mode."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start:start + batch_size])
        correct += int(np.sum(np.argmax(logits, axis=1) == labels[start:start + batch_size]))
    model.train(was_training)
    return correct / max(len(images), 1)


def train_epoch(model, loader, optimizer, criterion=None):
    """One pass over ``loader``; returns the mean training loss."""
    criterion = criterion or CrossEntropyLoss()
    model.train()
    total, count = 0.0, 0
    for xb, yb in loader:
        logits = model(xb)
        loss = float(criterion(logits, yb))
        if not np.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss}; lower the learning rate")
        optimizer.zero_grad()
        model.backward(criterion.backward())
        optimizer.step()
        total += loss * len(xb)
        count += len(xb)
    return total / max(count, 1)


def fit(model, train_set, optimizer, epochs, batch_size, rng, on_epoch=None):
    """Train for ``epochs``; ``on_epoch(epoch, loss)`` is called after each one."""
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, rng=rng)
    history = []
    for epoch in range(1, epochs + 1):
        loss = train_epoch(model, loader, optimizer)
        history.append(loss)
        if on_epoch is not None:
            on_epoch(epoch, loss)
    return history
