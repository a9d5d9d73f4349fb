"""A block's data flow, read from one forward pass at the granularity a paper draws it.

A *scope* is a module whose picture we want (the network, or one block).  Its *atoms* are the
modules drawn as one box each: its descendants, seen through plain containers (``nn.Sequential``,
``ModuleList``, ``ModuleDict``), with no-op modules (identity, dropout, drop-path) left out.  While a
scope runs, a ``TorchFunctionMode`` watches the ops between its atoms: additions, products,
concatenations, channel splits and shuffles become nodes of their own; every other op passes its
input's producer on.  An atom's edges come from the tensors its ops actually read, so a layer
handed every earlier output (a NAS child's) is wired only to those it uses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
NO_OPS = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Flatten)

# Ops drawn as nodes between atoms: function name -> label.
OPS = {
    **dict.fromkeys(("add", "add_", "__add__", "__iadd__", "__radd__"), "+"),
    **dict.fromkeys(("mul", "mul_", "__mul__", "__imul__", "__rmul__"), "×"),
    **dict.fromkeys(("sub", "__sub__", "__rsub__"), "−"),
    **dict.fromkeys(("cat", "concat", "concatenate"), "concat"),
    **dict.fromkeys(("chunk", "split", "tensor_split"), "split"),
    **dict.fromkeys(("sigmoid", "sigmoid_"), "σ"),
    **dict.fromkeys(("tanh", "tanh_"), "tanh"),
    **dict.fromkeys(("relu", "relu_"), "ReLU"),
    "linear": "FC", "max_pool2d": "max pool", "avg_pool2d": "avg pool",
}


def is_no_op(module: nn.Module) -> bool:
    empty = type(module) in CONTAINERS and not atoms(module)  # holds nothing, or only no-ops
    return empty or isinstance(module, NO_OPS) or type(module).__name__ == "DropPath"


def atoms(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(qualified name, module) of the modules drawn as single boxes inside ``module``, in order."""
    found = []
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if type(child) in CONTAINERS:
            found += atoms(child, path)
        elif not is_no_op(child):
            found.append((path, child))
    return found


def atoms_of(module: nn.Module) -> dict[int, str]:
    """id -> qualified name of ``atoms(module)``."""
    return {id(child): path for path, child in atoms(module)}


@dataclass
class Node:
    index: int
    kind: str  # "input", "output", "module" or "op"
    label: str  # the op's symbol, or the module's qualified name
    module: nn.Module | None = None
    inputs: list[int] = field(default_factory=list)
    shape: tuple[int, ...] = ()
    note: str = ""  # e.g. which gate a chunk's piece is, or a scalar factor


@dataclass
class Graph:
    """One scope's data flow: nodes in execution order (so inputs always come first)."""

    module: nn.Module
    path: str
    nodes: list[Node] = field(default_factory=list)

    def add(self, kind: str, label: str, inputs=(), module=None, shape=(), note="") -> Node:
        node = Node(len(self.nodes), kind, label, module, list(dict.fromkeys(inputs)), tuple(shape), note)
        self.nodes.append(node)
        return node

    def signature(self, name=lambda module: type(module).__name__) -> tuple:
        """The drawing's topology and each node's ``name(module)`` (or op): equal signatures draw
        alike.  The inputs count as one (a dense layer reads every earlier map, and is the same layer)."""
        number, count = {}, 0
        for node in self.nodes:
            if node.kind != "input":
                count += 1
            number[node.index] = count if node.kind != "input" else 0
        return tuple((n.kind, name(n.module) if n.module is not None else n.label,
                      tuple(dict.fromkeys(number[i] for i in n.inputs)))
                     for n in self.nodes if n.kind != "input")


@dataclass
class _Scope:
    graph: Graph
    atoms: dict[int, str]
    producer: dict[int, tuple[int, str]] = field(default_factory=dict)  # id(tensor) -> (node, note)
    running: nn.Module | None = None
    reads: list[int] = field(default_factory=list)


def _tensors(value) -> list[torch.Tensor]:
    return [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]


class _Tracer(TorchFunctionMode):
    def __init__(self, scopes: dict[int, tuple[str, dict[int, str]]], input_names=(), output_names=(),
                 piece_names=()):
        super().__init__()
        self.wanted = scopes  # id(module) -> (path, atoms)
        self.input_names, self.output_names = tuple(input_names), tuple(output_names)
        self.piece_names = tuple(piece_names)
        self.stack: list[_Scope] = []
        self.graphs: list[Graph] = []
        self.alive: list[torch.Tensor] = []  # no tensor id is reused while we trace

    # -- modules ------------------------------------------------------------------------------
    def before(self, module, args):
        scope = self.stack[-1] if self.stack else None
        if scope is not None and scope.running is None and id(module) in scope.atoms:
            scope.running, scope.reads = module, []
        if id(module) in self.wanted:
            path, atoms = self.wanted[id(module)]
            inner = _Scope(Graph(module, path), atoms)
            tensors = _tensors(args)
            for index, tensor in enumerate(tensors):
                name = self.input_names[index] if index < len(self.input_names) else (
                    "input" if len(tensors) == 1 else f"input {index + 1}")
                self._map(inner, tensor, inner.graph.add("input", name, shape=tensor.shape).index)
            self.stack.append(inner)

    def after(self, module, args, output):
        if self.stack and self.stack[-1].graph.module is module:
            scope = self.stack.pop()
            for index, tensor in enumerate(_tensors(output)):
                source = scope.producer.get(id(tensor))
                name = self.output_names[index] if index < len(self.output_names) else "output"
                scope.graph.add("output", name, [] if source is None else [source[0]], shape=tensor.shape)
            self.graphs.append(scope.graph)
        if self.stack and self.stack[-1].running is module:
            scope = self.stack[-1]
            tensors = _tensors(output)
            node = scope.graph.add("module", scope.atoms[id(module)], scope.reads, module,
                                   tensors[0].shape if tensors else ())
            for tensor in tensors:
                self._map(scope, tensor, node.index)
            scope.running = None

    def _map(self, scope: _Scope, tensor: torch.Tensor, node: int, note: str = "") -> None:
        scope.producer[id(tensor)] = (node, note)
        self.alive.append(tensor)

    # -- ops between atoms ---------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.stack:
            return out
        inputs = _tensors((args, kwargs))
        for scope in self.stack:
            if scope.running is not None:
                scope.reads += [scope.producer[id(t)][0] for t in inputs if id(t) in scope.producer]
        scope = self.stack[-1]
        read = [scope.producer[id(t)] for t in inputs if id(t) in scope.producer]
        if scope.running is not None or not read:
            return out
        outputs = _tensors(out)
        name = getattr(func, "__name__", "")
        label = "channel shuffle" if name == "transpose" and inputs[0].ndim == 5 else OPS.get(name)
        if label is None:  # not drawn: the output stands for the input
            for tensor in outputs:
                self._map(scope, tensor, read[0][0], read[0][1])
            return out
        note = ", ".join(n for _, n in read if n)
        if label in ("×", "+") and len(read) == 1:
            scalars = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
            note = ", ".join([note] * bool(note) + [f"{label} {scalars[0]:g}"] * bool(scalars))
        if label == "FC":
            note = self._weight_name(args) or note
        if label.endswith("pool"):
            note = _pool_note(args, kwargs)
        node = scope.graph.add("op", label, [source for source, _ in read],
                               shape=outputs[0].shape if outputs else (), note=note)
        for index, tensor in enumerate(outputs):
            piece = self.piece_names[index] if label == "split" and index < len(self.piece_names) else ""
            self._map(scope, tensor, node.index, piece)
        return out

    def _weight_name(self, args) -> str:
        module = self.stack[-1].graph.module
        names = {id(p): n for n, p in module.named_parameters()}
        return next((names[id(a)] for a in args if id(a) in names), "")


def _pool_note(args, kwargs) -> str:
    kernel = kwargs.get("kernel_size", args[1] if len(args) > 1 else None)
    stride = kwargs.get("stride", args[2] if len(args) > 2 else None) or kernel
    size = lambda v: v if isinstance(v, int) else max(v)  # noqa: E731
    if kernel is None:
        return ""
    return f"{size(kernel)}×{size(kernel)}" + (f", /{size(stride)}" if size(stride) > 1 else "")


def trace(model: nn.Module, x, scopes: dict[nn.Module, str], *, root_atoms: dict[int, str] | None = None,
          input_names=(), output_names=(), piece_names=()) -> list[Graph]:
    """Run ``model(x)`` (``x`` a tensor or a tuple of arguments) once and return one Graph per
    scope module that ran (its first call), in the order they finished.  ``root_atoms`` overrides
    the atoms of ``model`` itself when it is a scope."""
    wanted = {id(m): (path, root_atoms if m is model and root_atoms is not None else atoms_of(m))
              for m, path in scopes.items()}
    tracer = _Tracer(wanted, input_names, output_names, piece_names)
    hooks = [nn.modules.module.register_module_forward_pre_hook(tracer.before),
             nn.modules.module.register_module_forward_hook(tracer.after)]
    try:
        with torch.no_grad(), tracer:
            model(*(x if isinstance(x, tuple) else (x,)))
    finally:
        for hook in hooks:
            hook.remove()
    seen, graphs = set(), []
    for graph in tracer.graphs:  # a module called twice keeps its first picture
        if id(graph.module) not in seen:
            seen.add(id(graph.module))
            graphs.append(graph)
    return graphs
