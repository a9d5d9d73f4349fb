"""bf16 autocast where it is faster, decided by measurement: ``vertebra train``'s default.

Whether bfloat16 autocast speeds up a training step depends on the model, the input size and
the CPU, not on a rule.  On a 2-core Xeon with AMX, ResNet-18's step ran 2.7x as fast in bf16 at
224x224 and 2.1x at 32x32, while MobileNet V2 (0.81x) and ShuffleNet V2 (0.90x) at 32x32 ran
slower: their steps are mostly BatchNorm, depthwise convolutions and element-wise work, which
bf16 only adds casts to.  So a new run with ``bf16=None`` times a few steps of a copy of its model
both ways on a synthetic batch and trains in bf16 only when that is at least BF16_MARGIN faster.
The decision is cached per machine (model, sizes, threads, CPU, torch) so that later runs skip
the measurement and a seed gives the same run each time, and it is recorded in the run, so a
resume keeps it.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from ..durable import read_json, write_json
from ..hardware import cpu_name, cpu_supports_bf16

BF16_MARGIN = 1.2  # bf16 trades a little precision: take it only when clearly faster
TIMED_STEPS = 2  # per precision, after one warm-up step each, taken in turns


def cache_file() -> Path:
    """Where decisions are kept: $VERTEBRA_CACHE_DIR, else $XDG_CACHE_HOME/vertebra or ~/.cache/vertebra."""
    root = os.environ.get("VERTEBRA_CACHE_DIR")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(root or base / "vertebra") / "precision.json"


def step_seconds(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, bf16: bool) -> float:
    """One forward, backward and optimizer step of ``model``, in seconds."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-9, foreach=True)  # the copy is thrown away after
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        output = model(images)
        logits = output[0] if isinstance(output, (tuple, list)) else output  # an auxiliary head's extra logits
        loss = nn.functional.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def measure(model: nn.Module, batch: int, in_chans: int, size: int, classes: int, channels_last: bool) -> dict:
    """fp32 and bf16 seconds per step of a copy of ``model`` on a synthetic batch (the run's own
    model, data order and random numbers are not touched)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, in_chans, size, size, generator=generator)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    copies = {bf16: copy.deepcopy(model).train() for bf16 in (False, True)}
    samples = {False: [], True: []}
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator: the run's are kept
        for bf16, twin in copies.items():
            step_seconds(twin, images, labels, bf16)  # warm-up: oneDNN builds its kernels
        for _ in range(TIMED_STEPS):
            for bf16, twin in copies.items():
                samples[bf16].append(step_seconds(twin, images, labels, bf16))
    return {"fp32_s": statistics.median(samples[False]), "bf16_s": statistics.median(samples[True])}


def decide_bf16(model: nn.Module, key: dict, batch: int, in_chans: int, size: int, classes: int,
                channels_last: bool) -> dict:
    """Whether to train ``model`` in bf16 on this machine: from the cache, else measured and
    cached.  Returns the measurement and ``bf16``, and ``cached`` when it came from the cache."""
    if not cpu_supports_bf16():
        return {"bf16": False, "reason": "this CPU has no bf16 instructions"}
    key = {**key, "batch": batch, "in_chans": in_chans, "size": size, "channels_last": channels_last,
           "threads": torch.get_num_threads(), "cpu": cpu_name(), "torch": torch.__version__}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_file()
    try:
        cache = read_json(path, "the precision cache") if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}  # unreadable: measured again and rewritten
    if digest in cache:
        return {**cache[digest], "cached": True}
    try:
        found = measure(model, batch, in_chans, size, classes, channels_last)
    except RuntimeError as error:  # e.g. bf16 unsupported by one of the model's ops: training will say more
        return {"bf16": False, "reason": f"timing the step failed: {str(error).splitlines()[0]}"}
    found["bf16"] = found["fp32_s"] / found["bf16_s"] >= BF16_MARGIN
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**cache, digest: found})
    except (OSError, ValueError):  # durable's OutputError is a ValueError
        pass  # a read-only home: the next run measures again
    return found


def describe(found: dict) -> str:
    """One line on the decision."""
    if "fp32_s" not in found:
        return f"fp32 ({found['reason']})"
    ratio = found["fp32_s"] / found["bf16_s"]
    where = "measured earlier on this machine" if found.get("cached") else "measured now"
    chosen = "bf16 autocast" if found["bf16"] else "fp32"
    return (f"{chosen}: a step took {found['bf16_s'] * 1e3:.0f} ms in bf16 and {found['fp32_s'] * 1e3:.0f} ms in fp32 "
            f"({ratio:.2f}x, {where}; bf16 needs {BF16_MARGIN}x); --bf16 or --no-bf16 to choose")
