"""The four practical guidelines of ShuffleNet V2 (Ma et al. 2018, arXiv:1807.11164), as a report.

G1  Equal channel width minimises memory access cost: a 1x1 convolution with c1 != c2 costs
    more MAC than the bound 2*sqrt(hw*B) + B/hw that c1 == c2 reaches for the same B = hw*c1*c2.
G2  Excessive group convolution increases MAC: with g groups a 1x1 convolution's MAC is
    hw(c1 + c2) + c1*c2/g for only B/g multiply-adds.  Depthwise convolutions (g = channels)
    are listed apart: every efficient family uses them.
G3  Network fragmentation reduces parallelism: blocks whose input feeds several branches.
G4  Element-wise operations are not negligible: activations, additions, bias and
    BatchNorm do few MACs but move a lot of memory; their share of measured time.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .profile import LayerCost, profile

# aten ops that are element-wise (and BatchNorm, element-wise at inference) for G4
ELEMENTWISE = ("relu", "clamp", "hardtanh", "sigmoid", "hardsigmoid", "hardswish", "silu", "gelu", "tanh",
               "add", "sub", "mul", "div", "batch_norm", "threshold", "leaky_relu", "elu", "dropout")


@dataclass
class Finding:
    layer: str
    detail: str
    figures: dict


@dataclass
class GuidelineReport:
    model: str
    g1_unequal_1x1: list[Finding] = field(default_factory=list)
    g2_group_convs: list[Finding] = field(default_factory=list)
    depthwise_convs: int = 0
    g3_fragmented_blocks: list[Finding] = field(default_factory=list)
    g4_elementwise_share: float = 0.0  # of measured CPU time
    g4_elementwise_ms: float = 0.0
    g4_total_ms: float = 0.0

    def summary(self) -> dict:
        return {"G1 unequal 1x1 convs": len(self.g1_unequal_1x1), "G2 group convs": len(self.g2_group_convs),
                "depthwise convs": self.depthwise_convs, "G3 fragmented blocks": len(self.g3_fragmented_blocks),
                "G4 element-wise time share": round(self.g4_elementwise_share, 3)}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps({**asdict(self), "summary": self.summary()}, indent=indent)

    def table(self):
        from rich.table import Table

        table = Table(title=f"{self.model}: ShuffleNet V2 guidelines")
        for column in ("guideline", "finding", "figures"):
            table.add_column(column)
        rows = [("G1", self.g1_unequal_1x1), ("G2", self.g2_group_convs), ("G3", self.g3_fragmented_blocks)]
        for guideline, findings in rows:
            if not findings:
                table.add_row(guideline, "none", "")
            for finding in findings:
                table.add_row(guideline, f"{finding.layer}: {finding.detail}",
                              ", ".join(f"{k}={v}" for k, v in finding.figures.items()))
        table.add_row("G2", f"{self.depthwise_convs} depthwise convolutions (not counted as departures)", "")
        table.add_row("G4", f"element-wise ops take {100 * self.g4_elementwise_share:.1f}% of measured time",
                      f"{self.g4_elementwise_ms:.2f} of {self.g4_total_ms:.2f} ms")
        return table


def guidelines(model: nn.Module | str, input_size: int | tuple[int, int] | None = None,
               repeats: int = 3) -> GuidelineReport:
    """Where ``model`` departs from G1-G4, with the figures behind each finding."""
    if isinstance(model, str):
        from ..registry import create_model

        model = create_model(model)
    cost = profile(model, input_size, measure=False)
    report = GuidelineReport(model=cost.model)
    modules = dict(model.named_modules())
    rows = {row.name: row for row in cost.layers}
    for name, module in modules.items():
        if isinstance(module, nn.Conv2d) and name in rows:
            _check_conv(name, module, rows[name], report)
    report.g3_fragmented_blocks = _fragmented_blocks(model, cost.input_size)
    report.g4_elementwise_ms, report.g4_total_ms = _elementwise_time(model, cost.input_size, repeats)
    report.g4_elementwise_share = report.g4_elementwise_ms / max(report.g4_total_ms, 1e-9)
    return report


def _check_conv(name: str, conv: nn.Conv2d, row: LayerCost, report: GuidelineReport) -> None:
    c1, c2, groups = conv.in_channels, conv.out_channels, conv.groups
    hw = math.prod(row.output_shape[2:])
    accessed = row.memory_access // 4 if row.memory_access else 0  # elements, float32
    if groups == c1 and groups > 1:
        report.depthwise_convs += 1
        return
    if groups > 1:
        report.g2_group_convs.append(Finding(name, f"{groups} groups, {c1}->{c2} channels",
                                             {"groups": groups, "memory_access": accessed, "macs": row.macs,
                                              "memory_access_per_mac": round(accessed / max(row.macs, 1), 3)}))
    if conv.kernel_size == (1, 1) and c1 != c2:  # grouped ones too: ShuffleNet V1's bottlenecks
        macs = hw * c1 * c2 // groups
        bound = 2 * math.sqrt(hw * macs) + macs / hw  # G1's lower bound at c1 == c2 for these MACs
        report.g1_unequal_1x1.append(Finding(name, f"1x1 convolution {c1}->{c2}",
                                             {"ratio": round(max(c1, c2) / min(c1, c2), 2),
                                              "memory_access": accessed,
                                              "over_balanced_bound": round(accessed / bound, 3)}))


def _fragmented_blocks(model: nn.Module, input_size: tuple[int, int]) -> list[Finding]:
    """Blocks (children of a stage) whose input, or a view of it, feeds more than one child module
    that computes (an identity shortcut is not a branch; a projection shortcut is)."""
    blocks = {f"stages.{i}.{j}": block for i, stage in enumerate(getattr(model, "stages", []))
              if isinstance(stage, nn.Sequential) for j, block in enumerate(stage)}
    consumers: dict[str, set[str]] = {name: set() for name in blocks}
    inputs: dict[str, int] = {}
    handles = []
    for name, block in blocks.items():
        handles.append(block.register_forward_pre_hook(
            lambda m, args, name=name: inputs.__setitem__(name, _storage(args[0]))))
        for child_name, child in block.named_children():
            if isinstance(child, nn.Identity):
                continue  # an identity shortcut runs no ops: not a branch
            handles.append(child.register_forward_pre_hook(
                lambda m, args, name=name, child_name=child_name:
                consumers[name].add(child_name) if args and _storage(args[0]) == inputs.get(name) else None))
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, getattr(model, "in_chans", 3), *input_size))
    finally:
        for handle in handles:
            handle.remove()
    return [Finding(name, f"{len(children)} parallel branches", {"branches": sorted(children)})
            for name, children in consumers.items() if len(children) > 1]


def _storage(x) -> int | None:
    return x.untyped_storage().data_ptr() if isinstance(x, torch.Tensor) else None


def _elementwise_time(model: nn.Module, input_size: tuple[int, int], repeats: int) -> tuple[float, float]:
    """Self CPU time (ms per forward) of element-wise aten ops, and of all ops, by torch.profiler."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    x = torch.zeros(1, getattr(model, "in_chans", 3), *input_size)
    with torch.inference_mode():
        model(x)  # warm-up
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                model(x)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    elementwise = sum(e.self_cpu_time_total for e in events
                      if any(op in e.key.removeprefix("aten::") for op in ELEMENTWISE))
    return elementwise / 1e3 / repeats, total / 1e3 / repeats
