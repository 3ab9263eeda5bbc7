"""``python -m nnzero train | show | summary``: the engine from the command line."""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import datasets
from .io import load_checkpoint
from .models import MODELS
from .optim import SGD, Adam, AdamW, CosineAnnealingLR
from .summary import summary
from .train import Trainer, TrainingDiverged, evaluate
from .transforms import Compose, RandomCrop, RandomHorizontalFlip, Standardize

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")


def load_data(name, data_dir, rng):
    """(train, val, test) tuples of (images, labels), standardised with train statistics."""
    if name == "digits":
        images, labels = datasets.load_digits(data_dir)
        tr, va, te = datasets.split_indices(len(images), (0.7, 0.15, 0.15), rng)
        parts = [(images[i], labels[i]) for i in (tr, va, te)]
    else:
        if data_dir is None:
            raise SystemExit(f"nnzero train: --data-dir is required for --dataset {name}")
        if name == "cifar10":
            train, test = datasets.load_cifar10(data_dir, True), datasets.load_cifar10(
                data_dir, False)
        else:
            label = "Fashion-MNIST" if name == "fashion-mnist" else "MNIST"
            train = datasets.load_mnist(data_dir, True, label)
            test = datasets.load_mnist(data_dir, False, label)
        tr, va = datasets.split_indices(len(train[0]), (0.9, 0.1), rng)
        parts = [(train[0][tr], train[1][tr]), (train[0][va], train[1][va]), test]
    scaler = Standardize().fit(parts[0][0])
    return [(scaler.transform(x).astype(np.float32), y) for x, y in parts]


def make_optimizer(name, params, lr, weight_decay):
    if name == "sgd":
        return SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    return AdamW(params, lr=lr, weight_decay=weight_decay)


def write_metrics(run_dir, history):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(history, indent=1))
    if history:
        with open(run_dir / "metrics.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)


def cmd_train(args):
    rng = np.random.default_rng(args.seed)
    (xtr, ytr), (xva, yva), (xte, yte) = load_data(args.dataset, args.data_dir, rng)
    num_classes = int(max(ytr.max(), yva.max(), yte.max())) + 1
    model = MODELS[args.model](xtr.shape[1:], num_classes, rng)
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr, args.weight_decay)
    sched = CosineAnnealingLR(opt, T_max=args.epochs)
    augment = None
    if args.augment:
        pad = 1 if xtr.shape[-1] <= 8 else 2
        steps = [RandomCrop(xtr.shape[-2:], padding=pad, rng=rng)]
        if args.dataset == "cifar10":
            steps.append(RandomHorizontalFlip(rng=rng))
        augment = Compose(steps)
    name = args.name or f"{args.dataset}-{args.model}-seed{args.seed}"
    run_dir = Path(args.out) / name
    from tqdm import tqdm
    bar = None

    def on_batch(loss, acc):
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.3f}")
            bar.update(1)

    def on_epoch(row):
        write_metrics(run_dir, trainer.history)
        if not args.quiet:
            tqdm.write(f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  "
                       f"train acc {row['train_acc']:.4f}  val loss {row['val_loss']:.4f}  "
                       f"val acc {row['val_acc']:.4f}  ({row['seconds']:.1f} s)")

    trainer = Trainer(model, opt, rng, sched, augment, args.batch_size, args.patience,
                      run_dir, on_batch, on_epoch)
    if args.resume:
        trainer.epoch, extra = load_checkpoint(args.resume, model, opt, sched, rng)
        trainer.history = extra.get("history", [])
        trainer.best = tuple(extra.get("best", (-1.0, 0)))
        print(f"resumed from {args.resume} after epoch {trainer.epoch}")
    print(f"nnzero train: {args.model} on {args.dataset} ({len(xtr)} train, {len(xva)} "
          f"validation, {len(xte)} test), {args.optimizer} lr {args.lr}, {args.epochs} "
          f"epochs, seed {args.seed} -> {run_dir}")
    if not args.quiet:
        summary(model, xtr.shape[1:])
    start = time.perf_counter()
    status = "done"
    try:
        while trainer.epoch < args.epochs and status == "done":
            batches = -(-len(xtr) // args.batch_size)
            bar = tqdm(total=batches, desc=f"epoch {trainer.epoch + 1}/{args.epochs}",
                       leave=False, file=sys.stderr, disable=True if args.quiet else None)
            status = trainer.fit((xtr, ytr), (xva, yva), trainer.epoch + 1)
            bar.close()
    except TrainingDiverged as err:
        print(f"nnzero train: stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        trainer.save("interrupted.npz")
        print(f"\nnnzero train: interrupted after {trainer.epoch} epochs; saved "
              f"{run_dir / 'interrupted.npz'} (resume with --resume)", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - start
    if status == "early stopping":
        print(f"early stopping: no validation improvement for {args.patience} epochs")
    best_acc, best_epoch = trainer.best
    load_checkpoint(run_dir / "best.npz", model)
    report = {part: evaluate(model, x, y)[1] for part, x, y in
              (("train", xtr, ytr), ("validation", xva, yva), ("test", xte, yte))}
    report.update(best_epoch=best_epoch, seconds=elapsed, run_dir=str(run_dir))
    (run_dir / "report.json").write_text(json.dumps(report, indent=1))
    write_report_html(run_dir, trainer.history, report)
    print(f"best validation accuracy at epoch {best_epoch}; accuracy of that model:")
    print(f"  train {report['train']:.4f}   validation {report['validation']:.4f}   "
          f"test {report['test']:.4f}   (generalization gap train - test: "
          f"{report['train'] - report['test']:+.4f})")
    print(f"trained in {elapsed:.1f} s; checkpoint, metrics.csv and report.html in {run_dir}")
    print(f"test accuracy: {report['test']:.4f}")
    return 0


def write_report_html(run_dir, history, report):
    """report.html: the final accuracies and loss/accuracy curves (inline SVG), plus
    curves.png when matplotlib is installed (extra ``plot``)."""
    from .viz import html_page, svg_line_chart
    ep = [r["epoch"] for r in history]
    charts = [svg_line_chart({"train loss": list(zip(ep, [r["train_loss"] for r in history])),
                              "validation loss": list(zip(ep, [r["val_loss"] for r in history]))},
                             "loss"),
              svg_line_chart({"train accuracy": list(zip(ep, [r["train_acc"] for r in history])),
                              "validation accuracy": list(zip(ep, [r["val_acc"]
                                                                   for r in history]))},
                             "accuracy")]
    rows = "".join(f"<tr><td>{k}</td><td>{report[k]:.4f}</td></tr>"
                   for k in ("train", "validation", "test"))
    body = (f"<h1>nnzero train: {run_dir.name}</h1><table border=1 cellpadding=4>"
            f"<tr><th>split</th><th>accuracy</th></tr>{rows}</table>"
            f"<p>generalization gap (train - test): {report['train'] - report['test']:+.4f}; "
            f"best validation epoch {report['best_epoch']}</p>" + "".join(charts))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None and history:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, key in zip(axes, ("loss", "acc")):
            ax.plot(ep, [r[f"train_{key}"] for r in history], label="train")
            ax.plot(ep, [r[f"val_{key}"] for r in history], label="validation")
            ax.set_xlabel("epoch")
            ax.set_title("loss" if key == "loss" else "accuracy")
            ax.legend()
        fig.tight_layout()
        fig.savefig(run_dir / "curves.png", dpi=100)
        plt.close(fig)
        body += '<p><img src="curves.png" alt="curves (matplotlib)"></p>'
    (run_dir / "report.html").write_text(html_page(f"nnzero train {run_dir.name}", body))


def cmd_show(args):
    from .gallery import run
    page, count = run(args.out, args.images, args.experiments, args.size, args.seed)
    print(f"nnzero show: wrote {count} experiments to {page}")
    print(f"open file://{Path(page).resolve()} in a browser")
    return 0


def cmd_summary(args):
    rng = np.random.default_rng(0)
    shape = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28),
             "cifar10": (3, 32, 32)}[args.dataset]
    summary(MODELS[args.model](shape, 10, rng), shape)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nnzero",
                                     description="nnzero: a from-scratch neural-network engine")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a classifier (default: a CNN on the shipped "
                                      "digits)")
    tr.add_argument("--dataset", choices=DATASETS, default="digits")
    tr.add_argument("--data-dir", default=None,
                    help="folder with the dataset files (digits: the repository's data/)")
    tr.add_argument("--model", choices=sorted(MODELS), default="cnn")
    tr.add_argument("--epochs", type=int, default=30)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="adamw")
    tr.add_argument("--weight-decay", type=float, default=1e-2)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", default="runs", help="runs are written to OUT/NAME/")
    tr.add_argument("--name", default=None, help="run name (default: dataset-model-seed)")
    tr.add_argument("--resume", default=None, metavar="CHECKPOINT",
                    help="continue from a checkpoint.npz of an earlier run")
    tr.add_argument("--patience", type=int, default=None,
                    help="early stopping: stop after this many epochs without a better "
                         "validation accuracy")
    tr.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False,
                    help="random crops with padding (and flips for CIFAR-10) while training; "
                         "off by default: on 8x8 digits a one-pixel shift costs accuracy")
    tr.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    tr.set_defaults(func=cmd_train)
    sh = sub.add_parser("show", help="run every layer on the photos and digits in data/ "
                                     "and write an image gallery")
    sh.add_argument("--images", nargs="+", default=None, help="image files (default: "
                    "data/flower.jpg data/china.jpg)")
    sh.add_argument("--experiments", nargs="+", default=None,
                    help="only these experiments (by name, e.g. conv maxpool equalize)")
    sh.add_argument("--out", default="runs/show")
    sh.add_argument("--size", type=int, default=128, help="longest image side in pixels")
    sh.add_argument("--seed", type=int, default=0)
    sh.set_defaults(func=cmd_show)
    sm = sub.add_parser("summary", help="print a model's layers, shapes, parameters, FLOPs")
    sm.add_argument("--dataset", choices=DATASETS, default="digits")
    sm.add_argument("--model", choices=sorted(MODELS), default="cnn")
    sm.set_defaults(func=cmd_summary)
    args = parser.parse_args(argv)
    if getattr(args, "epochs", 1) < 1 or getattr(args, "batch_size", 1) < 1:
        parser.error("--epochs and --batch-size must be positive")
    return args.func(args)
