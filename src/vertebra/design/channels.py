"""Which channels of a network can be removed, and removing them: NetAdapt's pruning rules.

One forward pass is watched op by op (a ``TorchFunctionMode``), and every activation's channel
dimension is labelled with the *channel group* it belongs to.  A convolution (groups = 1) or a
linear layer starts a new group and *consumes* its input's; a depthwise convolution and a batch
norm *follow* theirs (they keep channel i as channel i); activations, pooling and dropout pass it
on; adding or multiplying two tensors of equal width joins their groups (a residual group: every
block writing to the sum must shrink together; squeeze-and-excitation's rescaling joins its
``fc2`` to the channels it scales).  Anything else that reads channels as a whole (concatenation,
channel split and shuffle, reshapes, padding of channels, the network's input and output)
*fixes* a group: its width cannot change.

A group that is not fixed is one of NetAdapt's layers: cutting it to ``k`` channels keeps the
``k`` filters of largest L2 norm (summed over the producers, each normalised by its mean, so that
every producer of a residual group has an equal say), cuts its producers' outputs, its followers
and its consumers' inputs (``prune``).  Grouped convolutions that are not depthwise (ShuffleNet
V1, ResNeXt) fix the groups they touch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..weights.shapes import NORMS, refresh, set_channels, shape_of

# Functions that treat each channel alone and keep the tensor's shape (or pool over space).
PASS_THROUGH = {
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "sigmoid",
    "sigmoid_", "silu", "gelu", "tanh", "elu", "leaky_relu", "mish", "dropout", "dropout2d", "alpha_dropout",
    "contiguous", "clone", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
}
BINARY = {"add", "add_", "__add__", "__iadd__", "__radd__", "mul", "mul_", "__mul__", "__imul__", "__rmul__",
          "sub", "__sub__", "__isub__", "__rsub__", "div", "div_", "__truediv__", "__itruediv__"}
REDUCTIONS = {"mean", "sum", "amax"}
IGNORED = {"size", "dim", "__get__", "is_floating_point", "__len__", "numel", "__format__", "__bool__", "__eq__",
           "__ne__", "__index__", "item", "tolist", "is_contiguous", "__repr__"}


@dataclass
class ChannelGroup:
    """Channels that can only be cut together: one layer of NetAdapt's (named by its first producer)."""

    name: str
    channels: int
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    followers: list[str] = field(default_factory=list)


@dataclass
class _Space:
    channels: int
    producers: list = field(default_factory=list)
    consumers: list = field(default_factory=list)
    followers: list = field(default_factory=list)
    fixed: str | None = None  # why the width cannot change


class _Watch(TorchFunctionMode):
    """Labels each activation's channels with a space; joins and fixes spaces as the ops demand."""

    def __init__(self, model: nn.Module):
        super().__init__()
        # a layer's own tensors (weights, biases, running statistics) name it; they are not activations
        self.owner = {id(t): (name, module) for name, module in model.named_modules()
                      for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))}
        self.parent: list[int] = []
        self.spaces: list[_Space] = []
        self.label: dict[int, int] = {}  # id(activation) -> space
        self.kept: list = []  # every activation stays alive, so no id is reused during the pass
        self.where: list[str] = [""]
        self.order: dict[str, int] = {}  # layers in the order the forward pass reaches them

    # -- spaces: a union-find over channel dimensions ------------------------------------
    def new(self, channels: int, fixed: str | None = None) -> int:
        self.parent.append(len(self.parent))
        self.spaces.append(_Space(channels, fixed=fixed))
        return len(self.parent) - 1

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            self.parent[space] = self.parent[self.parent[space]]
            space = self.parent[space]
        return space

    def join(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            first, second = self.spaces[a], self.spaces[b]
            for part in ("producers", "consumers", "followers"):
                getattr(first, part).extend(getattr(second, part))
            first.fixed = first.fixed or second.fixed
        return a

    def fix(self, space: int, why: str) -> None:
        space = self.spaces[self.find(space)]
        space.fixed = space.fixed or why

    def space_of(self, tensor: torch.Tensor) -> int:
        """An activation's space; a tensor the watch has not seen (a constant) gets a fixed one."""
        if id(tensor) not in self.label:
            self.kept.append(tensor)
            channels = tensor.shape[1] if tensor.ndim >= 2 else 0
            self.label[id(tensor)] = self.new(channels, fixed=f"a tensor made in {self.where[-1] or 'forward'}")
        return self.find(self.label[id(tensor)])

    def set(self, tensor: torch.Tensor, space: int) -> None:
        self.kept.append(tensor)
        self.label[id(tensor)] = space

    # -- the ops --------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", str(func))
        if name in IGNORED or not _tensors(out):
            return out
        activations = [a for a in _tensors((args, kwargs)) if id(a) not in self.owner]
        if name in ("conv2d", "linear") and id(args[1]) in self.owner:
            (self.conv if name == "conv2d" else self.linear)(args, out)
        elif name == "batch_norm" and id(_norm_key(args, kwargs)) in self.owner:
            self.norm(args, kwargs, out)
        elif name in PASS_THROUGH and len(activations) == 1 and _same_width(activations[0], out):
            self.set(out, self.space_of(activations[0]))
        elif name in BINARY and len(activations) in (1, 2):
            self.binary(name, activations, out)
        elif name in REDUCTIONS and len(activations) == 1:
            self.reduce(name, activations[0], args, kwargs, out)
        elif name == "flatten" and len(activations) == 1 and activations[0].ndim == 4 \
                and activations[0].shape[2:].numel() == 1 and _start_dim(args, kwargs) == 1:
            self.set(out, self.space_of(activations[0]))
        else:
            self.opaque(name, activations, out)
        return out

    def conv(self, args, out):
        module_name, module = self.owner[id(args[1])]
        self.order.setdefault(module_name, len(self.order))
        source = self.space_of(args[0])
        if module.groups == 1:
            self.spaces[source].consumers.append(module_name)
            space = self.new(out.shape[1])
            self.spaces[space].producers.append(module_name)
            self.set(out, space)
        elif module.groups == module.in_channels == module.out_channels:
            self.spaces[source].followers.append(module_name)
            self.set(out, source)
        else:
            why = f"the grouped convolution {module_name} ({module.groups} groups)"
            self.fix(source, why)
            self.set(out, self.new(out.shape[1], fixed=why))

    def linear(self, args, out):
        module_name, _ = self.owner[id(args[1])]
        self.order.setdefault(module_name, len(self.order))
        source = self.space_of(args[0])
        if args[0].ndim != 2:
            self.fix(source, f"the linear layer {module_name} on a {args[0].ndim}-D input")
            self.set(out, self.new(out.shape[-1], fixed=f"the linear layer {module_name}"))
            return
        self.spaces[source].consumers.append(module_name)
        space = self.new(out.shape[1])
        self.spaces[space].producers.append(module_name)
        self.set(out, space)

    def norm(self, args, kwargs, out):
        module_name, _ = self.owner[id(_norm_key(args, kwargs))]
        self.order.setdefault(module_name, len(self.order))
        source = self.space_of(args[0])
        self.spaces[source].followers.append(module_name)
        self.set(out, source)

    def binary(self, name, activations, out):
        spaces = [self.space_of(a) for a in activations]
        wide = [(a, s) for a, s in zip(activations, spaces) if a.ndim >= 2 and a.shape[1] > 1]
        if any(a.ndim != out.ndim for a in activations) or not wide:
            return self.opaque(name, activations, out)
        space = wide[0][1]
        for _, other in wide[1:]:
            space = self.join(space, other)
        self.set(out, space)

    def reduce(self, name, tensor, args, kwargs, out):
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        dims = (dims,) if isinstance(dims, int) else dims
        if dims is None or {d % tensor.ndim for d in dims} & {0, 1}:
            return self.opaque(name, [tensor], out)
        self.set(out, self.space_of(tensor))

    def opaque(self, name, activations, out):
        """An op that reads channels as a whole: its inputs' and outputs' widths are fixed."""
        why = f"{name} in {self.where[-1] or 'forward'}"
        for tensor in activations:
            self.fix(self.space_of(tensor), why)
        for tensor in _tensors(out):
            self.set(tensor, self.new(tensor.shape[1] if tensor.ndim >= 2 else 0, fixed=why))


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


def _norm_key(args, kwargs):
    """The batch norm's own tensor that names it: its weight, else its running mean."""
    weight = args[3] if len(args) > 3 else kwargs.get("weight")
    return weight if weight is not None else (args[1] if len(args) > 1 else kwargs.get("running_mean"))


def _same_width(tensor: torch.Tensor, out) -> bool:
    return isinstance(out, torch.Tensor) and tensor.ndim == out.ndim >= 2 and tensor.shape[1] == out.shape[1]


def _start_dim(args, kwargs) -> int:
    return args[1] if len(args) > 1 else kwargs.get("start_dim", 0)


def trace_groups(model: nn.Module, input_size: int) -> tuple[list[ChannelGroup], dict[str, str]]:
    """The groups whose width can change, in forward order, and why each fixed layer is fixed
    (a producer's name -> the reason)."""
    watch = _Watch(model)
    hooks = [module.register_forward_pre_hook(lambda _m, _a, name=name: watch.where.append(name))
             for name, module in model.named_modules() if name]
    hooks += [module.register_forward_hook(lambda *_: watch.where.pop() and None)  # None: the output stays
              for name, module in model.named_modules() if name]
    training = model.training
    x = torch.zeros(1, model.in_chans, input_size, input_size)
    try:
        with torch.no_grad(), watch:
            watch.set(x, watch.new(x.shape[1], fixed="the network's input"))
            out = model.eval()(x)
            for tensor in _tensors(out):
                watch.fix(watch.space_of(tensor), "the network's output")
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
    return _groups(watch)


def _groups(watch: _Watch) -> tuple[list[ChannelGroup], dict[str, str]]:
    roots = sorted({watch.find(i) for i in range(len(watch.parent))})
    uses: dict[str, set[int]] = {}
    for root in roots:
        space = watch.spaces[root]
        for name in {*space.producers, *space.followers}:
            uses.setdefault(name, set()).add(root)
    for name, used_in in uses.items():  # a layer called on two different groups cannot follow either alone
        if len(used_in) > 1 and all(watch.spaces[r].fixed is None for r in used_in):
            for root in used_in:
                watch.fix(root, f"{name}, which is applied to channels of two groups")
    groups, fixed = [], {}
    for root in roots:
        space = watch.spaces[root]
        if not space.producers:
            continue
        if space.fixed:
            fixed[min(space.producers, key=watch.order.__getitem__)] = space.fixed
            continue
        producers, consumers, followers = (_in_order(names, watch.order)
                                           for names in (space.producers, space.consumers, space.followers))
        groups.append(ChannelGroup(producers[0], space.channels, producers, consumers, followers))
    return sorted(groups, key=lambda g: watch.order[g.name]), fixed


def _in_order(names: list[str], order: dict[str, int]) -> list[str]:
    return sorted(set(names), key=order.__getitem__)


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def filter_importance(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Each channel's importance: its producers' filter L2 norms, each producer's normalised by its mean."""
    modules = dict(model.named_modules())
    total = torch.zeros(group.channels)
    for name in group.producers:
        norms = modules[name].weight.detach().flatten(1).norm(dim=1).float()
        total += norms / norms.mean().clamp_min(1e-12)
    return total


def prune(model: nn.Module, group: ChannelGroup, channels: int) -> torch.Tensor:
    """Cut ``group`` to its ``channels`` most important channels, in place; returns the kept indices.

    The model records every layer whose width changed in ``layer_shapes`` (what a weights file
    needs to rebuild it)."""
    if not 1 <= channels <= group.channels:
        raise ValueError(f"{group.name} has {group.channels} channels: it can keep 1 to {group.channels}, "
                         f"not {channels}")
    keep = filter_importance(model, group).topk(channels).indices.sort().values
    modules = dict(model.named_modules())
    for name in group.producers:
        set_channels(modules[name], out=channels, keep_out=keep)
    for name in group.followers:
        set_channels(modules[name], out=channels, keep_out=keep)
    for name in group.consumers:
        set_channels(modules[name], in_=channels, keep_in=keep)
    changed = {name: shape_of(modules[name]) for name in (*group.producers, *group.followers, *group.consumers)}
    model.layer_shapes = {**getattr(model, "layer_shapes", {}), **changed}
    refresh(model)
    return keep


def predicted_parameters(model: nn.Module, group: ChannelGroup, channels: int) -> int:
    """The parameter count ``model`` will have once ``group`` keeps ``channels`` channels, worked out
    from the layers' shapes alone (what the pruning rules promise; the property test checks it)."""
    modules = dict(model.named_modules())
    touched = _unique([*group.producers, *group.followers, *group.consumers])
    before = sum(p.numel() for name in touched for p in modules[name].parameters(recurse=False))
    after = 0
    for name in touched:
        module = modules[name]
        out = channels if name in group.producers or name in group.followers else None
        in_ = channels if name in group.consumers or name in group.followers else None
        after += _parameters_at(module, out, in_)
    return sum(p.numel() for p in model.parameters()) - before + after


def _parameters_at(module: nn.Module, out: int | None, in_: int | None) -> int:
    """A layer's parameter count with ``out`` outputs and ``in_`` inputs (None: as it is)."""
    if isinstance(module, NORMS):
        return 2 * out if module.affine else 0
    if isinstance(module, nn.Linear):
        out, in_ = out or module.out_features, in_ or module.in_features
        return out * in_ + (out if module.bias is not None else 0)
    out, in_ = out or module.out_channels, in_ or module.in_channels
    per_filter = (1 if module.groups > 1 else in_) * module.weight[0, 0].numel()
    return out * per_filter + (out if module.bias is not None else 0)


__all__ = ["ChannelGroup", "trace_groups", "prune", "filter_importance", "predicted_parameters", "NORMS"]
