"""What a box says: a layer in the words its paper uses ("3×3 conv, 64, /2"), a module as a summary."""
from __future__ import annotations

import itertools

from torch import nn

from ..layers import ChannelShuffle, ConvNormAct, NormAct, SeparableConv, SqueezeExcite
from .trace import atoms

ACTIVATIONS = {"ReLU": "ReLU", "ReLU6": "ReLU6", "Hardswish": "h-swish", "SiLU": "swish", "Sigmoid": "sigmoid",
               "Hardsigmoid": "h-sigmoid", "Tanh": "tanh", "GELU": "GELU", "LeakyReLU": "leaky ReLU"}
NORMS = {"BatchNorm2d": "BN", "BatchNorm1d": "BN", "LayerNorm": "LN", "GroupNorm": "GN",
         "LocalResponseNorm": "LRN", "ResponseNorm": "LRN"}


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def conv_text(conv: nn.Conv2d, kind: str = "conv") -> str:
    height, width = _pair(conv.kernel_size)
    parts = [f"{height}×{width} {kind}", str(conv.out_channels)]
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels
    if depthwise and kind == "conv":
        parts[0] = f"{height}×{width} dw conv"
    elif conv.groups > 1 and not depthwise:
        parts.append(f"{conv.groups} groups")
    if max(_pair(conv.stride)) > 1:
        parts.append(f"/{max(_pair(conv.stride))}")
    if max(_pair(conv.dilation)) > 1:
        parts.append(f"dilation {max(_pair(conv.dilation))}")
    return ", ".join(parts)


def _after(*modules: nn.Module | None) -> str:
    """The normalisation and activation after a convolution: "BN, ReLU"; "linear" when there is none."""
    names = [NORMS.get(type(m).__name__) or ACTIVATIONS.get(type(m).__name__) or type(m).__name__
             for m in modules if m is not None and not isinstance(m, nn.Identity)]
    return ", ".join(names) or "linear"


def _pool_text(pool: nn.Module) -> str:
    kind = "max" if "Max" in type(pool).__name__ else "avg"
    if "Adaptive" in type(pool).__name__:
        return f"global {kind} pool" if _pair(pool.output_size) == (1, 1) else f"adaptive {kind} pool"
    height, width = _pair(pool.kernel_size)
    stride = max(_pair(pool.stride or pool.kernel_size))
    return f"{height}×{width} {kind} pool" + (f", /{stride}" if stride > 1 else "")


def describe(module: nn.Module) -> list[str]:
    """A module as one box's lines of text: what it is, its main sizes.  A module may name itself
    (``diagram_label``, a list of lines), as DARTS's primitives do."""
    name = type(module).__name__
    if hasattr(module, "diagram_label"):
        return list(module.diagram_label)
    if isinstance(module, ConvNormAct):
        return [conv_text(module.conv), _after(getattr(module, "bn", None), getattr(module, "act", None))]
    if isinstance(module, SeparableConv):
        dw, pw = module.dw, module.pw
        text = conv_text(dw.conv, "sep conv").replace(f", {dw.conv.out_channels}", f", {pw.conv.out_channels}", 1)
        after = (_after(getattr(dw, "bn", None), getattr(dw, "act", None)),
                 _after(getattr(pw, "bn", None), getattr(pw, "act", None)))
        return [text] if after == ("linear", "linear") else [text, f"dw: {after[0]}; 1×1: {after[1]}"]
    if isinstance(module, nn.Conv2d):
        return [conv_text(module)]
    if isinstance(module, NormAct):
        return [_after(module.bn, module.act)]
    if isinstance(module, SqueezeExcite):
        channels, reduced = module.fc1.in_channels, module.fc1.out_channels
        return ["squeeze-excite", f"pool, {channels}→{reduced}→{channels}, {_after(module.gate)}"]
    if isinstance(module, ChannelShuffle):
        return [f"channel shuffle, {module.groups} groups"]
    if isinstance(module, nn.Linear):
        return [f"FC {module.out_features}"]
    if "Pool" in name:
        return [_pool_text(module)]
    if name in NORMS:
        return [NORMS[name]]
    if name in ACTIVATIONS:
        return [ACTIVATIONS[name]]
    if is_recurrent(module):
        directions = ", bidirectional" if getattr(module, "bidirectional", False) else ""
        return [f"{name} {module.hidden_size}{directions}"]
    return [name]


def is_recurrent(module: nn.Module) -> bool:
    """An RNN or LSTM layer (vertebra's or torch.nn's)."""
    return hasattr(module, "hidden_size") and hasattr(module, "num_layers")


def runs(items: list[str]) -> list[str]:
    """Consecutive equal items as one, with their count: ["a", "a", "b"] -> ["a ×2", "b"]."""
    return [f"{key} ×{count}" if (count := len(list(group))) > 1 else key
            for key, group in itertools.groupby(items)]


def is_block(module: nn.Module) -> bool:
    """A module with a drawing of its own: it has parts, and they are not one of the known layers."""
    simple = (ConvNormAct, NormAct, SeparableConv, SqueezeExcite, ChannelShuffle)
    leaf = getattr(module, "diagram_leaf", False)  # a composite layer that is drawn as one box
    return any(True for _ in module.children()) and not isinstance(module, simple) and not leaf


def summary(module: nn.Module, limit: int = 8) -> list[str]:
    """A module's parts in order, one run per line: blocks by class, layers by what they are."""
    if not is_block(module) or hasattr(module, "diagram_label"):
        return describe(module)[:1]
    parts = [_block_name(child) if is_block(child) else describe(child)[0] for child in _modules(module)]
    lines = runs(parts) or [type(module).__name__]
    return lines if len(lines) <= limit else lines[:limit - 1] + [f"… {len(lines) - limit + 1} more"]


def _block_name(block: nn.Module) -> str:
    """A block's class; a block of one repeated block (a dense block) with what it repeats."""
    parts = _modules(block)
    kinds = {type(child).__name__ for child in parts}
    if len(parts) > 1 and len(kinds) == 1 and all(is_block(child) for child in parts):
        return f"{type(block).__name__}: {kinds.pop()} ×{len(parts)}"
    return type(block).__name__


def _modules(module: nn.Module) -> list[nn.Module]:
    return [child for _, child in atoms(module)]
