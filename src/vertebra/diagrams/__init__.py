"""``vertebra.draw``: a model's picture as its paper draws it, from the modules the model is made of.

``detail="network"``: input, stem, stages, head, top to bottom, one box per stage with its blocks
and their repeat counts, its output's channels and resolution, and its share of the MACs and
parameters.  ``detail="blocks"``: each distinct block of the model once, its layers, branches,
shortcuts and merges as nodes and arrows; a recurrent layer as one step of its cell.  Drawing
reads the module tree and one forward pass on the meta device, so a 152-layer network draws on
one page in a fraction of a second, and a module the drawer does not know is a labelled box.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .labels import describe, is_block, is_recurrent, summary
from .render import Panel, render
from .trace import Graph, atoms, is_no_op, trace

DETAILS = ("network", "blocks")
FORMATS = (".svg", ".png")


@dataclass
class Diagram:
    """Panels ready to draw; ``save`` writes them, ``text`` is every word on the page."""

    model: str
    detail: str
    panels: list[Panel]

    def text(self) -> str:
        return "\n".join(line for panel in self.panels
                         for line in [*panel.title, *(l for text in panel.texts for l in text)])

    def save(self, path: str | Path, force: bool = False) -> Path:
        path = Path(path)
        if path.suffix.lower() not in FORMATS:
            raise ValueError(f"a diagram is written as .svg or .png, got {str(path)!r}")
        if path.is_dir():
            raise ValueError(f"{path} is a folder: name the file to write, e.g. {path / (self.model + '.svg')}")
        if path.exists() and not force:
            raise ValueError(f"{path} exists: pass force=True (--force) to replace it")
        if not path.parent.is_dir():
            raise ValueError(f"folder {str(path.parent)!r} does not exist")
        return render(self.panels, path)


def draw(model: nn.Module | str, detail: str = "network", input_size: int | None = None,
         out: str | Path | None = None, *, force: bool = False) -> Diagram:
    """Draw ``model`` (a module, or a registered name) at ``input_size`` (default: the model's).

    Returns the Diagram; with ``out`` (.svg or .png) it is also written there (an existing file
    only with ``force=True``).
    """
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {DETAILS}, got {detail!r}")
    if out is not None and Path(out).suffix.lower() not in FORMATS:
        raise ValueError(f"a diagram is written as .svg or .png, got {str(out)!r}")
    model = _model(model)
    training = model.training
    try:
        model.eval()  # the network as it infers: no auxiliary heads, no dropout
        x = _input(model, input_size)
        if detail == "network":
            panels = [_network_panel(model, x, _network(model, x))]
        else:
            network, panels = _block_panels(model, x)
            if any(len(node.inputs) > 1 for node in network.nodes):  # skips between stages: show the wiring
                panels.insert(0, _network_panel(model, x, network, costs=False))
    finally:
        model.train(training)  # a model in the middle of training stays in training
    name = getattr(model, "model_name", type(model).__name__)
    diagram = Diagram(name, detail, panels)
    if out is not None:
        diagram.save(out, force)
    return diagram


def _model(model) -> nn.Module:
    if isinstance(model, str):
        from ..registry import create_model, model_info

        model_info(model)  # an unknown name fails here, with the close matches
        with torch.device("meta"):
            return create_model(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"draw expects an nn.Module or a model name, got {type(model).__name__}")
    return model


def _input(model: nn.Module, input_size) -> torch.Tensor:
    size = input_size or getattr(model, "default_input_size", None)
    if size is None:
        raise ValueError("input_size is required for a model without default_input_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"input_size must be a positive int, got {size!r}")
    minimum = getattr(model, "min_input_size", 1)
    if size < minimum:
        raise ValueError(f"{getattr(model, 'model_name', type(model).__name__)} needs inputs of at least "
                         f"{minimum}x{minimum}, got {size}x{size}")
    weight = next(model.parameters(), torch.empty(0))
    return torch.zeros(1, getattr(model, "in_chans", 3), size, size, device=weight.device, dtype=weight.dtype)


# -- the network: stem, stages, head ---------------------------------------------------------------
def _units(model: nn.Module) -> dict[int, str]:
    """The network view's boxes: the top-level modules, with ``stages`` opened into its stages."""
    units = {}
    for name, child in model.named_children():
        if name == "stages" and isinstance(child, (nn.Sequential, nn.ModuleList)):
            units.update({id(stage): f"stages.{i}" for i, stage in enumerate(child)})
        elif not is_no_op(child):
            units[id(child)] = name
    return units


def _network(model: nn.Module, x: torch.Tensor) -> Graph:
    return trace(model, x, {model: ""}, root_atoms=_units(model))[0]


def _shape_text(shape) -> str:
    dims = tuple(shape)[1:]
    if len(dims) == 3:
        return f"{dims[0]} × {dims[1]}×{dims[2]}"
    if len(dims) == 2:
        return f"{dims[0]} steps × {dims[1]}"
    return " × ".join(map(str, dims))


def _share(part: int, whole: int) -> str:
    share = part / whole if whole else 0.0
    return f"{100 * share:.1f}%" if share < 0.1 else f"{100 * share:.0f}%"


def _network_panel(model: nn.Module, x: torch.Tensor, graph: Graph, costs: bool = True) -> Panel:
    from ..analysis import profile

    cost = profile(model, x.shape[-1], dtype=x.dtype, measure=False)  # the model keeps its dtype
    texts, styles = [], []
    for node in graph.nodes:
        if node.kind in ("input", "output"):
            texts.append([node.label, _shape_text(node.shape)])
            styles.append("io")
            continue
        if node.kind == "op":
            texts.append([node.label])
            styles.append("op")
            continue
        stage = node.label.startswith("stages.")
        head = (f"stage {int(node.label.split('.')[1]) + 1}" if stage else node.label)
        lines = summary(node.module)
        text = [f"{head}: {lines[0]}", *lines[1:], _shape_text(node.shape)]
        if costs:
            rows = [r for r in cost.layers if r.name == node.label or r.name.startswith(node.label + ".")]
            text.append(f"MACs {_share(sum(r.macs for r in rows), cost.macs)}, "
                        f"params {_share(sum(r.params for r in rows), cost.params)}")
        texts.append(text)
        styles.append("stage" if stage else _style(node.module))
    name = getattr(model, "model_name", type(model).__name__)
    size = f"{x.shape[1]}×{x.shape[2]}×{x.shape[3]}"
    title = [f"{name}: the network" if costs else f"{name}: how the stages connect",
             f"input {size}: {cost.params:,} parameters, {cost.macs / 1e6:,.1f} M multiply-adds"]
    return Panel(title, texts, styles, [node.inputs for node in graph.nodes])


# -- the blocks -------------------------------------------------------------------------------------
def _blocks_in(module: nn.Module, path: str, stage: bool = True) -> dict[nn.Module, str]:
    """The blocks inside ``module`` (a stage or a block) that get a drawing, at any depth.  A
    separable convolution is a box inside a block, and a block of its own as a stage's unit
    (MobileNet V1's)."""
    from ..layers import SeparableConv

    found = {}
    for relative, child in atoms(module):
        where = f"{path}.{relative}"
        if is_block(child) or stage and isinstance(child, SeparableConv):
            found[child] = where
            found.update(_blocks_in(child, where, stage=False))
    return found


def _block_scopes(model: nn.Module) -> dict[nn.Module, str]:
    named = dict(model.named_modules())
    scopes = {}
    for path in _units(model).values():
        unit = named[path]
        if not path.startswith("stages.") and path != "stem":
            continue
        inner = _blocks_in(unit, path)
        if inner:
            scopes.update(inner)
        elif path.startswith("stages.") and (is_block(unit) or is_recurrent(unit)):
            scopes[unit] = path  # a stage of plain layers is drawn as one chain
    return scopes


def _block_panels(model: nn.Module, x: torch.Tensor) -> tuple[Graph, list[Panel]]:
    """The network's graph and a panel per distinct block, from one pass."""
    scopes = _block_scopes(model)
    recurrent = {m: p for m, p in scopes.items() if is_recurrent(m)}
    traced = {model: "", **{m: p for m, p in scopes.items() if m not in recurrent}}
    graphs = trace(model, x, traced, root_atoms=_units(model))
    network = next(g for g in graphs if g.module is model)
    graphs = [g for g in graphs if g.module is not model]
    order = {id(m): i for i, m in enumerate(scopes)}
    graphs.sort(key=lambda g: order[id(g.module)])
    kinds: dict[tuple, list[Graph]] = {}
    for graph in graphs:  # a block of blocks (a dense block) is one drawing whatever its length
        nested = any(n.module is not None and is_block(n.module) for n in graph.nodes)
        kinds.setdefault((type(graph.module).__name__, () if nested else graph.signature(_kind)), []).append(graph)
    panels = [_block_panel(group[0], len(group)) for group in kinds.values()]
    drawn = set()
    for layer in recurrent:
        if type(layer).__name__ not in drawn:
            drawn.add(type(layer).__name__)
            panels.append(_cell_panel(layer))
    return network, panels


def _kind(module: nn.Module) -> str:
    """What a box says without its numbers: blocks alike but for sizes and strides draw once."""
    return re.sub(r"\d+", "#", re.sub(r", /\d+", "", " ".join(describe(module))))


def _style(module: nn.Module | None) -> str:
    from ..layers import ChannelShuffle, ConvNormAct, NormAct, SeparableConv, SqueezeExcite

    name = type(module).__name__
    if hasattr(module, "diagram_label"):  # a module that names itself: its words say what it is
        words = " ".join(module.diagram_label)
        return "pool" if "pool" in words else "conv" if "conv" in words or "reduce" in words else "other"
    if isinstance(module, (ConvNormAct, SeparableConv, nn.Conv2d)):
        return "conv"
    if isinstance(module, SqueezeExcite):
        return "se"
    if isinstance(module, ChannelShuffle):
        return "flow"
    if isinstance(module, nn.Linear) or is_recurrent(module):
        return "fc"
    if "Pool" in name:
        return "pool"
    if isinstance(module, NormAct) or "Norm" in name or not any(True for _ in module.children()) and \
            describe(module)[0] != name:
        return "norm"
    return "block" if is_block(module) else "other"


def _node_panel_parts(graph: Graph) -> tuple[list[list[str]], list[str]]:
    texts, styles = [], []
    for node in graph.nodes:
        if node.kind in ("input", "output"):
            texts.append([node.label, _shape_text(node.shape)])
            styles.append("io")
        elif node.kind == "op":
            texts.append([node.label] + ([node.note] if node.note else []))
            styles.append("flow" if node.label in ("concat", "split", "channel shuffle") else
                          "fc" if node.label == "FC" else "pool" if node.label.endswith("pool") else "op")
        elif is_block(node.module):
            texts.append([type(node.module).__name__, f"{node.shape[1]} ch" if len(node.shape) > 1 else ""])
            styles.append("block")
        else:
            texts.append(describe(node.module))
            styles.append(_style(node.module))
    return texts, styles


def _used(graph: Graph) -> Graph:
    """Without the inputs nobody reads (a NAS layer is handed every earlier output)."""
    read = {i for node in graph.nodes for i in node.inputs}
    keep = [n for n in graph.nodes if n.kind != "input" or n.index in read]
    if len(keep) == len(graph.nodes):
        return graph
    new_index = {n.index: i for i, n in enumerate(keep)}
    nodes = [type(n)(new_index[n.index], n.kind, n.label, n.module, [new_index[i] for i in n.inputs], n.shape,
                     n.note) for n in keep]
    return Graph(graph.module, graph.path, nodes)


def _block_panel(graph: Graph, count: int) -> Panel:
    graph = _used(graph)
    texts, styles = _node_panel_parts(graph)
    inputs = [n.shape for n in graph.nodes if n.kind == "input"]
    outputs = [n.shape for n in graph.nodes if n.kind == "output"]
    name = getattr(graph.module, "diagram_label", [type(graph.module).__name__])[0]
    title = [name if type(graph.module) is not nn.Sequential else f"stage {int(graph.path.split('.')[1]) + 1}",
             f"{graph.path}: {', '.join(map(_shape_text, inputs))} → {', '.join(map(_shape_text, outputs))}",
             f"{count} like it in the model" if count > 1 else "1 in the model"]
    return Panel(title, texts, styles, [n.inputs for n in graph.nodes])


def _cell_panel(layer: nn.Module) -> Panel:
    """One time step of a recurrent layer's cell: the gates, the cell state's path."""
    from ..layers import LSTM, LSTMCell, LSTMGates, RNNCell

    lstm = isinstance(layer, LSTM)
    with torch.device("meta"):
        cell = (LSTMCell(layer.input_size, layer.hidden_size, layer.bias) if lstm else
                RNNCell(layer.input_size, layer.hidden_size, layer.bias, getattr(layer, "nonlinearity", "tanh")))
        x, h = torch.zeros(1, layer.input_size), torch.zeros(1, layer.hidden_size)
        args = (x, (h, torch.zeros_like(h))) if lstm else (x, h)
    gates = [f"{name} gate" if name != "candidate" else "candidate" for name in LSTMGates._fields[:4]]
    graph = trace(cell, args, {cell: "cell"}, input_names=("x_t", "h_t-1", "c_t-1"),
                  output_names=("h_t", "c_t"), piece_names=gates)[0]
    texts, styles = _node_panel_parts(graph)
    name = type(layer).__name__
    title = [f"{name} cell, one time step",
             f"{layer.hidden_size} units, {layer.num_layers} layer(s)" +
             (", both directions" if getattr(layer, "bidirectional", False) else ""),
             "c: the cell state; i, f, o: sigmoid gates" if lstm else "h: the hidden state"]
    return Panel(title, texts, styles, [n.inputs for n in graph.nodes])
