"""The training loop: mini-batches, validation, checkpoints, early stopping.

``Trainer.fit`` runs epochs until ``epochs`` or until validation accuracy has
not improved for ``patience`` epochs (early stopping), writing after every
epoch the metrics row and an atomic checkpoint; the best-validation weights
are kept apart. A non-finite loss stops training (``TrainingDiverged``) and
leaves the last good checkpoint untouched.
"""
from __future__ import annotations

import time

import numpy as np

from .datasets import DataLoader
from .io import save_checkpoint
from .losses import CrossEntropyLoss


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def evaluate(model, images, labels, criterion=None, batch_size=512):
    """(mean loss, accuracy) in eval mode; the model's mode is restored after."""
    criterion = criterion or CrossEntropyLoss()
    was = model.training
    model.eval()
    total, correct = 0.0, 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start:start + batch_size])
        yb = labels[start:start + batch_size]
        total += float(criterion(logits, yb)) * len(yb)
        correct += int(np.sum(np.argmax(logits, axis=1) == yb))
    model.train(was)
    n = max(len(images), 1)
    return total / n, correct / n


class Trainer:
    def __init__(self, model, optimizer, rng, scheduler=None, augment=None, batch_size=64,
                 patience=None, checkpoint_dir=None, on_batch=None, on_epoch=None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.rng, self.augment, self.batch_size = rng, augment, batch_size
        self.patience, self.checkpoint_dir = patience, checkpoint_dir
        self.on_batch, self.on_epoch = on_batch, on_epoch
        self.criterion = CrossEntropyLoss()
        self.history = []
        self.epoch = 0
        self.best = (-1.0, 0)  # (validation accuracy, epoch)

    def train_epoch(self, images, labels):
        model, crit = self.model, self.criterion
        model.train()
        loader = DataLoader((images, labels), self.batch_size, shuffle=True, rng=self.rng)
        total, correct, count = 0.0, 0, 0
        for xb, yb in loader:
            if self.augment is not None:
                xb = self.augment(xb)
            logits = model(xb)
            loss = float(crit(logits, yb))
            if not np.isfinite(loss):
                raise TrainingDiverged(
                    f"the training loss became {loss} in epoch {self.epoch + 1}; try a "
                    f"smaller --lr. The last good checkpoint is kept.")
            self.optimizer.zero_grad()
            model.backward(crit.backward())
            self.optimizer.step()
            total += loss * len(yb)
            correct += int(np.sum(np.argmax(logits, axis=1) == yb))
            count += len(yb)
            if self.on_batch is not None:
                self.on_batch(total / count, correct / count)
        return total / max(count, 1), correct / max(count, 1)

    def save(self, name="checkpoint.npz"):
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir / name, self.model, self.optimizer,
                            self.scheduler, self.epoch, self.rng,
                            {"history": self.history, "best": list(self.best)})

    def fit(self, train, val, epochs):
        """Train until ``epochs`` (counting epochs already done when resumed)."""
        while self.epoch < epochs:
            start = time.perf_counter()
            lr = self.optimizer.lr
            train_loss, train_acc = self.train_epoch(*train)
            val_loss, val_acc = evaluate(self.model, *val, self.criterion)
            self.epoch += 1
            if self.scheduler is not None:
                self.scheduler.step()
            row = {"epoch": self.epoch, "train_loss": train_loss, "train_acc": train_acc,
                   "val_loss": val_loss, "val_acc": val_acc, "lr": lr,
                   "seconds": time.perf_counter() - start}
            self.history.append(row)
            if val_acc > self.best[0]:
                self.best = (val_acc, self.epoch)
                self.save("best.npz")
            self.save()
            if self.on_epoch is not None:
                self.on_epoch(row)
            if self.patience is not None and self.epoch - self.best[1] >= self.patience:
                return "early stopping"
        return "done"
