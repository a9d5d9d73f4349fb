"""The training loop: `vertebra train`, on one process or many (torchrun)."""
from __future__ import annotations

import contextlib
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..analysis import count_macs
from ..hardware import cpu_supports_bf16
from ..registry import create_model, model_info
from ..durable import FolderLock, check_output_folder, differing, holds_work, read_json, sync_folder, write_json
from .checkpoint import RUN, load_best, load_checkpoint, read_manifest, save_checkpoint, tidy
from ..weights import load_weights
from .data import DataSplits, collate, hold_out, load_data
from .distributed import World, close_world, init_world
from .plots import plot_history
from .precision import decide_step, describe

AUX_WEIGHT = 0.3  # GoogLeNet's weight for auxiliary classifiers; a model's own aux_loss_weight wins


@dataclass
class TrainConfig:
    model: str
    data: str = "digits"
    val: str | None = None
    val_split: float = 0.1
    input_size: int | None = None  # default: 32 for the digits, the model's card for image folders
    # The defaults are the small-dataset recipe that benchmarks/training.py --sweep chose on the
    # digits (README, "Training speed"): AdamW, a high peak rate, batch 32, a short warm-up, the
    # epochs to the plateau, and BatchNorm statistics that follow the weights.
    epochs: int = 5
    batch_size: int = 32  # global: split over the processes
    lr: float | None = None  # default: AdamW 8e-3 from scratch, 8e-4 from --weights; SGD 0.1 x batch / 256
    optimizer: str = "adamw"
    weight_decay: float | None = None  # default: 5e-5 for SGD, 0.05 for AdamW
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.3
    clip_grad: float | None = 5.0
    bn_eps: float | None = None  # every BatchNorm's epsilon (default: the model's)
    # every BatchNorm's running-statistics momentum (None: the model's own, 0.1 for most).  0.4 follows a
    # short run's fast-moving weights: validation after epoch 1 read 46-85% instead of 12-52%, the
    # final accuracy the same (README)
    bn_momentum: float | None = 0.4
    lr_decay_at: float | None = None  # a 10x step decay at this share of training instead of the cosine
    # None: where a few timed steps say it is faster (vertebra train's defaults; precision.py)
    channels_last: bool | None = True
    bf16: bool | None = False
    seed: int = 0
    out: Path | None = None
    resume: bool = False
    small_input: bool | None = None  # default: True for the 32x32 digits
    limit: int | None = None  # train on only this many images (a quick check)
    model_kwargs: dict = field(default_factory=dict)
    weights: str | None = None  # start from these weights (fine-tuning; an adapted network's file gives its widths)
    holdout: float | None = None  # validate on this share of the training images, kept out of training,
    # instead of the validation split (NetAdapt's held-out set, so the validation split stays unseen)
    workers: int | None = None  # data-loading processes (default: none for the digits, else the spare cores)
    cache: bool = False  # decode an image folder once, into memory, where it fits
    compile: bool = False  # torch.compile the training step (Inductor; eager where no C++ compiler is found)


@dataclass
class TrainResult:
    out: Path
    epochs: int
    best_val_accuracy: float
    test_accuracy: float | None
    wall_s: float
    images_per_s: float
    history: list[dict]
    model: nn.Module | None = None  # the trained model (best validation epoch's weights when a test split exists)


def check_config(config: TrainConfig, world: World) -> TrainConfig:
    model_info(config.model)  # an unknown name fails here, before any work
    if config.optimizer not in ("sgd", "adamw"):
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {config.optimizer!r}")
    for name in ("epochs", "batch_size"):
        if not isinstance(getattr(config, name), int) or getattr(config, name) < 1:
            raise ValueError(f"{name} must be a positive integer, got {getattr(config, name)!r}")
    if config.batch_size % world.size:
        raise ValueError(f"batch size {config.batch_size} does not split over {world.size} processes")
    if config.lr is not None and not config.lr > 0:
        raise ValueError(f"lr must be positive, got {config.lr}")
    if config.bn_eps is not None and not config.bn_eps > 0:
        raise ValueError(f"bn_eps must be positive, got {config.bn_eps}")
    if config.bn_momentum is not None and not 0 < config.bn_momentum <= 1:
        raise ValueError(f"bn_momentum must be in (0, 1], got {config.bn_momentum}")
    if config.lr_decay_at is not None and not 0 < config.lr_decay_at < 1:
        raise ValueError(f"lr_decay_at must be a share of training in (0, 1), got {config.lr_decay_at}")
    if not 0 < config.val_split < 1:
        raise ValueError(f"val_split must be in (0, 1), got {config.val_split}")
    if config.workers is not None and (type(config.workers) is not int or config.workers < 0):
        raise ValueError(f"workers must be an int >= 0, got {config.workers!r}")
    if config.holdout is not None and not 0 < config.holdout < 1:
        raise ValueError(f"holdout must be a share of the training images in (0, 1), got {config.holdout}")
    if config.weights is not None and not Path(config.weights).is_file():
        raise ValueError(f"weights file not found: {config.weights}")
    if config.bf16 and not cpu_supports_bf16() and world.device.type == "cpu":
        raise ValueError("bf16 autocast needs a CPU with AVX512-BF16 or AMX (this one has neither); "
                         "train in fp32 instead")
    out = Path(config.out or Path("runs") / config.model)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if holds_work(out) and not config.resume:
        raise ValueError(f"output folder {out} already holds a run; pass --resume to continue it "
                         f"or choose another --out")
    lr = config.lr or (0.1 * config.batch_size / 256 if config.optimizer == "sgd" else
                       8e-4 if config.weights is not None else 8e-3)  # fine-tuning keeps what the weights know
    decay = config.weight_decay if config.weight_decay is not None else (5e-5 if config.optimizer == "sgd" else 0.05)
    return TrainConfig(**{**asdict(config), "out": out, "lr": lr, "weight_decay": decay})


# What --resume may change: everything else in the identity must match the run's run.json.  Workers
# and the cache change how images arrive, never which or in what order.
RESUMABLE_CHANGES = ("epochs", "workers", "cache")


def run_identity(config: TrainConfig, data: DataSplits, world: World) -> dict:
    """What defines a run: a resume with any of this different would not continue the same run."""
    left_out = ("out", "resume", "data", "val", *RESUMABLE_CHANGES)  # the data is fingerprinted instead
    settings = {k: v for k, v in _jsonable(config).items() if k not in left_out}
    return {**settings, "small_input": _small_input(config, data), "input_size": data.input_size, "data": data.fingerprint,
            "processes": world.size}


def _small_input(config: TrainConfig, data: DataSplits) -> bool:
    """The 32x32 stem: as asked, else for inputs of 64 pixels or less."""
    return config.small_input if config.small_input is not None else data.input_size <= 64


def _warn_small_input_cost(config: TrainConfig, data: DataSplits, console: Console) -> None:
    """The 32x32 stem keeps a large image's full resolution: say what that costs."""
    if not config.small_input or data.input_size <= 64:
        return
    with torch.device("meta"):  # shapes only: counting costs no memory
        small, usual = (count_macs(create_model(config.model, num_classes=len(data.classes), small_input=flag,
                                                **config.model_kwargs), data.input_size) for flag in (True, False))
    console.print(f"[yellow]warning: --small-input at {data.input_size}x{data.input_size} costs "
                  f"{small / max(usual, 1):.0f}x the multiply-adds of {config.model}'s own stem "
                  f"({small / 1e9:.1f}G per image); the 32x32 stem is meant for images of 64 pixels or less[/]")


def build_model(config: TrainConfig, data: DataSplits) -> nn.Module:
    model = create_model(config.model, num_classes=len(data.classes), in_chans=data.in_chans,
                         small_input=_small_input(config, data), **config.model_kwargs)
    if config.weights is not None:
        load_weights(model, config.weights, adapt=True)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eps = module.eps if config.bn_eps is None else config.bn_eps
            module.momentum = module.momentum if config.bn_momentum is None else config.bn_momentum
    return model.to(memory_format=torch.channels_last) if config.channels_last else model  # None: chosen later


def default_workers(data: DataSplits) -> int:
    """Data-loading processes: none for the digits (tensors in memory, no augmentation); else the
    cores torch's own threads leave, at most 4."""
    if data.name == "digits":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores - 1))


def make_loader(dataset, batch_size: int, workers: int, device: torch.device, sampler=None, drop_last=False):
    """A DataLoader whose augmentation does not depend on ``workers`` (``Augmented`` seeds each sample
    by seed, epoch and index).  Workers are started afresh each epoch, not kept: each takes a copy of
    the dataset, and a persistent one would keep the epoch it started with."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, collate_fn=collate,
                      num_workers=workers, pin_memory=device.type == "cuda")


def compile_step(model: nn.Module, console: Console) -> nn.Module:
    """``torch.compile`` (Inductor) of the forward and, through AOTAutograd, the backward; the model as
    it is, with one line saying why, where Inductor has no C++ compiler to call."""
    from torch._inductor import config as inductor

    compiler = inductor.cpp.cxx[-1] if isinstance(inductor.cpp.cxx, tuple) else inductor.cpp.cxx
    if next(model.parameters()).device.type == "cpu" and not shutil.which(compiler or "g++"):
        console.print(f"[yellow]--compile: no C++ compiler ({compiler or 'g++'}) found for Inductor; training "
                      "eagerly instead[/]")
        return model
    # static shapes (every batch is full): the kernels, and so the sums, never depend on what else this
    # process compiled before, which automatic dynamic shapes would let them
    return torch.compile(model, dynamic=False)


def build_optimizer(config: TrainConfig, model: nn.Module, steps_per_epoch: int):
    decay = [p for p in model.parameters() if p.ndim > 1]  # no weight decay on norms and biases
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # one fused kernel where torch has it: AdamW's update of ResNet-18 took 10 ms fused against 54 ms
    # foreach, and a whole bf16 step on the digits ran 1.07x as fast (MobileNet V2 1.04x, ShuffleNet 1.01x)
    device = next(model.parameters()).device.type
    kernel = {"fused": True} if device in ("cpu", "cuda") else {"foreach": True}
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True, **kernel)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr, **kernel)
    total = config.epochs * steps_per_epoch
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)

    def schedule(step: int) -> float:  # linear warm-up, then cosine to zero (or a 10x step)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.lr_decay_at is not None:
            return 0.1 if step >= config.lr_decay_at * total else 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _match_moments_to_parameters(optimizer: torch.optim.Optimizer) -> None:
    """Give each optimizer moment its parameter's strides.  A checkpoint stores them contiguous, and
    a fused step walks a parameter and its moments as flat memory: a channels_last weight with an
    NCHW moment would be updated with another element's moment."""
    for parameter in (p for group in optimizer.param_groups for p in group["params"]):
        state = optimizer.state[parameter]
        for name, value in state.items():
            moment = isinstance(value, torch.Tensor) and value.shape == parameter.shape
            if moment and value.stride() != parameter.stride():
                state[name] = torch.empty_like(parameter).copy_(value)


def training_loss(output, target: torch.Tensor, criterion: nn.Module, aux_weight: float) -> tuple:
    """Loss and main logits; auxiliary classifiers (a named tuple in training mode) add weighted losses."""
    if isinstance(output, tuple):
        logits, *aux = output
        loss = criterion(logits, target) + sum(aux_weight * criterion(a, target) for a in aux if a is not None)
        return loss, logits
    return criterion(output, target), output


@torch.no_grad()
def evaluate(model: nn.Module, dataset, batch_size: int = 256, channels_last: bool = False, workers: int = 0) -> dict:
    """Accuracy, mean loss, the confusion matrix of ``model`` on ``dataset``, and the unreadable images."""
    model.eval()
    loader = make_loader(dataset, batch_size, workers, next(model.parameters()).device)
    predictions, targets, loss_sum, unreadable = [], [], 0.0, []
    for images, labels, bad in loader:
        unreadable += bad
        if images is None:
            continue
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = model(images)
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        predictions.append(logits.argmax(1))
        targets.append(labels)
    if not predictions:
        raise ValueError(f"none of the {len(unreadable)} images could be read; the first: "
                         f"{unreadable[0].path}: {unreadable[0].reason}")
    predicted, target = torch.cat(predictions), torch.cat(targets)
    classes = int(max(predicted.max(), target.max())) + 1
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    confusion.index_put_((target, predicted), torch.ones_like(target), accumulate=True)
    return {"accuracy": float((predicted == target).float().mean()), "loss": loss_sum / len(target),
            "confusion": confusion.numpy(), "count": len(target), "unreadable": unreadable}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(config: TrainConfig, console: Console | None = None) -> TrainResult:
    world = init_world()
    try:
        config = check_config(config, world)
        with _one_writer(config.out, world):
            return _train(config, world, console or Console())
    finally:
        close_world(world)


def _one_writer(out: Path, world: World):
    """The main process proves the folder writable, then holds its lock for the whole run."""
    if not world.is_main:
        return contextlib.nullcontext()
    check_output_folder(out)
    return FolderLock(out)


def _train(config: TrainConfig, world: World, console: Console) -> TrainResult:
    start_time = time.perf_counter()
    seed_everything(config.seed)
    size = config.input_size or (None if config.data == "digits" else model_info(config.model).input_size)
    data = load_data(config.data, val=config.val, val_split=config.val_split, input_size=size, seed=config.seed,
                     cache=config.cache)
    if data.cache_refused and world.is_main:
        console.print(f"[yellow]--cache: not caching, {data.cache_refused}; images are decoded every epoch[/]")
    if config.holdout is not None:
        data = hold_out(data, config.holdout)
    if config.limit is not None:
        data.train = Subset(data.train, range(min(config.limit, len(data.train))))
    model = build_model(config, data).to(world.device)
    sampler = DistributedSampler(data.train, num_replicas=world.size, rank=world.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    workers = default_workers(data) if config.workers is None else config.workers
    loader = make_loader(data.train, config.batch_size // world.size, workers, world.device, sampler, drop_last=True)
    if len(loader) == 0:
        fits = 2 ** (len(data.train) // world.size).bit_length() // 2 * world.size  # the largest power of two
        raise ValueError(f"{len(data.train)} training images give no full batch of {config.batch_size}: "
                         f"pass --batch-size {fits} (or fewer)")
    _warn_small_input_cost(config, data, console)
    optimizer, scheduler = build_optimizer(config, model, len(loader))
    manifest = _prepare_output(config, world, console, run_identity(config, data, world), model, optimizer,
                               scheduler)
    history, best = manifest.get("history", []), manifest.get("best_val_accuracy", -1.0)
    if config.bf16 is None or config.channels_last is None:
        config = replace(config, **_choose_step(config, model, data, world, console, manifest))
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
    _match_moments_to_parameters(optimizer)
    trained = DistributedDataParallel(model) if world.size > 1 else model
    if config.compile:
        trained = compile_step(trained, console)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    images_seen, train_seconds, first_epoch = 0, 0.0, manifest.get("epoch", 0) + 1
    for epoch in range(first_epoch, config.epochs + 1):
        sampler.set_epoch(epoch)
        augmented = data.train.dataset if isinstance(data.train, Subset) else data.train
        if hasattr(augmented, "set_epoch"):
            augmented.set_epoch(epoch)
        epoch_start = time.perf_counter()
        stats = _train_epoch(trained, loader, optimizer, scheduler, criterion, config, world, console, epoch,
                             warm=not config.compile or epoch > first_epoch)
        train_seconds += stats["seconds"]
        images_seen += stats["timed"]
        val = evaluate(model, data.val, channels_last=config.channels_last, workers=workers)
        if world.is_main:  # every process validates on the whole split
            _report_unreadable(console, val["unreadable"])
        history.append({"epoch": epoch, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"],
                        "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": scheduler.get_last_lr()[0],
                        "images_per_s": stats["images_per_s"], "skipped_images": stats["skipped"],
                        "val_skipped_images": len(val["unreadable"]), "first_step_s": stats["first_step_s"],
                        "epoch_s": time.perf_counter() - epoch_start,
                        "elapsed_s": time.perf_counter() - start_time})
        if world.is_main:
            manifest = _end_epoch(config, console, model, optimizer, scheduler, history, best, data, manifest)
        best = max(best, val["accuracy"])
        world.barrier()
    return _finish(config, world, console, model, data, history, best, start_time, images_seen, train_seconds)


def _choose_step(config: TrainConfig, model: nn.Module, data: DataSplits, world: World, console: Console,
                 manifest: dict) -> dict:
    """Layout and precision, where the run leaves them to measurement: a resumed run keeps what it
    chose; a new one asks precision.decide_step (on the CPU; elsewhere channels_last and fp32), on
    the first process, for all."""
    if "config" in manifest:
        return {name: bool(manifest["config"][name]) for name in ("channels_last", "bf16")}
    if world.device.type != "cpu":
        return {"channels_last": config.channels_last is not False, "bf16": bool(config.bf16)}
    found = {}
    if world.is_main:
        key = {"model": config.model, "model_kwargs": config.model_kwargs, "small_input": _small_input(config, data)}
        found = decide_step(model, key, config.batch_size // world.size, data.in_chans, data.input_size,
                            len(data.classes), config.channels_last, config.bf16)
        console.print(describe(found), soft_wrap=True)
    chosen = world.all_sum([float(found.get("channels_last", False)), float(found.get("bf16", False))])
    return {"channels_last": chosen[0] > 0, "bf16": chosen[1] > 0}


def _prepare_output(config, world, console, identity, model, optimizer, scheduler) -> dict:
    """A new run records its identity; a resume checks it and loads the last committed epoch.
    Nothing in the folder is deleted or overwritten before this has passed."""
    folder = config.out
    if world.is_main:
        _check_identity(config, console, identity)
    world.barrier()
    manifest = read_manifest(folder)
    if manifest is None:
        if config.resume and world.is_main:
            console.print(f"[yellow]{folder} has no completed epoch: starting from the beginning")
        return {}
    if manifest["epoch"] > config.epochs:
        raise ValueError(f"{folder} has finished epoch {manifest['epoch']}, past --epochs {config.epochs}")
    manifest = load_checkpoint(folder, model, optimizer, scheduler)
    if world.is_main:
        sync_folder(folder)  # the manifest durable before anything it does not name goes
        tidy(folder, manifest)  # what a kill after the last commit left behind
        console.print(f"resuming {folder} after epoch {manifest['epoch']} of {config.epochs}")
    return manifest


def _check_identity(config: TrainConfig, console: Console, identity: dict) -> None:
    folder = config.out
    if not config.resume and holds_work(folder):  # another process got here first
        raise ValueError(f"output folder {folder} already holds a run; pass --resume to continue it "
                         f"or choose another --out")
    run_file = folder / RUN
    if not run_file.exists():
        if holds_work(folder):  # e.g. a folder of another tool, or of an older vertebra
            raise ValueError(f"{folder} holds files but no {RUN}: it is not a vertebra training run, so "
                             f"--resume will not touch it; choose another --out")
        if config.resume:
            console.print(f"[yellow]{folder} holds no run: starting from the beginning")
        write_json(run_file, {"identity": identity})
        return
    recorded = read_json(run_file, "the run's identity")["identity"]
    # left to measurement: the layout and precision the run trained in stand (its manifest has them)
    measured = {name for name in ("channels_last", "bf16") if getattr(config, name) is None}
    recorded, identity = ({k: v for k, v in side.items() if k not in measured} for side in (recorded, identity))
    changes = [f"{key}: the run has {recorded.get(key)!r}, this command {identity.get(key)!r}"
               for key in differing(recorded, identity)]
    if changes:
        raise ValueError(f"{folder} holds another run; --resume continues only the same one "
                         f"(only --{', --'.join(RESUMABLE_CHANGES)} may change):\n  " + "\n  ".join(changes))


def _train_epoch(model, loader, optimizer, scheduler, criterion, config, world, console, epoch, warm=True) -> dict:
    """One epoch; ``warm=False``: the step has not run yet in this process, so a compiled step's
    first call compiles, and is timed apart from the images/s."""
    model.train()
    totals = [0.0, 0.0, 0.0, 0.0]  # loss sum, correct, images, skipped
    timed = 0  # images in the throughput figure
    columns = [TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.1%}  {task.fields[ips]:.0f} img/s"),
               TimeElapsedColumn()]
    start = time.perf_counter()
    first_step_s = None
    autocast = torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=config.bf16)
    aux_weight = getattr(getattr(model, "module", model), "aux_loss_weight", AUX_WEIGHT)
    with Progress(*columns, console=console, disable=not world.is_main, transient=False) as bar:
        task = bar.add_task("train", total=len(loader), epoch=epoch, epochs=config.epochs, loss=0.0, acc=0.0, ips=0.0)
        for images, labels, bad in loader:
            totals[3] += len(bad)
            _report_unreadable(console, bad)
            if images is None:
                continue
            images, labels = images.to(world.device), labels.to(world.device)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast:
                loss, logits = training_loss(model(images), labels, criterion, aux_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            optimizer.step()
            scheduler.step()
            totals[0] += float(loss.detach()) * len(labels)
            totals[1] += float((logits.argmax(1) == labels).sum())
            totals[2] += len(labels)
            if not warm and first_step_s is None:
                first_step_s, start = time.perf_counter() - start, time.perf_counter()
            else:
                timed += len(labels)
            seconds = time.perf_counter() - start
            bar.update(task, advance=1, loss=totals[0] / totals[2], acc=totals[1] / totals[2],
                       ips=timed * world.size / max(seconds, 1e-9))
    loss_sum, correct, images, skipped = world.all_sum(totals)
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / max(images, 1), "accuracy": correct / max(images, 1),
            "images_per_s": timed * world.size / max(seconds, 1e-9), "skipped": int(skipped),
            "first_step_s": first_step_s, "seconds": seconds, "timed": timed * world.size}


def _report_unreadable(console: Console, bad: list) -> None:
    for item in bad:
        console.print(f"[yellow]skipped unreadable image {item.path}: {item.reason}")


def _end_epoch(config, console, model, optimizer, scheduler, history, best, data, previous) -> dict:
    current = history[-1]
    record = {"epoch": current["epoch"], "model": config.model, "kwargs": config.model_kwargs,
              "classes": data.classes, "data": "digits" if data.name == "digits" else "folder",
              "input_size": data.input_size, "history": history,
              "best_val_accuracy": max(best, current["val_accuracy"]), "config": _jsonable(config)}
    manifest = save_checkpoint(config.out, model, optimizer, scheduler, record, current["val_accuracy"] > best,
                               previous)
    plot_history(history, config.out / "curves.png", f"{config.model} on {data.name}")
    unreadable = current["skipped_images"] + current["val_skipped_images"]
    skipped = f", {unreadable} unreadable images skipped" if unreadable else ""
    console.print(f"epoch {current['epoch']}: train loss {current['train_loss']:.3f}, "
                  f"val accuracy {current['val_accuracy']:.2%}{skipped}")
    return manifest


def _finish(config, world, console, model, data, history, best, start_time, images_seen, train_seconds):
    test_accuracy = None
    if data.test is not None and load_best(config.out, model) is not None:
        test_accuracy = evaluate(model, data.test, channels_last=config.channels_last)["accuracy"]
    wall = time.perf_counter() - start_time
    speed = images_seen / train_seconds if train_seconds else 0.0
    if world.is_main:
        test = f"test accuracy {test_accuracy:.2%}, " if test_accuracy is not None else ""
        console.print(f"[bold]{config.model} on {data.name}: {test}best validation accuracy {best:.2%}, "
                      f"{wall:.1f} s, {speed:.0f} images/s in training[/bold]")
    return TrainResult(config.out, config.epochs, best, test_accuracy, wall, speed, history, model)


def _jsonable(config: TrainConfig) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
