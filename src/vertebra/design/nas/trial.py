"""One trial: train a child through vertebra's training engine and report what was measured.

A trial is a plain dict in and a plain dict out, so any executor (a process pool, Ray tasks)
can run it.  It reports raw measurements (validation accuracy per epoch, parameters, MACs,
time); the search's objective turns them into a reward (objectives.py).
"""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .space import model_args

@dataclass(frozen=True)
class TrialSettings:
    """How each child trains (all through vertebra.train)."""

    epochs: int = 2
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    warmup_epochs: float = 0.2
    data: str = "digits"
    val: str | None = None
    limit: int | None = None  # train on only this many images (quick checks)
    input_size: int | None = None  # image folders are resized to this (the digits are 32x32)
    input_pool: int | None = None  # None: 4 for nas_cnn on the digits (8x8 images upsampled to 32x32,
    # so pooling by 4 loses nothing), else 1
    threads: int = 1  # each worker trains single-threaded, so K workers use K cores
    small_input: bool | None = None  # the 32x32 stem; None: for inputs of 64 pixels or less
    extra_model_kwargs: dict = field(default_factory=dict)


def trial_spec(trial: int, genotype: dict, settings: TrialSettings, folder: Path, seed: int, **overrides) -> dict:
    """Everything a worker needs to run one trial, as JSON-able data."""
    model, model_kwargs = model_args(genotype, settings.input_pool)
    spec = {"trial": trial, "genotype": genotype, "model": model, "model_kwargs": model_kwargs,
            "folder": str(folder), "seed": seed, **settings.__dict__}
    spec.update(overrides)
    return spec


def run_trial(spec: dict) -> dict:
    """Train the child ``spec`` describes; a child that fails to build or train reports its error
    (the objective scores it 0), so one bad architecture never stops a search."""
    from rich.console import Console

    from ...analysis import count_macs, count_params
    from ...train.checkpoint import read_manifest
    from ...train.loop import TrainConfig, train

    torch.set_num_threads(spec["threads"])
    folder = Path(spec["folder"])
    if folder.exists():  # a trial interrupted by a kill starts again from scratch: same seed, same result
        shutil.rmtree(folder)
    kwargs = {**spec["model_kwargs"], **spec["extra_model_kwargs"]}
    weights = spec.get("weights")
    if spec.get("inherit"):  # a morphism child: its parent's trained weights, edited to the same function
        from .morphisms import inherit

        weights = inherit(spec, folder.parent / f"{folder.name}-inherited")
    config = TrainConfig(model=spec["model"], data=spec["data"], val=spec["val"], epochs=spec["epochs"],
                         batch_size=spec["batch_size"], lr=spec["lr"], optimizer=spec["optimizer"],
                         weight_decay=spec["weight_decay"], warmup_epochs=spec["warmup_epochs"],
                         seed=spec["seed"], out=folder, limit=spec["limit"], input_size=spec["input_size"],
                         bn_eps=spec.get("bn_eps"), lr_decay_at=spec.get("lr_decay_at"), model_kwargs=kwargs,
                         small_input=spec.get("small_input"), weights=weights,
                         holdout=spec.get("holdout"))
    start = time.perf_counter()
    record = {"trial": spec["trial"], "genotype": spec["genotype"], **({"parent": spec["parent"]} if
                                                                       spec.get("parent") is not None else {})}
    try:
        result = train(config, console=Console(quiet=True))
        model = result.model
        record.update(history=[h["val_accuracy"] for h in result.history],
                      params=count_params(model), macs=count_macs(model, spec["input_size"] or 32),
                      test_accuracy=result.test_accuracy, weights=str(folder / read_manifest(folder)["weights"]))
    except Exception as error:  # noqa: BLE001 - the error is the trial's result
        record.update(history=[], error=f"{type(error).__name__}: {error}",
                      traceback=traceback.format_exc(limit=5))
    record["train_s"] = time.perf_counter() - start
    for key in ("lr", "weight_decay", "batch_size", "epochs", "bn_eps", "lr_decay_at"):
        record[key] = spec.get(key)
    return record
