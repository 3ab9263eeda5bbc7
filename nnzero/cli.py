"""``python -m nnzero train``: train a classifier on the shipped digits."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .datasets import load_digits, split_indices
from .layers import Flatten, Linear, ReLU, Sequential
from .optim import SGD
from .train import accuracy, fit


def build_mlp(rng, hidden=128):
    return Sequential(Flatten(), Linear(64, hidden, rng=rng), ReLU(), Linear(hidden, 10, rng=rng))


def cmd_train(args):
    rng = np.random.default_rng(args.seed)
    images, labels = load_digits(args.data_dir)
    train_idx, val_idx, test_idx = split_indices(len(images), (0.7, 0.15, 0.15), rng)
    model = build_mlp(rng)
    opt = SGD(model.parameters(), lr=args.lr, momentum=0.9)
    print(f"nnzero train: MLP on digits ({len(train_idx)} train, {len(val_idx)} validation, "
          f"{len(test_idx)} test), {args.epochs} epochs, seed {args.seed}")
    print(model)

    from tqdm import tqdm

    bar = tqdm(total=args.epochs, desc="training", unit="epoch", file=sys.stderr,
               disable=True if args.quiet else None)

    def on_epoch(epoch, loss):
        bar.set_postfix(loss=f"{loss:.4f}")
        bar.update(1)

    start = time.perf_counter()
    fit(model, (images[train_idx], labels[train_idx]), opt, args.epochs, args.batch_size,
        rng, on_epoch)
    bar.close()
    elapsed = time.perf_counter() - start
    accs = {name: accuracy(model, images[idx], labels[idx])
            for name, idx in (("train", train_idx), ("validation", val_idx), ("test", test_idx))}
    print("accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in accs.items())
          + f"  ({elapsed:.1f} s)")
    print(f"test accuracy: {accs['test']:.4f}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nnzero",
                                     description="nnzero: a from-scratch neural-network engine")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a classifier on the shipped digits data")
    tr.add_argument("--epochs", type=int, default=30)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--lr", type=float, default=0.05)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--data-dir", default=None)
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)
    args = parser.parse_args(argv)
    return args.func(args)
