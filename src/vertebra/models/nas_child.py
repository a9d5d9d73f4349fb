"""NAS child networks: Zoph & Le, "Neural Architecture Search with Reinforcement Learning", 2017,
arXiv:1611.01578.

A recurrent controller writes a network down as a string of decisions (per layer: filter height and
width, number of filters, stride, and through "anchor points" which earlier layers it reads) and is
trained with REINFORCE on the child's validation accuracy.  A sampled point is a *genotype*, plain
JSON; this file turns one into a network: the paper's ``nas_cnn`` or MnasNet's ``mnas_blocks``.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo, check_int
from ..layers import ConvNormAct, InvertedResidual, SeparableConv, SqueezeExcite
from ..registry import register
from . import darts_cells

ReLU = partial(nn.ReLU, inplace=True)

# The decisions of a genotype entry (a nas_cnn layer, an mnas_blocks stage) and what the network
# can build for each: a tuple of options, POSITIVE (any int >= 1) or INPUTS (earlier layers).
POSITIVE, INPUTS = "a positive int", "earlier layers"
FILTER_SIZES = (1, 3, 5, 7)  # odd, so that "same" padding is symmetric
STRIDES = (1, 2, 3)  # the NAS paper predicts strides in [1, 2, 3]
BLOCKS = ("conv", "sepconv", "mbconv")
BLOCK_KERNELS = (3, 5, 7)
NAS_CNN_LAYER = {"filter_height": FILTER_SIZES, "filter_width": FILTER_SIZES, "filters": POSITIVE,
                 "stride": STRIDES, "inputs": INPUTS}
MNAS_STAGE = {"block": BLOCKS, "kernel": BLOCK_KERNELS, "expansion": POSITIVE, "se": (False, True),
              "layers": POSITIVE}
# space: (list key, entry name, decisions)
GENOTYPE_SPACES = {"nas_cnn": ("layers", "layer", NAS_CNN_LAYER),
                   "mnas_blocks": ("stages", "stage", MNAS_STAGE)}

# MnasNet's fixed skeleton (the paper's Figure 7, MnasNet-A1): a 3x3 stride-2 stem of 32 channels,
# seven searched stages of (output channels, stride of the first layer), a 1x1 conv to 1280.
MNAS_STEM, MNAS_LAST = 32, 1280
MNAS_STAGES = ((16, 1), (24, 2), (40, 2), (80, 2), (112, 1), (160, 2), (320, 1))
SE_RATIO = 0.25  # MnasNet's squeeze-and-excitation: a quarter of the block's input channels

# The example child that create_model("nas_child") builds: six layers of (filter height, filter
# width, filters, stride, inputs), two skip connections, one stride 2; layers 4 and 5 both reach
# the classifier.
EXAMPLE_LAYERS = (
    (3, 3, 36, 1, ()),
    (3, 3, 48, 1, (0,)),
    (5, 5, 36, 1, (0, 1)),
    (3, 3, 48, 2, (1, 2)),
    (3, 5, 64, 1, (3,)),
    (5, 3, 48, 1, (3,)),
)
EXAMPLE_GENOTYPE = {"space": "nas_cnn", "layers": [dict(zip(NAS_CNN_LAYER, (h, w, f, s, list(i))))
                                                   for h, w, f, s, i in EXAMPLE_LAYERS]}


# -- genotypes -------------------------------------------------------------------------------------
def load_genotype(genotype) -> dict:
    """A genotype dict as given, or read from the JSON file at a str or Path."""
    if isinstance(genotype, dict):
        return genotype
    if not isinstance(genotype, (str, Path)):
        raise TypeError(f"genotype must be a dict or the path of a JSON file, "
                        f"got {type(genotype).__name__}")
    path = Path(genotype)
    if not path.is_file():
        raise ValueError(f"genotype file {str(path)!r} does not exist")
    try:
        loaded = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"genotype file {str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"genotype file {str(path)!r} holds a JSON {type(loaded).__name__}, "
                         f"not an object")
    return loaded


def _entry(where: str, entry, keys: tuple) -> dict:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object with keys {', '.join(keys)}, "
                         f"got {type(entry).__name__}")
    missing, unknown = [k for k in keys if k not in entry], [k for k in entry if k not in keys]
    if missing or unknown:
        problem = (f"missing {', '.join(missing)}" if missing
                   else f"unknown key(s) {', '.join(map(repr, unknown))}")
        raise ValueError(f"{where}: {problem} (expected keys: {', '.join(keys)})")
    return entry


def _decision(where: str, key: str, value, allowed, index: int):
    if allowed == INPUTS:
        if not isinstance(value, (list, tuple)) or any(type(j) is not int for j in value):
            raise ValueError(f"{where}: inputs must be a list of earlier layers' indices, got {value!r}")
        for j in value:
            if not 0 <= j < index:
                raise ValueError(f"{where}: inputs refers to layer {j}, which does not come before it")
        if len(set(value)) != len(value):
            raise ValueError(f"{where}: inputs names a layer twice: {list(value)}")
        return sorted(value)
    if allowed == POSITIVE:
        if type(value) is not int or value < 1:
            raise ValueError(f"{where}: {key} must be a positive int, got {value!r}")
    elif not any(type(value) is type(option) and value == option for option in allowed):
        # type-exact: True never passes for 1, nor 1 for True
        raise ValueError(f"{where}: {key} must be one of {allowed}, got {value!r}")
    return value


def check_genotype(genotype) -> dict:
    """A normalized copy of a genotype (a dict, or the path of a JSON file); a ValueError names
    the first bad decision."""
    genotype = load_genotype(genotype)
    space = genotype.get("space")
    if space == "darts_cells":
        return darts_cells.check_genotype(genotype)
    if not isinstance(space, str) or space not in GENOTYPE_SPACES:
        raise ValueError(f"genotype space must be one of {(*GENOTYPE_SPACES, 'darts_cells')}, got {space!r}")
    units, unit, decisions = GENOTYPE_SPACES[space]
    entries = _entry(f"{space} genotype", genotype, ("space", units))[units]
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{space} genotype: {units} must be a non-empty list, got {entries!r}")
    if space == "mnas_blocks" and len(entries) != len(MNAS_STAGES):
        raise ValueError(f"mnas_blocks genotype: stages must list {len(MNAS_STAGES)} stages (MnasNet's "
                         f"skeleton), got {len(entries)}")
    checked = []
    for index, entry in enumerate(entries):
        where = f"{space} genotype, {unit} {index}"
        entry = _entry(where, entry, tuple(decisions))
        checked.append({key: _decision(where, key, entry[key], allowed, index)
                        for key, allowed in decisions.items()})
    return {"space": space, units: checked}


def unconsumed_layers(layers: list[dict]) -> list[int]:
    """The layers no later layer reads: the paper concatenates them for the classifier."""
    consumed = {j for layer in layers for j in layer["inputs"]}
    return [i for i in range(len(layers)) if i not in consumed]


def describe_genotype(genotype) -> str:
    """One line per layer (nas_cnn) or stage (mnas_blocks), for printing a found architecture."""
    genotype = check_genotype(genotype)
    if genotype["space"] == "darts_cells":
        return darts_cells.describe(genotype)
    if genotype["space"] == "nas_cnn":
        layers = genotype["layers"]
        lines = [f"nas_cnn, {len(layers)} layers (conv height x width, filters, stride <- inputs):"]
        for i, layer in enumerate(layers):
            source = ", ".join(f"layer {j}" for j in layer["inputs"]) or "image"
            lines.append(f"  layer {i}: {layer['filter_height']}x{layer['filter_width']} conv, "
                         f"{layer['filters']} filters, stride {layer['stride']} <- {source}")
        lines.append(f"  classifier <- {', '.join(f'layer {j}' for j in unconsumed_layers(layers))}")
        return "\n".join(lines)
    lines = ["mnas_blocks, 7 stages on MnasNet's skeleton (layers x block, channels, first stride):"]
    for i, (stage, (channels, stride)) in enumerate(zip(genotype["stages"], MNAS_STAGES)):
        expansion = f" expansion {stage['expansion']}," if stage["block"] == "mbconv" else ""
        lines.append(f"  stage {i}: {stage['layers']} x {stage['block']} {stage['kernel']}x{stage['kernel']},"
                     f"{expansion}{' SE,' if stage['se'] else ''} {channels} channels, stride {stride}")
    return "\n".join(lines)


# -- nas_cnn: the paper's network, a DAG of convolutions -------------------------------------------
def pad_concat(maps: list[torch.Tensor]) -> torch.Tensor:
    """Depth-concatenate maps, zero-padding the smaller ones (at the bottom and right) to the
    largest, as the paper does when skip connections join layers of different sizes."""
    if len(maps) == 1:
        return maps[0]
    height, width = max(m.shape[-2] for m in maps), max(m.shape[-1] for m in maps)
    return torch.cat([F.pad(m, (0, width - m.shape[-1], 0, height - m.shape[-2])) for m in maps], 1)


class NasLayer(nn.Module):
    """One layer of the paper's child: its inputs concatenated (the image when there are none),
    then ``conv`` (conv, BN, ReLU; ``None`` for the output node, which only concatenates)."""

    def __init__(self, inputs: tuple[int, ...], conv: nn.Module | None = None):
        super().__init__()
        self.inputs = tuple(inputs)
        self.conv = conv if conv is not None else nn.Identity()

    def forward(self, image: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
        return self.conv(pad_concat([outputs[j] for j in self.inputs] or [image]))


class NasCnn(Backbone):
    """The genotype's layers, then an output node concatenating the layers no other reads.

    A "stage" is one layer: skip connections make the network a DAG, not a chain, so no run of
    layers is a stage with a single input and output; one layer per feature level keeps every
    level a real layer output, and ``features_only`` may drop the tail because a layer reads only
    earlier ones.  The output node is the last level, so the last level is the map the head pools.
    """

    head_modules = ("head",)

    def __init__(self, genotype: dict, *, num_classes: int, in_chans: int, drop_rate: float,
                 small_input: bool, input_pool: int):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        stem = OrderedDict(input_pool=nn.AvgPool2d(input_pool) if input_pool > 1 else nn.Identity())
        image_chs, image_reduction = in_chans, input_pool
        if not small_input:  # not in the paper (its children see 32x32 CIFAR): makes 224 inputs affordable
            stem.update(conv=ConvNormAct(in_chans, 32, 3, stride=2, act=ReLU), maxpool=nn.MaxPool2d(3, 2, 1))
            image_chs, image_reduction = 32, input_pool * 4
        self.stem = nn.Sequential(stem)
        self.first_conv = "stages.0.conv.conv" if small_input else "stem.conv.conv"
        channels, reductions, stages = [], [], []
        for layer in genotype["layers"]:
            inputs = layer["inputs"]
            in_chs = sum(channels[j] for j in inputs) if inputs else image_chs
            reduction = min(reductions[j] for j in inputs) if inputs else image_reduction
            kernel = (layer["filter_height"], layer["filter_width"])
            conv = ConvNormAct(in_chs, layer["filters"], kernel, stride=layer["stride"],
                               padding=tuple((k - 1) // 2 for k in kernel), act=ReLU)
            stages.append(NasLayer(inputs, conv))
            channels.append(layer["filters"])
            reductions.append(reduction * layer["stride"])
        last = unconsumed_layers(genotype["layers"])
        stages.append(NasLayer(last))
        channels.append(sum(channels[j] for j in last))
        reductions.append(min(reductions[j] for j in last))
        self.stages = nn.Sequential(*stages)
        self.feature_info = [FeatureInfo(c, r, f"stages.{i}")
                             for i, (c, r) in enumerate(zip(channels, reductions))]
        self.num_features = channels[-1]
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        # "same" padding takes a map down to 1x1 at most, never to nothing: any image that survives
        # the input pool and stem runs, however many strides a sampled child stacks
        self.min_input_size = image_reduction
        self.default_input_size = 32 if small_input else 224
        self.init_weights()

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        image, outputs = self.stem(x), []
        for layer in self.stages:
            outputs.append(layer(image, outputs))
        wanted = self.out_indices if self.out_indices is not None else range(len(outputs))
        return [outputs[i] for i in wanted]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(x)[-1]


# -- mnas_blocks: MnasNet's skeleton, one searched block per stage ---------------------------------
def mnas_block(block: str, in_chs: int, out_chs: int, kernel: int, stride: int, expansion: int,
               se: bool) -> nn.Module:
    """conv (k x k conv, BN, ReLU), sepconv (MnasNet's SepConv: depthwise, BN, ReLU, linear 1x1) or
    mbconv (inverted residual, identity skip when the shape is kept); ``expansion`` is mbconv's
    only.  SE goes on the depthwise output in mbconv, on the block output otherwise."""
    se_chs = max(1, int(in_chs * SE_RATIO)) if se else None
    if block == "mbconv":
        return InvertedResidual(in_chs, out_chs, kernel, stride, in_chs * expansion, act=ReLU,
                                se_chs=se_chs)
    body = (ConvNormAct(in_chs, out_chs, kernel, stride=stride, act=ReLU) if block == "conv"
            else SeparableConv(in_chs, out_chs, kernel, stride, dw_act=ReLU, pw_act=None))
    return nn.Sequential(body, SqueezeExcite(out_chs, se_chs)) if se else body


class MnasBlocks(Backbone):
    """Stem, the seven searched stages (each its own feature level, as in the paper's Figure 7),
    a 1x1 conv to 1280, the classifier.  ``small_input`` makes the stem stride 1."""

    first_conv = "stem.conv.conv"
    head_modules = ("conv_head", "head")

    def __init__(self, genotype: dict, *, num_classes: int, in_chans: int, drop_rate: float,
                 small_input: bool, input_pool: int):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        reduction = input_pool * (1 if small_input else 2)
        self.stem = nn.Sequential(OrderedDict(
            input_pool=nn.AvgPool2d(input_pool) if input_pool > 1 else nn.Identity(),
            conv=ConvNormAct(in_chans, MNAS_STEM, 3, stride=1 if small_input else 2, act=ReLU)))
        in_chs, stages = MNAS_STEM, []
        for index, (stage, (out_chs, stride)) in enumerate(zip(genotype["stages"], MNAS_STAGES)):
            blocks = [mnas_block(stage["block"], in_chs if i == 0 else out_chs, out_chs, stage["kernel"],
                                 stride if i == 0 else 1, stage["expansion"], stage["se"])
                      for i in range(stage["layers"])]
            stages.append(nn.Sequential(*blocks))
            in_chs, reduction = out_chs, reduction * stride
            self.feature_info.append(FeatureInfo(out_chs, reduction, f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = MNAS_LAST
        self.conv_head = ConvNormAct(in_chs, MNAS_LAST, 1, act=ReLU)
        self.head = ClassifierHead(MNAS_LAST, num_classes, drop_rate)
        self.min_input_size = reduction
        self.default_input_size = 32 if small_input else 224
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(super().forward_features(x))


@register("nas_child", family="nas", paper="Neural Architecture Search with Reinforcement Learning",
          year=2017, arxiv="1611.01578", input_size=32, params=None, macs=None,
          reference="none: the network depends on its genotype",
          idea="an RNN controller trained with REINFORCE on child accuracy writes CNNs decision by decision",
          notes="genotype: a dict or the path of a JSON file, {'space': 'nas_cnn', 'layers': [...]} or "
                "{'space': 'mnas_blocks', 'stages': [...]} or {'space': 'darts_cells', 'normal': [[op, input], ...], "
                "'normal_concat': [...], 'reduce': ..., 'reduce_concat': ..., 'layers': 8, 'init_channels': 16} "
                "(see check_genotype); None builds a fixed "
                "6-layer nas_cnn example. nas_cnn zero-pads smaller maps at the bottom and right. "
                "small_input=False adds a stem the paper lacks (nas_cnn: 3x3/2 conv of 32 channels and "
                "3x3/2 max pool; mnas_blocks: MnasNet's 3x3/2 conv), so 224 inputs are affordable; "
                "input_pool=k average-pools the image by k first (cheap searches on upsampled digits)")
def nas_child(genotype=None, *, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0,
              small_input: bool = True, input_pool: int = 1) -> Backbone:
    """Build the child network a genotype describes (see ``check_genotype``)."""
    genotype = check_genotype(EXAMPLE_GENOTYPE if genotype is None else genotype)
    if genotype["space"] == "darts_cells":
        if input_pool != 1:
            raise ValueError("input_pool applies to nas_cnn and mnas_blocks genotypes, not darts_cells")
        model = darts_cells.DartsNetwork(genotype, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                                         small_input=small_input)
        model.genotype = genotype
        return model
    network = NasCnn if genotype["space"] == "nas_cnn" else MnasBlocks
    model = network(genotype, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                    small_input=small_input, input_pool=check_int("input_pool", input_pool, 1))
    model.genotype = genotype
    return model
