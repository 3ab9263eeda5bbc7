"""Checkpoints as ``.npz`` files: no pickle, atomic writes.

* ``save_state_dict(path, state)`` / ``load_state_dict(path)``: a model's state
  dict (PyTorch's key names, so ``torch_model.load_state_dict({k:
  torch.from_numpy(v) for k, v in load_state_dict(path).items()})`` works for
  the equivalent torch model).
* ``save_checkpoint`` / ``load_checkpoint``: model, optimizer, scheduler, epoch,
  the training Generator's state and every Generator inside the model, so a
  resumed run continues bit for bit like an uninterrupted one.

Every write goes to a temporary file in the same folder and is then renamed
over the target (``os.replace`` is atomic), so a crash mid-save leaves the
previous file intact. Files are read with ``allow_pickle=False``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np


def _atomic_savez(path, arrays):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_state_dict(path, state):
    _atomic_savez(path, {k: np.asarray(v) for k, v in state.items()})


def load_state_dict(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _json(value):
    return np.array(json.dumps(value))


def _generators(model):
    """name -> Generator for every ``rng`` attribute on the module tree."""
    out = {}
    for name, m in model.named_modules():
        for attr, value in vars(m).items():
            if isinstance(value, np.random.Generator):
                out[f"{name}.{attr}" if name else attr] = value
    return out


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=0, rng=None,
                    extra=None):
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    if optimizer is not None:
        opt = optimizer.state_dict()
        arrays["optimizer/hyper"] = _json(opt["hyper"])
        for i, st in enumerate(opt["state"]):
            for k, v in st.items():
                arrays[f"optimizer/state/{i}/{k}"] = v
        arrays["optimizer/count"] = np.array(len(opt["state"]))
    if scheduler is not None:
        arrays["scheduler"] = _json(scheduler.state_dict())
    arrays["epoch"] = np.array(epoch)
    gens = {"__train__": rng} if rng is not None else {}
    gens.update(_generators(model))
    arrays["rng"] = _json({k: g.bit_generator.state for k, g in gens.items()})
    arrays["extra"] = _json(extra or {})
    _atomic_savez(path, arrays)


def load_checkpoint(path, model, optimizer=None, scheduler=None, rng=None):
    """Restore everything saved; returns ``(epoch, extra)``."""
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    model.load_state_dict({k[len("model/"):]: v for k, v in data.items()
                           if k.startswith("model/")})
    if optimizer is not None and "optimizer/hyper" in data:
        count = int(data["optimizer/count"])
        state = [{} for _ in range(count)]
        for k, v in data.items():
            if k.startswith("optimizer/state/"):
                _, _, i, name = k.split("/", 3)
                state[int(i)][name] = v
        hyper = json.loads(str(data["optimizer/hyper"]))
        if "betas" in hyper:
            hyper["betas"] = tuple(hyper["betas"])
        optimizer.load_state_dict({"hyper": hyper, "state": state})
    if scheduler is not None and "scheduler" in data:
        scheduler.load_state_dict(json.loads(str(data["scheduler"])))
    states = json.loads(str(data["rng"]))
    gens = _generators(model)
    if rng is not None:
        gens["__train__"] = rng
    for name, g in gens.items():
        if name in states:
            g.bit_generator.state = states[name]
    return int(data["epoch"]), json.loads(str(data["extra"]))
