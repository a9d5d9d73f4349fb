"""A network whose layers have other widths than its family builds: NetAdapt's output, recorded.

A pruned network is a real, smaller network: its convolutions, norms and linear layers hold fewer
channels.  ``set_channels`` changes one layer's shape in place (``keep`` selects which of its
channels survive, as pruning does; without it the new tensors are empty, to be filled by loading).
The model keeps the shapes that differ from its family's in ``model.layer_shapes``; a weights file
records them in its card (``save_weights``), and ``load_weights`` gives the model those shapes
before it loads, so ``create_model(name, pretrained=file)``, ``vertebra predict`` and ``vertebra
export`` rebuild an adapted network from its file alone.
"""
from __future__ import annotations

import torch
from torch import nn

NORMS = (nn.BatchNorm2d, nn.BatchNorm1d)


def shape_of(module: nn.Module) -> dict:
    """The channel shape of a convolution, norm or linear layer, as a weights card records it."""
    if isinstance(module, nn.Conv2d):
        return {"in": module.in_channels, "out": module.out_channels, "groups": module.groups}
    if isinstance(module, NORMS):
        return {"features": module.num_features}
    if isinstance(module, nn.Linear):
        return {"in": module.in_features, "out": module.out_features}
    raise TypeError(f"only convolutions, batch norms and linear layers change width, not {type(module).__name__}")


def _parameter(tensor: torch.Tensor, requires_grad: bool = True) -> nn.Parameter:
    return nn.Parameter(tensor.detach().clone().contiguous(), requires_grad=requires_grad)


def _take(tensor: torch.Tensor | None, dim: int, keep: torch.Tensor | None, size: int):
    """``tensor`` cut to ``size`` along ``dim``: the ``keep`` indices, or empty for loading."""
    if tensor is None:
        return None
    if keep is not None:
        return tensor.index_select(dim, keep)
    shape = list(tensor.shape)
    shape[dim] = size
    return torch.zeros(shape, dtype=tensor.dtype, device=tensor.device)


def set_channels(module: nn.Module, *, out: int | None = None, keep_out: torch.Tensor | None = None,
                 in_: int | None = None, keep_in: torch.Tensor | None = None) -> None:
    """Give ``module`` ``out`` output and ``in_`` input channels (a depthwise convolution and a norm
    have one width: pass ``out``).  ``keep_out``/``keep_in``: the surviving channels' indices."""
    if isinstance(module, NORMS):
        for name in ("weight", "bias"):
            if getattr(module, name) is not None:
                setattr(module, name, _parameter(_take(getattr(module, name), 0, keep_out, out)))
        for name in ("running_mean", "running_var"):
            if getattr(module, name) is not None:
                setattr(module, name, _take(getattr(module, name), 0, keep_out, out).clone())
        module.num_features = out
        return
    depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels \
        == module.out_channels
    if isinstance(module, nn.Conv2d) and module.groups > 1 and not depthwise:
        raise ValueError(f"a grouped convolution ({module.groups} groups) cannot change width channel by channel")
    if depthwise:  # one filter per channel: its output width is its input width
        in_, keep_in = out, None
    weight = module.weight
    if out is not None:
        weight = _take(weight, 0, keep_out, out)
        if module.bias is not None:
            module.bias = _parameter(_take(module.bias, 0, keep_out, out))
    if in_ is not None and not depthwise:
        weight = _take(weight, 1, keep_in, in_)
    module.weight = _parameter(weight)
    if isinstance(module, nn.Linear):
        module.in_features, module.out_features = weight.shape[1], weight.shape[0]
    else:
        module.out_channels = weight.shape[0]
        module.in_channels = weight.shape[0] if depthwise else weight.shape[1]
        module.groups = weight.shape[0] if depthwise else 1


def apply_shapes(model: nn.Module, shapes: dict[str, dict]) -> None:
    """Give ``model``'s layers the recorded ``shapes`` (empty weights: load them next); layers a
    features-only model removed are passed over."""
    present = dict(model.named_modules())
    for name, shape in shapes.items():
        module = present.get(name)
        if module is None:
            continue
        if not isinstance(module, (nn.Conv2d, nn.Linear, *NORMS)):
            raise ValueError(f"the weights record a width for {name}, which is a {type(module).__name__} in "
                             f"{getattr(model, 'model_name', type(model).__name__)}, not a layer with channels")
        if shape_of(module) != shape:
            set_channels(module, out=shape.get("out", shape.get("features")), in_=shape.get("in"))
    model.layer_shapes = {**getattr(model, "layer_shapes", {}), **shapes}
    refresh(model)


def refresh(model: nn.Module) -> None:
    """Bring what modules and the model say of their widths in line with their layers: ConvNormAct's
    ``in_channels``/``out_channels``, a head's ``in_features``, ``num_features`` and ``feature_info``."""
    for module in model.modules():
        conv = getattr(module, "conv", None)
        if isinstance(conv, nn.Conv2d) and hasattr(module, "out_channels"):
            module.in_channels, module.out_channels = conv.in_channels, conv.out_channels
        linears = [child for child in module.children() if isinstance(child, nn.Linear)]
        if linears and hasattr(module, "in_features") and not isinstance(module, nn.Linear):
            module.in_features = linears[0].in_features
        if isinstance(getattr(module, "hidden", None), nn.Linear) and hasattr(module, "hidden_features"):
            module.hidden_features = module.hidden.out_features
    info = getattr(model, "feature_info", None)
    if not info or not hasattr(model, "in_chans"):
        return
    widths, modules = {}, dict(model.named_modules())
    hooks = [modules[entry.module].register_forward_hook(
        lambda _m, _args, output, name=entry.module: widths.__setitem__(name, output.shape[1]))
        for entry in info if entry.module in modules]
    training = model.training
    size = max(getattr(model, "min_input_size", 32), 1)
    try:
        with torch.no_grad():
            features = model.eval().forward_features(torch.zeros(1, model.in_chans, size, size)) \
                if getattr(model, "out_indices", None) is None else None
            if features is not None:
                model.num_features = int(model.forward_head(features, pre_logits=True).shape[1])
            elif hooks:
                model(torch.zeros(1, model.in_chans, size, size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(training)
    model.feature_info = [type(entry)(widths.get(entry.module, entry.channels), entry.reduction, entry.module)
                          for entry in info]
