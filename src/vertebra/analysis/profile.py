"""Per-layer cost of a model: parameters, MACs, memory access cost, activations, measured latency.

ShuffleNet V2 (Ma et al. 2018) showed that FLOPs alone do not predict speed: memory access
cost (MAC) and the platform matter too.  ``profile`` measures all of them in one pass, for a
vertebra model or any ``nn.Module``.

Conventions
- MACs: multiply-accumulates of convolutions and matrix products, counted by
  torch.utils.flop_counter (which reports FLOPs = 2 x MACs and counts nothing else).
- Memory access cost: every aten op's tensor inputs (weights included) read and outputs
  written, in bytes, as ShuffleNet V2 defines it: a 1x1 convolution costs hw(c1 + c2) + c1c2
  elements.  Views cost nothing; an in-place op reads and writes its tensor.
- Activations: bytes of the tensors each layer's ops produce (views excluded).
- Latency: warm-up, then the median of repeated timed forward passes without hooks; per layer,
  the median self time (its own ops, children excluded) measured with forward hooks.
A "layer" is a module that runs ops itself: a convolution, a BatchNorm, or a block whose
forward adds, concatenates or shuffles; its row counts only those ops and its own parameters.
"""
from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.module_tracker import ModuleTracker


@dataclass
class LayerCost:
    name: str  # qualified module name ("" is the model itself)
    kind: str  # module class
    params: int = 0
    macs: int = 0
    memory_access: int = 0  # bytes
    activations: int = 0  # bytes
    latency_ms: float = 0.0  # median self time
    ops: list[str] = field(default_factory=list)  # the aten ops it ran, in order
    output_shape: list[int] = field(default_factory=list)


@dataclass
class Profile:
    model: str
    input_size: tuple[int, int]
    batch_size: int
    threads: int
    dtype: str
    latency_ms: float  # median of ``repeats`` timed forward passes
    repeats: int
    layers: list[LayerCost]
    params: int = 0
    macs: int = 0
    memory_access: int = 0
    activations: int = 0
    torch_version: str = torch.__version__

    def __post_init__(self):
        self.params = sum(layer.params for layer in self.layers)
        self.macs = sum(layer.macs for layer in self.layers)
        self.memory_access = sum(layer.memory_access for layer in self.layers)
        self.activations = sum(layer.activations for layer in self.layers)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self, top: int | None = None):
        """A rich Table of the layers (the ``top`` costliest by MACs, if given) and the totals."""
        from rich.table import Table

        layers = self.layers if top is None else sorted(self.layers, key=lambda l: -l.macs)[:top]
        title = (f"{self.model} at {self.batch_size}x{self.input_size[0]}x{self.input_size[1]}, "
                 f"{self.dtype}, {self.threads} threads: {self.latency_ms:.2f} ms")
        table = Table(title=title)
        for column in ("layer", "kind", "params", "MACs", "mem access", "activations", "ms", "output"):
            table.add_column(column, justify="left" if column in ("layer", "kind") else "right")
        for layer in layers:
            table.add_row(layer.name or "(model)", layer.kind, f"{layer.params:,}", f"{layer.macs:,}",
                          _bytes(layer.memory_access), _bytes(layer.activations), f"{layer.latency_ms:.3f}",
                          "x".join(map(str, layer.output_shape)))
        table.add_section()
        table.add_row("total", "", f"{self.params:,}", f"{self.macs:,}", _bytes(self.memory_access),
                      _bytes(self.activations), f"{self.latency_ms:.2f}", "")
        return table


def _bytes(value: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024


class _CostMode(TorchDispatchMode):
    """Attributes each aten op's memory traffic and outputs to the innermost running module."""

    def __init__(self, tracker: ModuleTracker, root: str):
        super().__init__()
        self.tracker, self.root = tracker, root
        self.costs: dict[str, LayerCost] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        returns = func._schema.returns
        alias = returns[0].alias_info if returns else None
        if alias is not None and not alias.is_write:
            return out  # a view: no memory traffic
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        written = sum(t.numel() * t.element_size() for t in outputs)
        layer = self._layer()
        layer.memory_access += sum(t.numel() * t.element_size() for t in inputs) + written
        layer.activations += written
        layer.ops.append(func.__name__.split(".")[0])
        if outputs:
            layer.output_shape = list(outputs[0].shape)
        return out

    def _layer(self) -> LayerCost:
        innermost = max(self.tracker.parents, key=len)  # parents holds every ancestor's name
        name = innermost.removeprefix(self.root).removeprefix(".") if innermost != "Global" else ""
        if name not in self.costs:
            self.costs[name] = LayerCost(name=name, kind="")
        return self.costs[name]


def _self_times(model: nn.Module, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median per-module self time in ms, from pre/post forward hooks."""
    samples: dict[str, list[float]] = defaultdict(list)
    stack: list[list] = []  # [name, start, children time]
    handles = []

    def before(name):
        def hook(module, args):
            stack.append([name, time.perf_counter(), 0.0])
        return hook

    def after(module, args, output):
        name, start, children = stack.pop()
        total = time.perf_counter() - start
        if stack:
            stack[-1][2] += total
        samples[name].append((total - children) * 1e3)

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(before(name)))
        handles.append(module.register_forward_hook(after))
    try:
        with torch.inference_mode():
            for _ in range(repeats):
                model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {name: statistics.median(times) for name, times in samples.items()}


def measure_latency(model: nn.Module, x: torch.Tensor, warmup: int = 3, repeats: int = 10) -> list[float]:
    """Wall times in ms of ``repeats`` forward passes after ``warmup`` untimed ones."""
    times = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            start = time.perf_counter()
            model(x)
            if index >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return times


def profile(model: nn.Module | str, input_size: int | tuple[int, int] | None = None, batch_size: int = 1,
            *, in_chans: int | None = None, dtype: torch.dtype = torch.float32, warmup: int = 3,
            repeats: int = 10, measure: bool = True) -> Profile:
    """Profile ``model`` (a module, or a registered name) on a zero input of ``input_size``.

    ``input_size`` defaults to the model's ``default_input_size`` and ``in_chans`` to its
    ``in_chans`` (3 for a plain module); ``measure=False`` skips the timed runs (latencies 0).
    """
    if isinstance(model, str):
        from ..registry import create_model

        model = create_model(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"profile expects an nn.Module or a model name, got {type(model).__name__}")
    if input_size is None:
        input_size = getattr(model, "default_input_size", None)
        if input_size is None:
            raise ValueError("input_size is required for a model without default_input_size")
    height, width = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if min(height, width) < 1 or batch_size < 1:
        raise ValueError(f"input size and batch size must be positive, got {height}x{width}, batch {batch_size}")
    minimum = getattr(model, "min_input_size", 1)
    if min(height, width) < minimum:
        raise ValueError(f"{getattr(model, 'model_name', type(model).__name__)} needs inputs of at least "
                         f"{minimum}x{minimum}, got {height}x{width}")
    model = model.eval().to(dtype)
    device = next(model.parameters(), torch.empty(0)).device  # meta counts without computing
    x = torch.zeros(batch_size, in_chans or getattr(model, "in_chans", 3), height, width, dtype=dtype, device=device)
    root = type(model).__name__
    try:
        with torch.inference_mode(), ModuleTracker() as tracker, FlopCounterMode(display=False) as flops, \
                _CostMode(tracker, root) as costs:
            model(x)
    except RuntimeError as error:
        raise ValueError(f"{root} failed on an input of shape {tuple(x.shape)}: {error}") from None
    layers = _rows(model, root, costs.costs, flops.get_flop_counts())
    latency, self_ms = [0.0], {}
    if measure:
        latency = measure_latency(model, x, warmup, repeats)
        self_ms = _self_times(model, x, repeats)
    for layer in layers:
        layer.latency_ms = self_ms.get(layer.name, 0.0)
    return Profile(model=getattr(model, "model_name", root), input_size=(height, width), batch_size=batch_size,
                   threads=torch.get_num_threads(), dtype=str(dtype).removeprefix("torch."),
                   latency_ms=statistics.median(latency), repeats=repeats if measure else 0, layers=layers)


def _rows(model: nn.Module, root: str, costs: dict[str, LayerCost], flop_counts: dict) -> list[LayerCost]:
    """One row per module that ran ops or owns parameters, in execution order, with self MACs."""
    modules = dict(model.named_modules())
    inclusive = {name: sum(flop_counts.get(f"{root}.{name}" if name else root, {}).values()) // 2
                 for name in modules}
    rows = dict(costs)
    for name, module in modules.items():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if own and name not in rows:
            rows[name] = LayerCost(name=name, kind="")
        if name in rows:
            rows[name].params = own
    for name, row in rows.items():
        module = modules[name]
        row.kind = type(module).__name__
        children = [f"{name}.{child}" if name else child for child, _ in module.named_children()]
        row.macs = inclusive.get(name, 0) - sum(inclusive.get(child, 0) for child in children)
    return list(rows.values())
