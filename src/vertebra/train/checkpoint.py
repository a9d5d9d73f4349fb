"""A training run's folder: what defines the run, and one checkpoint that survives a kill at any moment.

``run.json`` records what defines the run (model, data fingerprint, seed, the settings that change
the result); ``--resume`` continues only that run.  An epoch's checkpoint is
``last-e<epoch>.safetensors`` (weights), ``last-e<epoch>.state.safetensors`` (optimizer tensors,
torch RNG state), ``best-e<epoch>.safetensors`` when validation improved, and the manifest
``checkpoint.json`` (epoch, history, best-so-far, optimizer and scheduler settings, Python and
NumPy RNG states), which names them.  The manifest is renamed into place last, so it is the one
commit point: a kill before it leaves the previous epoch whole, a kill after it the new one.
Files it no longer names are deleted only once it is durable (vertebra.durable).
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ..data_config import vertebra_config
from ..durable import read_json, remove_unreferenced, write_json, write_tensors
from ..weights import load_weights, save_weights

MANIFEST = "checkpoint.json"
RUN = "run.json"
CHECKPOINT_FILES = r"(last|best)-e\d{4}(\.state)?\.safetensors"


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


def random_state_json(state: tuple) -> list:
    """A ``random.getstate()`` as JSON, and back (``random_state_tuple``)."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def random_state_tuple(saved: list) -> tuple:
    version, internal, gauss = saved
    return version, tuple(internal), gauss


def python_rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {"rng_python": random_state_json(random.getstate()),
            "rng_numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]]}


def restore_python_rng(record: dict) -> None:
    random.setstate(random_state_tuple(record["rng_python"]))
    kind, keys, *rest = record["rng_numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))


def save_checkpoint(folder: Path, model, optimizer, scheduler, progress: dict, improved: bool,
                    previous: dict | None) -> dict:
    """Commit the epoch in ``progress``: its files first, then the manifest; returns the manifest.

    ``improved``: validation accuracy beat the best so far, so this epoch's weights become the best;
    otherwise the best stays the one ``previous`` (the last manifest) names."""
    epoch = progress["epoch"]
    card = {key: progress.get(key) for key in ("epoch", "classes", "data", "input_size")}
    if card["data"] != "digits" and card["input_size"]:  # the preprocessing evaluation used: predict repeats it
        card["data_config"] = vertebra_config(card["input_size"]).to_dict()
    weights = save_weights(model, folder / f"last-e{epoch:04d}.safetensors", metadata=card).name
    tensors, optimizer_json = split_optimizer(optimizer.state_dict())
    tensors["rng.torch"] = torch.get_rng_state()
    state = write_tensors(folder / f"last-e{epoch:04d}.state.safetensors", tensors).name
    if improved:
        best = {"epoch": epoch, "val_accuracy": progress["history"][-1]["val_accuracy"],
                "weights": save_weights(model, folder / f"best-e{epoch:04d}.safetensors", metadata=card).name}
    else:
        best = (previous or {}).get("best")
    manifest = {**progress, "weights": weights, "state": state, "best": best, "optimizer": optimizer_json,
                "scheduler": scheduler.state_dict(), **python_rng_state()}
    write_json(folder / MANIFEST, manifest)  # the commit point
    tidy(folder, manifest)
    return manifest


def tidy(folder: Path, manifest: dict) -> None:
    """Delete the checkpoint files ``manifest`` does not name, and crash leftovers; only once the
    manifest is durable (its write synced the folder)."""
    best = (manifest.get("best") or {}).get("weights", "")
    remove_unreferenced(folder, CHECKPOINT_FILES, {manifest["weights"], manifest["state"], best})


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    return read_json(path, "the run's checkpoint manifest") if path.exists() else None


def load_checkpoint(folder: Path, model, optimizer=None, scheduler=None) -> dict:
    """Restore the last epoch's weights (and optimizer, scheduler and RNG states when given)."""
    record = read_manifest(folder)
    if record is None:
        raise ValueError(f"no checkpoint in {folder}: it has no {MANIFEST}")
    load_weights(model, Path(folder) / record["weights"])
    if optimizer is not None:
        tensors = load_file(Path(folder) / record["state"])
        optimizer.load_state_dict(join_optimizer(tensors, record["optimizer"]))
        torch.set_rng_state(tensors["rng.torch"])
        restore_python_rng(record)
    if scheduler is not None:
        scheduler.load_state_dict(record["scheduler"])
    return record


def load_best(folder: Path, model) -> dict | None:
    """Load the best epoch's weights into ``model``; its manifest entry, or None before any epoch."""
    record = read_manifest(folder)
    if record is None or not record.get("best"):
        return None
    load_weights(model, Path(folder) / record["best"]["weights"])
    return record["best"]
