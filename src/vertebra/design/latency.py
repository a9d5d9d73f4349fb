"""Measured latency as a lookup table: each distinct block of a network timed once, on this machine.

A network is cut into units: its stem, every block of its stages, and its head.  A unit's key is
its configuration (the module's full description: type, kernel, channels, stride, expansion,
squeeze-excitation, ...) with its input shape, so the same block at the same resolution is timed
once, whichever network it sits in.  A network's predicted latency is the sum over its units
(MnasNet, Tan et al. 2019, Sec. 3, measures on the phone; NetAdapt builds the same kind of
table).  Timing: batch 1, eval mode, inference mode, ``threads`` threads, the median of several
runs after a warm-up.  The table is JSON, keyed by the machine's CPU and torch version, so a search
reuses what an earlier one measured; a table from another machine is refused unless ``remeasure``.

NetAdapt (Yang et al. 2018) needs a finer table: one entry per *layer* (``Layer``: a convolution
by its input size, channels in and out, kernel, stride and groups, with the norm and activation
that follow it, or a linear layer), so that a network with fewer channels in one layer can be
predicted without building it.  Both kinds of entry live in the same table and file.

Latency is measured here, in one process, before or between the trainings, never inside a
training worker: workers share the cores, and a timing taken beside them measures the neighbours.
"""
from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from ..analysis import measure_latency
from ..durable import read_json, write_json
from ..hardware import cpu_name


def machine() -> dict:
    """What a latency depends on, besides the network."""
    return {"cpu": cpu_name(), "torch": torch.__version__}


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
    """Median milliseconds of ``call(x)`` (inference mode), subnormal floats flushed to zero: a briefly
    trained network can carry activations so small that x86 computes them 50x slower, a cost of the
    weights' values that no width change explains and that deployment runtimes avoid the same way."""
    flushing = torch.set_flush_denormal(True)
    try:
        return statistics.median(measure_latency(call, x, warmup=warmup, repeats=repeats))
    finally:
        if flushing:
            torch.set_flush_denormal(False)


@dataclass(frozen=True)
class Layer:
    """One layer as the table keys it, at batch 1: a convolution (``norm`` and ``act``: the batch norm
    and activation that follow it in its ConvNormAct) or a linear layer (``kind="linear"``)."""

    kind: str
    input: tuple[int, ...]  # (channels, height, width), or (features,) for a linear layer
    out: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = False
    norm: bool = False
    act: str = ""  # the activation's class name in torch.nn

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.input[0] == self.out

    @property
    def key(self) -> str:
        shape = "x".join(map(str, self.input))
        if self.kind == "linear":
            return f"linear {shape}->{self.out}" + (" bias" if self.bias else "")
        parts = [f"conv {shape}->{self.out}", "k{}x{}".format(*self.kernel), "s{}x{}".format(*self.stride),
                 "p{}x{}".format(*self.padding), "d{}x{}".format(*self.dilation), f"g{self.groups}"]
        return " ".join(parts + [word for word, on in (("bias", self.bias), ("bn", self.norm), (self.act, self.act))
                                 if on])

    def with_channels(self, in_: int | None = None, out: int | None = None) -> "Layer":
        """The same layer with other widths; a depthwise convolution keeps one width for all three."""
        if self.depthwise:
            width = out if out is not None else in_
            return replace(self, input=(width, *self.input[1:]), out=width, groups=width)
        return replace(self, input=(in_ if in_ is not None else self.input[0], *self.input[1:]),
                       out=out if out is not None else self.out)

    def build(self) -> nn.Module:
        """A module that computes what this layer computes, to time."""
        if self.kind == "linear":
            return nn.Linear(self.input[0], self.out, bias=self.bias)
        parts = [nn.Conv2d(self.input[0], self.out, self.kernel, self.stride, self.padding, self.dilation,
                           self.groups, bias=self.bias)]
        if self.norm:
            parts.append(nn.BatchNorm2d(self.out))
        if self.act:  # an activation torch.nn lacks is timed as a ReLU: the same elementwise cost
            parts.append(getattr(nn, self.act, nn.ReLU)())
        return nn.Sequential(*parts)


def network_layers(model: nn.Module, input_size: int) -> dict[str, Layer]:
    """Every convolution and linear layer of ``model`` as the table keys it, by module name, in the
    order the forward pass reaches them."""
    wrappers = {f"{name}.conv": module for name, module in model.named_modules()
                if isinstance(getattr(module, "conv", None), nn.Conv2d)}
    inputs: dict[str, tuple] = {}

    def record(name):
        def hook(module, args):  # returns None: the input goes on unchanged
            inputs.setdefault(name, tuple(args[0].shape[1:]))
        return hook

    layers = {name: module for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))}
    hooks = [module.register_forward_pre_hook(record(name)) for name, module in layers.items()]
    training = model.training
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, model.in_chans, input_size, input_size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
    found = {}
    for name in inputs:  # the order the forward pass reached them
        module = layers[name]
        if isinstance(module, nn.Linear):
            found[name] = Layer("linear", inputs[name], module.out_features, bias=module.bias is not None)
            continue
        wrapper = wrappers.get(name)
        act = getattr(wrapper, "act", None) if wrapper is not None else None
        found[name] = Layer("conv", inputs[name], module.out_channels, tuple(module.kernel_size), tuple(module.stride),
                            tuple(module.padding), tuple(module.dilation), module.groups, module.bias is not None,
                            norm=wrapper is not None and hasattr(wrapper, "bn"),
                            act=type(act).__name__ if act is not None else "")
    return found


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
        found = []
        for name, module in units(model):
            key = self.module_key(module, tuple(shapes[name]))
            self.module_ms(module, tuple(shapes[name]))
            found.append({"name": name, "key": key, **self.entries[key]})
        return found

    @staticmethod
    def module_key(module: nn.Module, shape: tuple) -> str:
        return hashlib.sha1(f"{module!r}|{tuple(shape)}".encode()).hexdigest()[:16]

    def module_ms(self, module: nn.Module, shape: tuple) -> float:
        """Any module's milliseconds on an input of ``shape`` (batch included), timed the first time."""
        key = self.module_key(module, shape)
        if key not in self.entries:
            previous = self._threads()
            try:
                ms = time_call(module.eval(), torch.randn(shape), self.repeats)
            finally:
                torch.set_num_threads(previous)
            self.entries[key] = {"ms": ms, "unit": type(module).__name__, "input": list(shape)}
            self.measured += 1
        return self.entries[key]["ms"]

    def layer_ms(self, layer: Layer) -> float:
        """One layer's milliseconds at batch 1, timed the first time it is asked for."""
        if layer.key not in self.entries:
            previous = self._threads()
            try:
                module = layer.build().eval()
                ms = time_call(module, torch.randn(1, *layer.input), self.repeats)
            finally:
                torch.set_num_threads(previous)
            self.entries[layer.key] = {"ms": ms, "unit": "layer", "input": list(layer.input)}
            self.measured += 1
        return self.entries[layer.key]["ms"]

    def predict_layers(self, layers) -> float:
        """The sum of ``layers``' milliseconds (NetAdapt's estimate of a network's latency)."""
        return sum(self.layer_ms(layer) for layer in layers)

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
