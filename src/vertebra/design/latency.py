"""Measured latency as a lookup table: each distinct block of a network timed once, on this machine.

A network is cut into units: its stem, every block of its stages, and its head.  A unit's key is
its configuration (the module's full description: type, kernel, channels, stride, expansion,
squeeze-excitation, ...) with its input shape, so the same block at the same resolution is timed
once, whichever network it sits in.  A network's predicted latency is the sum over its units
(MnasNet, Tan et al. 2019, Sec. 3, measures on the phone; NetAdapt builds the same kind of
table).  Timing: batch 1, eval mode, inference mode, ``threads`` threads, the median of several
runs after a warm-up.  The table is JSON, keyed by the machine's CPU and torch version, so a search
reuses what an earlier one measured; a table from another machine is refused unless ``remeasure``.

Latency is measured here, in one process, before or between the trainings, never inside a
training worker: workers share the cores, and a timing taken beside them measures the neighbours.
"""
from __future__ import annotations

import hashlib
import platform
import statistics
from pathlib import Path

import torch
from torch import nn

from ..analysis import measure_latency
from ..durable import read_json, write_json


def machine() -> dict:
    """What a latency depends on, besides the network."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "torch": torch.__version__}


def units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The stem, every block of the stages, and the head modules of a stem/stages/head network."""
    for part in ("stem", "stages"):
        if not isinstance(getattr(model, part, None), nn.Module):
            raise TypeError(f"{type(model).__name__} has no {part}: the latency table times networks built as "
                            f"stem, stages and head (vertebra's Backbone)")
    found = [("stem", model.stem)]
    for index, stage in enumerate(model.stages):
        blocks = list(stage.named_children()) if isinstance(stage, nn.Sequential) else [("", stage)]
        found += [(f"stages.{index}.{name}".rstrip("."), block) for name, block in blocks]
    return found + [(name, getattr(model, name)) for name in getattr(model, "head_modules", ("head",))]


def time_call(call, x: torch.Tensor, repeats: int, warmup: int = 3) -> float:
    """Median milliseconds of ``call(x)`` (inference mode)."""
    return statistics.median(measure_latency(call, x, warmup=warmup, repeats=repeats))


class LatencyTable:
    """Unit latencies by configuration; ``predict`` sums a network's, timing what is new."""

    def __init__(self, path: str | Path | None = None, *, threads: int = 1, repeats: int = 7,
                 remeasure: bool = False):
        self.path, self.threads, self.repeats = (Path(path) if path else None), threads, repeats
        self.machine = {**machine(), "threads": threads}
        self.entries: dict[str, dict] = {}
        self.measured = 0  # units timed by this object (the rest came from the file)
        if self.path and self.path.exists():
            saved = read_json(self.path, "a latency table")
            if saved.get("machine") != self.machine and not remeasure:
                raise ValueError(f"{self.path} was measured on {saved.get('machine')}, not on this "
                                 f"{self.machine}; its times do not hold here: pass remeasure "
                                 f"(--remeasure) to time every unit again, or give another file")
            if saved.get("machine") == self.machine:
                self.entries = saved["entries"]

    def _threads(self):
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        return previous

    def unit_latencies(self, model: nn.Module, input_size: int) -> list[dict]:
        """Each unit of ``model`` at ``input_size``: its name, key and milliseconds (timed if new)."""
        model = model.eval()
        shapes: dict[str, tuple] = {}

        def record(name):
            def hook(module, args):  # returns None: the input goes on unchanged
                shapes.setdefault(name, tuple(args[0].shape))
            return hook

        hooks = [module.register_forward_pre_hook(record(name)) for name, module in units(model)]
        try:
            with torch.inference_mode():
                model(torch.zeros(1, model.in_chans, input_size, input_size))
        finally:
            for hook in hooks:
                hook.remove()
        previous, found = self._threads(), []
        try:
            for name, module in units(model):
                shape = tuple(shapes[name])
                key = hashlib.sha1(f"{module!r}|{shape}".encode()).hexdigest()[:16]
                if key not in self.entries:
                    ms = time_call(module, torch.randn(shape), self.repeats)
                    self.entries[key] = {"ms": ms, "unit": type(module).__name__, "input": list(shape)}
                    self.measured += 1
                found.append({"name": name, "key": key, **self.entries[key]})
        finally:
            torch.set_num_threads(previous)
        return found

    def predict(self, model: nn.Module, input_size: int) -> float:
        """Predicted milliseconds at batch 1: the sum of the units' measured latencies."""
        return sum(unit["ms"] for unit in self.unit_latencies(model, input_size))

    def measure(self, model: nn.Module, input_size: int) -> float:
        """The whole network's measured milliseconds at batch 1 (the same threads and timing)."""
        previous = self._threads()
        try:
            return time_call(model.eval(), torch.randn(1, model.in_chans, input_size, input_size), self.repeats)
        finally:
            torch.set_num_threads(previous)

    def save(self) -> Path | None:
        if self.path:
            write_json(self.path, {"machine": self.machine, "entries": self.entries})
        return self.path

    def __len__(self) -> int:
        return len(self.entries)
