"""The step's memory layout and precision, decided by measurement: ``vertebra train``'s default.

Whether channels_last or bfloat16 autocast speeds up a training step depends on the model, the
input size and the CPU, not on a rule.  On a 2-core Xeon with AMX, ResNet-18's step ran 2.7x as
fast in bf16 at 224x224 and 2.1x at 32x32, while MobileNet V2 (0.81x) and ShuffleNet V2 (0.90x)
at 32x32 ran slower: their steps are mostly BatchNorm, depthwise convolutions and element-wise
work, which bf16 only adds casts to.  channels_last made MobileNet V2's step 1.4x as fast, and
ShuffleNet V2's (its channel shuffles are reshapes) within a few percent either way.  So a new run that
leaves them open (``channels_last=None``, ``bf16=None``) times a few steps of copies of its model
in each layout and precision on a synthetic batch, and takes the fastest: bf16 only when at least
BF16_MARGIN faster, NCHW only when at least LAYOUT_MARGIN faster than channels_last (the layout
oneDNN's convolutions prefer, and the one a near tie keeps).  The timings are cached per machine
(model, sizes, threads, CPU, torch), so later runs skip the measurement and a seed gives the same
run each time; the choice is recorded in the run, so a resume keeps it.
"""
from __future__ import annotations

import contextlib
import copy
import fcntl
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
LAYOUT_MARGIN = 1.1  # NCHW over channels_last only when clearly faster, not on a noisy tie
TIMED_STEPS = 2  # per variant, after one warm-up step each, taken in turns


def variant(channels_last: bool, bf16: bool) -> str:
    """A step variant's name, e.g. ``fp32_channels_last``."""
    return f"{'bf16' if bf16 else 'fp32'}_{'channels_last' if channels_last else 'nchw'}"


def cache_file() -> Path:
    """Where timings are kept: $VERTEBRA_CACHE_DIR, else $XDG_CACHE_HOME/vertebra or ~/.cache/vertebra."""
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


def measure(model: nn.Module, batch: int, in_chans: int, size: int, classes: int,
            variants: list[tuple[bool, bool]]) -> dict:
    """Seconds per step of a copy of ``model`` in each ``(channels_last, bf16)`` variant on a
    synthetic batch (the run's own model, data order and random numbers are not touched)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, in_chans, size, size, generator=generator)
    labels = torch.randint(0, classes, (batch,), generator=generator)
    layout = {True: torch.channels_last, False: torch.contiguous_format}
    copies = {(cl, bf16): copy.deepcopy(model).train().to(memory_format=layout[cl]) for cl, bf16 in variants}
    inputs = {cl: images.contiguous(memory_format=layout[cl]) for cl in layout}
    samples = {key: [] for key in copies}
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global generator: the run's are kept
        for (cl, bf16), twin in copies.items():
            step_seconds(twin, inputs[cl], labels, bf16)  # warm-up: oneDNN builds its kernels
        for _ in range(TIMED_STEPS):
            for (cl, bf16), twin in copies.items():
                samples[cl, bf16].append(step_seconds(twin, inputs[cl], labels, bf16))
    return {f"{variant(*key)}_s": statistics.median(times) for key, times in samples.items()}


def decide_step(model: nn.Module, key: dict, batch: int, in_chans: int, size: int, classes: int,
                channels_last: bool | None = None, bf16: bool | None = None) -> dict:
    """The layout and precision to train ``model`` in on this machine, where ``channels_last`` or
    ``bf16`` is None: from the cached timings, else measured and cached.  Returns ``channels_last``,
    ``bf16``, the timings (``times``) and ``cached``; or, where nothing was timed, the ``reason``."""
    runnable = (False, True) if cpu_supports_bf16() else (False,)
    layouts = (True, False) if channels_last is None else (channels_last,)
    precisions = runnable if bf16 is None else (bool(bf16),)
    fallback = {"channels_last": layouts[0], "bf16": precisions[0]}
    if len(layouts) * len(precisions) == 1:
        return {**fallback, "reason": "this CPU has no bf16 instructions" if bf16 is None else "chosen by hand"}
    # every variant this CPU runs is timed, so that one measurement serves any later choice
    variants = [(cl, b) for cl in (True, False) for b in runnable]
    key = {**key, "batch": batch, "in_chans": in_chans, "size": size, "variants": [variant(*v) for v in variants],
           "threads": torch.get_num_threads(), "cpu": cpu_name(), "torch": torch.__version__}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    with _cache_lock():  # two runs started together measure once, and so choose alike
        try:
            times, cached = _timings(digest, lambda: measure(model, batch, in_chans, size, classes, variants))
        except RuntimeError as error:  # e.g. bf16 unsupported by one of the model's ops: training will say more
            return {**fallback, "reason": f"timing the step failed: {str(error).splitlines()[0]}"}
    return {**choose(times, layouts, precisions), "times": times, "cached": cached}


@contextlib.contextmanager
def _cache_lock():
    """An exclusive ``flock`` beside the cache, waited for; none where the folder cannot be written."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _timings(digest: str, measure_now) -> tuple[dict, bool]:
    """The timings cached under ``digest``, else ``measure_now()``'s, cached; and whether cached."""
    path = cache_file()
    try:
        cache = read_json(path, "the step timings") if path.is_file() else {}
    except (OSError, ValueError):
        cache = {}  # unreadable: measured again and rewritten
    if digest in cache:
        return cache[digest], True
    cache[digest] = measure_now()
    try:
        write_json(path, cache)
    except (OSError, ValueError):  # durable's OutputError is a ValueError
        pass  # a read-only home: the next run measures again
    return cache[digest], False


def choose(times: dict, layouts: tuple, precisions: tuple) -> dict:
    """The fastest allowed variant, with the margins: per precision the layout, then the precision."""
    def seconds(cl: bool, bf16: bool) -> float:
        return times[f"{variant(cl, bf16)}_s"]

    def best_layout(bf16: bool) -> bool:
        if len(layouts) == 1:
            return layouts[0]
        return not seconds(False, bf16) * LAYOUT_MARGIN <= seconds(True, bf16)

    fp32, bf16 = best_layout(False), best_layout(True) if True in precisions else None
    if bf16 is not None and (len(precisions) == 1 or seconds(bf16, True) * BF16_MARGIN <= seconds(fp32, False)):
        return {"channels_last": bf16, "bf16": True}
    return {"channels_last": fp32, "bf16": False}


def describe(found: dict) -> str:
    """One line on the decision."""
    chosen = f"{'bf16 autocast' if found['bf16'] else 'fp32'}, {'channels_last' if found['channels_last'] else 'NCHW'}"
    if "times" not in found:
        return f"{chosen} ({found['reason']})"
    steps = ", ".join(f"{name[:4]} {'NCHW' if name.endswith('nchw_s') else 'channels_last'} {seconds * 1e3:.0f} ms"
                      for name, seconds in found["times"].items())
    where = "measured earlier on this machine" if found.get("cached") else "measured now"
    return (f"{chosen}: a step took {steps} ({where}; bf16 needs {BF16_MARGIN}x, NCHW {LAYOUT_MARGIN}x over "
            f"channels_last); --bf16/--no-bf16 and --channels-last/--no-channels-last choose by hand")
