"""The training loop: `vertebra train`, on one process or many (torchrun)."""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from ..hardware import cpu_supports_bf16
from ..registry import create_model, model_info
from .checkpoint import load_checkpoint, read_progress, save_checkpoint
from .data import DataSplits, collate, load_data
from .distributed import World, close_world, init_world
from .plots import plot_history

AUX_WEIGHT = 0.3  # GoogLeNet's weight for auxiliary classifiers; a model's own aux_loss_weight wins


@dataclass
class TrainConfig:
    model: str
    data: str = "digits"
    val: str | None = None
    val_split: float = 0.1
    input_size: int | None = None  # image folders; default: the model's
    epochs: int = 10
    batch_size: int = 64  # global: split over the processes
    lr: float | None = None  # default: 0.1 x batch / 256 for SGD, 1e-3 for AdamW
    optimizer: str = "sgd"
    weight_decay: float | None = None  # default: 5e-5 for SGD, 0.05 for AdamW
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    clip_grad: float | None = 5.0
    channels_last: bool = True
    bf16: bool = False
    seed: int = 0
    out: Path | None = None
    resume: bool = False
    small_input: bool | None = None  # default: True for the 32x32 digits
    limit: int | None = None  # train on only this many images (a quick check)
    model_kwargs: dict = field(default_factory=dict)


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
    if config.bf16 and not cpu_supports_bf16() and world.device.type == "cpu":
        raise ValueError("bf16 autocast needs a CPU with AVX512-BF16 or AMX (this one has neither); "
                         "train in fp32 instead")
    out = Path(config.out or Path("runs") / config.model)
    existing = out.is_dir() and any(out.iterdir())
    if existing and not config.resume:
        raise ValueError(f"output folder {out} already holds a run; pass --resume to continue it "
                         f"or choose another --out")
    lr = config.lr or (0.1 * config.batch_size / 256 if config.optimizer == "sgd" else 1e-3)
    decay = config.weight_decay if config.weight_decay is not None else (5e-5 if config.optimizer == "sgd" else 0.05)
    return TrainConfig(**{**asdict(config), "out": out, "lr": lr, "weight_decay": decay})


def build_model(config: TrainConfig, data: DataSplits) -> nn.Module:
    small = config.small_input if config.small_input is not None else data.input_size <= 64
    model = create_model(config.model, num_classes=len(data.classes), in_chans=data.in_chans, small_input=small,
                         **config.model_kwargs)
    return model.to(memory_format=torch.channels_last) if config.channels_last else model


def build_optimizer(config: TrainConfig, model: nn.Module, steps_per_epoch: int):
    decay = [p for p in model.parameters() if p.ndim > 1]  # no weight decay on norms and biases
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=config.lr)
    total = config.epochs * steps_per_epoch
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)

    def schedule(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def training_loss(output, target: torch.Tensor, criterion: nn.Module, aux_weight: float) -> tuple:
    """Loss and main logits; auxiliary classifiers (a named tuple in training mode) add weighted losses."""
    if isinstance(output, tuple):
        logits, *aux = output
        loss = criterion(logits, target) + sum(aux_weight * criterion(a, target) for a in aux if a is not None)
        return loss, logits
    return criterion(output, target), output


@torch.no_grad()
def evaluate(model: nn.Module, dataset, batch_size: int = 256, channels_last: bool = False) -> dict:
    """Accuracy, mean loss and the confusion matrix of ``model`` on ``dataset``."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    predictions, targets, loss_sum = [], [], 0.0
    for images, labels, _bad in loader:
        if images is None:
            continue
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = model(images)
        loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
        predictions.append(logits.argmax(1))
        targets.append(labels)
    predicted, target = torch.cat(predictions), torch.cat(targets)
    classes = int(max(predicted.max(), target.max())) + 1
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    confusion.index_put_((target, predicted), torch.ones_like(target), accumulate=True)
    return {"accuracy": float((predicted == target).float().mean()), "loss": loss_sum / len(target),
            "confusion": confusion.numpy(), "count": len(target)}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(config: TrainConfig, console: Console | None = None) -> TrainResult:
    world = init_world()
    try:
        return _train(check_config(config, world), world, console or Console())
    finally:
        close_world(world)


def _train(config: TrainConfig, world: World, console: Console) -> TrainResult:
    start_time = time.perf_counter()
    seed_everything(config.seed)
    data = load_data(config.data, val=config.val, val_split=config.val_split,
                     input_size=config.input_size or model_info(config.model).input_size, seed=config.seed)
    if config.limit is not None:
        data.train = Subset(data.train, range(min(config.limit, len(data.train))))
    model = build_model(config, data).to(world.device)
    sampler = DistributedSampler(data.train, num_replicas=world.size, rank=world.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)
    loader = DataLoader(data.train, batch_size=config.batch_size // world.size, sampler=sampler, drop_last=True,
                        collate_fn=collate)
    if len(loader) == 0:
        raise ValueError(f"{len(data.train)} training images give no full batch of {config.batch_size}")
    optimizer, scheduler = build_optimizer(config, model, len(loader))
    progress_record = _prepare_output(config, world, console, model, optimizer, scheduler)
    history, best = progress_record.get("history", []), progress_record.get("best_val_accuracy", -1.0)
    trained = DistributedDataParallel(model) if world.size > 1 else model
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    images_seen, train_seconds = 0, 0.0
    for epoch in range(progress_record.get("epoch", 0) + 1, config.epochs + 1):
        sampler.set_epoch(epoch)
        augmented = data.train.dataset if isinstance(data.train, Subset) else data.train
        if hasattr(augmented, "set_epoch"):
            augmented.set_epoch(epoch)
        epoch_start = time.perf_counter()
        stats = _train_epoch(trained, loader, optimizer, scheduler, criterion, config, world, console, epoch)
        train_seconds += time.perf_counter() - epoch_start
        images_seen += stats["images"]
        val = evaluate(model, data.val, channels_last=config.channels_last)
        history.append({"epoch": epoch, "train_loss": stats["loss"], "train_accuracy": stats["accuracy"],
                        "val_loss": val["loss"], "val_accuracy": val["accuracy"], "lr": scheduler.get_last_lr()[0],
                        "images_per_s": stats["images_per_s"], "skipped_images": stats["skipped"]})
        if world.is_main:
            _end_epoch(config, console, model, optimizer, scheduler, history, best, data)
        best = max(best, val["accuracy"])
        world.barrier()
    return _finish(config, world, console, model, data, history, best, start_time, images_seen, train_seconds)


def _prepare_output(config, world, console, model, optimizer, scheduler) -> dict:
    record = read_progress(config.out) if config.resume else None
    if record is None:
        if world.is_main:
            config.out.mkdir(parents=True, exist_ok=True)
            if config.resume:
                console.print(f"[yellow]{config.out} has no completed epoch: starting from the beginning")
        world.barrier()
        return {}
    if record["model"] != config.model or record["kwargs"] != config.model_kwargs:
        raise ValueError(f"{config.out} holds a run of {record['model']} {record['kwargs']}, "
                         f"not {config.model} {config.model_kwargs}")
    record = load_checkpoint(config.out, "last", model, optimizer, scheduler)
    if world.is_main:
        console.print(f"resuming {config.out} after epoch {record['epoch']} of {config.epochs}")
    return record


def _train_epoch(model, loader, optimizer, scheduler, criterion, config, world, console, epoch) -> dict:
    model.train()
    totals = [0.0, 0.0, 0.0, 0.0]  # loss sum, correct, images, skipped
    columns = [TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}  acc {task.fields[acc]:.1%}  {task.fields[ips]:.0f} img/s"),
               TimeElapsedColumn()]
    start = time.perf_counter()
    autocast = torch.autocast(world.device.type, dtype=torch.bfloat16, enabled=config.bf16)
    aux_weight = getattr(getattr(model, "module", model), "aux_loss_weight", AUX_WEIGHT)
    with Progress(*columns, console=console, disable=not world.is_main, transient=False) as bar:
        task = bar.add_task("train", total=len(loader), epoch=epoch, epochs=config.epochs, loss=0.0, acc=0.0, ips=0.0)
        for images, labels, bad in loader:
            totals[3] += len(bad)
            for item in bad:
                console.print(f"[yellow]skipped unreadable image {item.path}: {item.reason}")
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
            seconds = time.perf_counter() - start
            bar.update(task, advance=1, loss=totals[0] / totals[2], acc=totals[1] / totals[2],
                       ips=totals[2] * world.size / max(seconds, 1e-9))
    loss_sum, correct, images, skipped = world.all_sum(totals)
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / max(images, 1), "accuracy": correct / max(images, 1), "images": int(images),
            "images_per_s": images / max(seconds, 1e-9), "skipped": int(skipped)}


def _end_epoch(config, console, model, optimizer, scheduler, history, best, data) -> None:
    current = history[-1]
    record = {"epoch": current["epoch"], "model": config.model, "kwargs": config.model_kwargs,
              "classes": data.classes, "data": "digits" if data.name == "digits" else "folder",
              "input_size": data.input_size, "history": history,
              "best_val_accuracy": max(best, current["val_accuracy"]), "config": _jsonable(config)}
    save_checkpoint(config.out, "last", model, optimizer, scheduler, record)
    if current["val_accuracy"] > best:
        save_checkpoint(config.out, "best", model, optimizer, scheduler, record)
    plot_history(history, config.out / "curves.png", f"{config.model} on {data.name}")
    skipped = f", {current['skipped_images']} unreadable images skipped" if current["skipped_images"] else ""
    console.print(f"epoch {current['epoch']}: train loss {current['train_loss']:.3f}, "
                  f"val accuracy {current['val_accuracy']:.2%}{skipped}")


def _finish(config, world, console, model, data, history, best, start_time, images_seen, train_seconds):
    test_accuracy = None
    if data.test is not None and (config.out / "best.json").exists():
        load_checkpoint(config.out, "best", model)
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
