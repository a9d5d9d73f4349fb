"""Checkpoints that survive a kill at any moment.

A checkpoint is three files: ``<tag>-e<epoch>.safetensors`` (the weights, vertebra's own
format), ``<tag>-e<epoch>.state.safetensors`` (optimizer tensors and the torch RNG state)
and ``<tag>.json`` (epoch, optimizer and scheduler settings, Python and NumPy RNG states,
the model's name and kwargs, the history).  Each is written to a temporary file, flushed and
renamed; ``<tag>.json`` is renamed last and names the other two, so it is the commit point:
a kill before it leaves the previous checkpoint whole, a kill after it the new one.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..weights import load_weights, save_weights


def atomic_json(path: Path, data: dict) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def atomic_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state dict -> (tensors for safetensors, the JSON-able rest)."""
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def join_optimizer(tensors: dict[str, torch.Tensor], saved: dict) -> dict:
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in saved["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": saved["param_groups"]}


def save_checkpoint(folder: Path, tag: str, model, optimizer, scheduler, progress: dict) -> Path:
    """Write checkpoint ``tag`` ("last" or "best") for the epoch in ``progress``; returns the JSON path."""
    epoch = progress["epoch"]
    weights = folder / f"{tag}-e{epoch:04d}.safetensors"
    state_file = folder / f"{tag}-e{epoch:04d}.state.safetensors"
    save_weights(model, weights, metadata={key: progress.get(key) for key in ("epoch", "classes", "data",
                                                                              "input_size")})
    tensors, optimizer_json = split_optimizer(optimizer.state_dict())
    tensors["rng.torch"] = torch.get_rng_state()
    atomic_tensors(state_file, tensors)
    numpy_state = np.random.get_state()
    record = {**progress, "weights": weights.name, "state": state_file.name, "optimizer": optimizer_json,
              "scheduler": scheduler.state_dict(), "rng_python": list(random.getstate()[1]),
              "rng_python_version": random.getstate()[0], "rng_python_gauss": random.getstate()[2],
              "rng_numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]]}
    path = folder / f"{tag}.json"
    atomic_json(path, record)
    for old in folder.glob(f"{tag}-e*.safetensors"):  # earlier checkpoints of this tag
        if old.name not in (weights.name, state_file.name):
            old.unlink(missing_ok=True)
    return path


def read_progress(folder: Path, tag: str = "last") -> dict | None:
    path = folder / f"{tag}.json"
    return json.loads(path.read_text()) if path.exists() else None


def load_checkpoint(folder: Path, tag: str, model, optimizer=None, scheduler=None) -> dict:
    """Restore the weights (and optimizer, scheduler and RNG states when given); returns the record."""
    record = read_progress(folder, tag)
    if record is None:
        raise ValueError(f"no {tag} checkpoint in {folder}")
    load_weights(model, folder / record["weights"])
    if optimizer is not None:
        tensors = load_file(folder / record["state"])
        optimizer.load_state_dict(join_optimizer(tensors, record["optimizer"]))
        torch.set_rng_state(tensors["rng.torch"])
        random.setstate((record["rng_python_version"], tuple(record["rng_python"]), record["rng_python_gauss"]))
        kind, keys, *rest = record["rng_numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    if scheduler is not None:
        scheduler.load_state_dict(record["scheduler"])
    return record
