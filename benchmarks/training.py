"""Training speed: `vertebra train` against the plain PyTorch loop a user would write, turn by turn.

For each model on the embedded digits (32x32, ``small_input``) one run trains, in turn:
  (a) the plain loop of the PyTorch tutorial: the same vertebra model, eager fp32 NCHW, a default
      ``DataLoader`` (shuffled, batch 64), AdamW at 1e-3 with a cosine schedule over ``--plain-epochs``,
      validation after every epoch;
  (b) ``vertebra train`` with its defaults (``--vertebra`` adds options, e.g. ``--compile``).
Time-to-accuracy is the wall time from the start of training (model and loader built, nothing
trained) until the validation accuracy first reaches ``--target``; the plain loop stops there.
vertebra's figure is its own history's ``elapsed_s`` (data loading, model building, validation and
checkpoints included).  Images/s counts training steps only.

``--folder`` adds resnet18 on an image folder: ``--folder-images`` JPEGs (400x300, four classes of
shapes) written to a temporary folder, 224x224 inputs, ``--folder-epochs`` epochs each; (a) the plain
loop (vertebra's own image-folder dataset and augmentation, ``num_workers=0``), (b) `vertebra train`
(its default ``--workers``, plus ``--cache``).

One JSON line per measurement, then one line of ratios (a)/(b) per model.

``--layouts`` instead times one training step (forward, loss, backward, AdamW step; batch 64, 32x32)
of each model in NCHW and channels_last, eager and compiled, turn by turn, the median of
``--repeats``: the measurement behind the layout each model trains in.

``--sweep`` instead trains ``--models`` with `vertebra train` over a small grid of recipes (optimizer,
peak learning rate, batch size, epochs) and reports each one's test accuracy, wall time and
time to ``--target``: the sweep that chose the defaults.

    .venv/bin/python benchmarks/training.py [--models mobilenet_v2_100 resnet18 shufflenet_v2_x1_0]
        [--target 0.95] [--folder] [--compile] [--sweep]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from vertebra import create_model  # noqa: E402
from vertebra.train import TrainConfig, train  # noqa: E402
from vertebra.train.data import collate, load_data  # noqa: E402

QUIET = Console(quiet=True)


def plain_loop(model_name: str, data: str, epochs: int, target: float, input_size: int | None) -> dict:
    """The tutorial loop; stops at the first epoch whose validation accuracy reaches ``target``."""
    torch.manual_seed(0)
    splits = load_data(data, input_size=input_size)
    model = create_model(model_name, num_classes=len(splits.classes), small_input=splits.input_size <= 64)
    loader = DataLoader(splits.train, batch_size=64, shuffle=True, collate_fn=collate, drop_last=True)
    val_loader = DataLoader(splits.val, batch_size=256, collate_fn=collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * len(loader))
    criterion = nn.CrossEntropyLoss()
    start, train_s, images, history = time.perf_counter(), 0.0, 0, []
    for epoch in range(1, epochs + 1):
        model.train()
        began = time.perf_counter()
        for x, y, _ in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
            scheduler.step()
            images += len(y)
        train_s += time.perf_counter() - began
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y, _ in val_loader)
        history.append({"epoch": epoch, "val_accuracy": correct / len(splits.val),
                        "elapsed_s": time.perf_counter() - start})
        if history[-1]["val_accuracy"] >= target:
            break
    return summary("plain_loop", model_name, history, target, images / train_s)


def vertebra_train(model_name: str, data: str, target: float, options: dict, folder: Path) -> dict:
    result = train(TrainConfig(model_name, data=data, out=folder / f"{model_name}-{len(list(folder.iterdir()))}",
                               **options), QUIET)
    row = summary("vertebra_train", model_name, result.history, target, result.images_per_s)
    row["options"] = options
    chosen = json.loads((result.out / "checkpoint.json").read_text())["config"]  # what measurement chose
    row.update(channels_last=chosen["channels_last"], bf16=chosen["bf16"],
               first_step_s=result.history[0].get("first_step_s"))
    return row


def layouts(model_name: str, repeats: int, emit) -> None:
    """Median ms per training step, NCHW against channels_last, eager against torch.compile."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    steps = {}
    for layout in ("nchw", "channels_last"):
        for compiled in (False, True):
            model = create_model(model_name, num_classes=10, small_input=True)
            inputs = x
            if layout == "channels_last":
                model, inputs = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            optimizer = torch.optim.AdamW(model.parameters(), foreach=True)
            forward = torch.compile(model) if compiled else model

            def step(forward=forward, optimizer=optimizer, inputs=inputs):
                optimizer.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(forward(inputs), y).backward()
                optimizer.step()

            began = time.perf_counter()
            step()
            steps[f"{layout}{'_compiled' if compiled else ''}"] = (step, time.perf_counter() - began, [])
    for _ in range(repeats):  # turn by turn: a noisy moment falls on every variant
        for _, (step, _, samples) in steps.items():
            began = time.perf_counter()
            step()
            samples.append(time.perf_counter() - began)
    emit({"benchmark": "training_step", "model": model_name, "batch_size": 64, "input_size": 32,
          **{f"{name}_ms": round(1e3 * statistics.median(samples), 1) for name, (_, _, samples) in steps.items()},
          **{f"{name}_first_step_s": round(first, 1) for name, (_, first, _) in steps.items() if "compiled" in name}})


SWEEP = {"optimizer": ("adamw",), "lr": (1e-3, 2e-3, 4e-3), "batch_size": (16, 32, 64), "epochs": (3, 6)}


def sweep(model_name: str, target: float, folder: Path, emit, grid: dict = SWEEP) -> None:
    """`vertebra train` with every recipe of ``grid`` (its other settings the defaults)."""
    import itertools

    for values in itertools.product(*grid.values()):
        options = dict(zip(grid, values))
        result = train(TrainConfig(model_name, out=folder / f"sweep-{len(list(folder.iterdir()))}", **options), QUIET)
        row = summary("vertebra_train", model_name, result.history, target, result.images_per_s)
        emit({**row, "sweep": options, "test_accuracy": result.test_accuracy,
              "val_accuracy_by_epoch": [round(h["val_accuracy"], 4) for h in result.history]})


def summary(runner: str, model_name: str, history: list[dict], target: float, images_per_s: float) -> dict:
    reached = next((h for h in history if h["val_accuracy"] >= target - 1e-9), None)
    return {"benchmark": "training", "runner": runner, "model": model_name, "images_per_s": round(images_per_s, 1),
            "epochs": len(history), "best_val_accuracy": round(max(h["val_accuracy"] for h in history), 4),
            "target": target, "epoch_at_target": reached and reached["epoch"],
            "seconds_to_target": reached and round(reached["elapsed_s"], 1),
            "seconds": round(history[-1]["elapsed_s"], 1)}


def write_shapes(root: Path, count: int, seed: int = 0) -> Path:
    """``count`` 400x300 JPEGs of four classes (a disc, a square, a bar, a cross in a random colour,
    place and size, on noise): a folder a resnet18 can learn in a few epochs."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    classes = ("disc", "square", "bar", "cross")
    for index in range(count):
        name = classes[index % len(classes)]
        (root / name).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(noise.integers(0, 90, (300, 400, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(image)
        x, y, r = rng.randint(90, 310), rng.randint(90, 210), rng.randint(40, 80)
        colour = tuple(rng.randint(120, 255) for _ in range(3))
        if name == "disc":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        elif name == "square":
            draw.rectangle((x - r, y - r, x + r, y + r), fill=colour)
        elif name == "bar":
            draw.rectangle((x - r, y - r // 4, x + r, y + r // 4), fill=colour)
        else:
            draw.rectangle((x - r, y - r // 5, x + r, y + r // 5), fill=colour)
            draw.rectangle((x - r // 5, y - r, x + r // 5, y + r), fill=colour)
        image.save(root / name / f"{index:04d}.jpg", quality=90)
    return root


def ratios(plain: dict, ours: dict) -> dict:
    speed = ours["images_per_s"] / plain["images_per_s"]
    to_target = (plain["seconds_to_target"] / ours["seconds_to_target"]
                 if plain["seconds_to_target"] and ours["seconds_to_target"] else None)
    return {"benchmark": "training", "ratio": "plain_loop / vertebra_train", "model": ours["model"],
            "data": ours.get("data"), "images_per_s": round(speed, 2),
            "time_to_target": to_target and round(to_target, 2), "target": ours["target"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2_100", "resnet18", "shufflenet_v2_x1_0"])
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--plain-epochs", type=int, default=30)
    parser.add_argument("--folder", action="store_true", help="add resnet18 on a generated image folder, 224x224")
    parser.add_argument("--folder-only", action="store_true")
    parser.add_argument("--folder-images", type=int, default=320)
    parser.add_argument("--folder-epochs", type=int, default=3)
    parser.add_argument("--folder-target", type=float, default=0.9)
    parser.add_argument("--compile", action="store_true", help="vertebra train --compile")
    parser.add_argument("--sweep", action="store_true", help="the recipe sweep instead (digits)")
    parser.add_argument("--grid", type=json.loads, default=SWEEP, help="the sweep's grid, as JSON: "
                        "{TrainConfig field: [values]} (default: %(default)s)")
    parser.add_argument("--layouts", action="store_true", help="time one training step per layout instead")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args()

    def emit(row: dict) -> dict:
        print(json.dumps(row), flush=True)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
        return row

    # vertebra train's own defaults, as the command line has them: the layout and precision a few timed steps choose
    options = {"bf16": None, "channels_last": None, **({"compile": True} if args.compile else {})}
    with tempfile.TemporaryDirectory(prefix="vertebra-training-bench-") as scratch:
        runs = Path(scratch) / "runs"
        runs.mkdir()
        if args.layouts:
            for name in args.models:
                layouts(name, args.repeats, emit)
            return
        if args.sweep:
            for name in args.models:
                sweep(name, args.target, runs, emit, args.grid)
            return
        for name in [] if args.folder_only else args.models:
            plain = emit({**plain_loop(name, "digits", args.plain_epochs, args.target, None), "data": "digits"})
            ours = emit({**vertebra_train(name, "digits", args.target, options, runs), "data": "digits"})
            emit(ratios(plain, ours))
        if args.folder or args.folder_only:
            images = write_shapes(Path(scratch) / "shapes", args.folder_images)
            plain = emit({**plain_loop("resnet18", str(images), args.folder_epochs, args.folder_target, 224),
                          "data": "folder"})
            ours = emit({**vertebra_train("resnet18", str(images), args.folder_target,
                                          {**options, "epochs": args.folder_epochs, "cache": True}, runs),
                         "data": "folder"})
            emit(ratios(plain, ours))


if __name__ == "__main__":
    main()
