"""DARTS cells: Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search", 2019, arXiv:1806.09055.

A network is a stack of two kinds of cell, normal and reduction (at 1/3 and 2/3 of the depth,
halving the map and doubling the width).  A cell reads the two previous cells' outputs; each of
its N intermediate nodes sums two operations on earlier nodes, and its output concatenates the
intermediate nodes.  The search (``vertebra.design.nas.darts``) relaxes each edge to a softmax
mixture of the primitives below; the derived *genotype* names, per node, two (operation, input)
pairs, as the paper's code writes it, and this file builds the network it describes.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo

# The paper's operation set (Sec. 3.1), in its code's order.  "none" (the zero operation) exists
# only in the search: it lets an edge fade, and a derived cell never keeps it.
PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
              "dil_conv_3x3", "dil_conv_5x5")
STEM_MULTIPLIER = 3  # the stem's width is 3 C
# The paper's CIFAR-10 cells found by second-order DARTS (its code's genotypes.DARTS_V2); the network
# it evaluates has 20 cells from 36 channels: create_model("nas_child", genotype={**DARTS_V2,
# "layers": 20, "init_channels": 36, "auxiliary": True}), 3,349,342 parameters without the auxiliary head.
DARTS_V2 = {"space": "darts_cells",
            "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
                       ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0], ["dil_conv_3x3", 2]],
            "normal_concat": [2, 3, 4, 5],
            "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 1],
                       ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["max_pool_3x3", 1]],
            "reduce_concat": [2, 3, 4, 5]}
AUX_WEIGHT = 0.4  # the auxiliary classifier's loss weight in the paper's evaluation


class Primitive(nn.Sequential):
    """An operation of the cells, named as the paper's code names it (drawn as one box)."""

    diagram_leaf = True

    def __init__(self, name: str, *layers: nn.Module):
        super().__init__(*layers)
        self.diagram_label = [name]


def relu_conv_bn(in_chs: int, out_chs: int, affine: bool) -> nn.Sequential:
    """The 1x1 preprocessing of a cell's inputs: ReLU, conv, BN."""
    return Primitive(f"ReLU, 1×1 conv {out_chs}, BN", nn.ReLU(), nn.Conv2d(in_chs, out_chs, 1, bias=False),
                     nn.BatchNorm2d(out_chs, affine=affine))


def _dw_pw(chs: int, kernel: int, stride: int, dilation: int, affine: bool) -> list[nn.Module]:
    """ReLU, a k x k depthwise convolution, a 1x1 pointwise one, BN."""
    return [nn.ReLU(), nn.Conv2d(chs, chs, kernel, stride, dilation * (kernel - 1) // 2, dilation, groups=chs,
                                 bias=False),
            nn.Conv2d(chs, chs, 1, bias=False), nn.BatchNorm2d(chs, affine=affine)]


class FactorizedReduce(nn.Module):
    """Halve the map with two 1x1 stride-2 convolutions, one shifted by a pixel, concatenated: the
    identity of a stride-2 edge, and the preprocessing after a reduction cell."""

    diagram_leaf = True

    def __init__(self, in_chs: int, out_chs: int, affine: bool = True):
        super().__init__()
        self.diagram_label = [f"factorized reduce, {out_chs}, /2"]
        if out_chs % 2:
            raise ValueError(f"FactorizedReduce needs an even width, got {out_chs}")
        self.act = nn.ReLU()
        self.conv1 = nn.Conv2d(in_chs, out_chs // 2, 1, stride=2, bias=False)
        self.conv2 = nn.Conv2d(in_chs, out_chs // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(out_chs, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # same output size for odd maps as for even
        return self.bn(torch.cat((self.conv1(x), self.conv2(shifted)), 1))


class Zero(nn.Module):
    """The "none" operation: zeros of the output's shape."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


def make_op(name: str, chs: int, stride: int, affine: bool = True) -> nn.Module:
    """One primitive on ``chs`` channels; separable convolutions are applied twice (the paper's)."""
    if name == "none":
        return Zero(stride)
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return Primitive(name, nn.MaxPool2d(3, stride, 1) if name.startswith("max") else
                         nn.AvgPool2d(3, stride, 1, count_include_pad=False))
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(chs, chs, affine)
    kind, size = name.rsplit("_", 1)
    kernel = int(size[0])
    if kind == "sep_conv":
        return Primitive(name, *_dw_pw(chs, kernel, stride, 1, affine), *_dw_pw(chs, kernel, 1, 1, affine))
    if kind == "dil_conv":
        return Primitive(name, *_dw_pw(chs, kernel, stride, 2, affine))
    raise ValueError(f"unknown DARTS primitive {name!r}; expected one of {PRIMITIVES}")


def reduction_cells(layers: int) -> tuple[int, int]:
    """The indices of the two reduction cells: at 1/3 and 2/3 of the depth."""
    return layers // 3, 2 * layers // 3


def check_layers(layers) -> int:
    """A cell count that puts a normal cell before the first reduction and between the two."""
    if isinstance(layers, bool) or not isinstance(layers, int):
        raise ValueError(f"darts_cells: layers must be an int, got {layers!r}")
    first, second = reduction_cells(layers)
    if first < 1 or second - first < 2:
        raise ValueError(f"darts_cells: {layers} cells put the reductions at cells {first} and {second}, with no "
                         f"normal cell {'before the first' if first < 1 else 'between them'}: use 5 or more")
    return layers


def check_cell(kind: str, edges, concat) -> tuple[list[list], list[int]]:
    """Two [operation, input] pairs per node, each input an earlier node (0 and 1: the two
    previous cells); ``concat`` some of the intermediate nodes."""
    if not isinstance(edges, list) or not edges or len(edges) % 2:
        raise ValueError(f"darts_cells genotype: {kind} must be a non-empty list of [operation, input] pairs, two "
                         f"per node, got {edges!r}")
    checked = []
    for position, edge in enumerate(edges):
        node = 2 + position // 2
        where = f"darts_cells genotype: {kind} node {node}"
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise ValueError(f"{where}: an edge is [operation, input], got {edge!r}")
        op, source = edge
        if op not in PRIMITIVES or op == "none":
            raise ValueError(f"{where}: unknown primitive {op!r}; expected one of {PRIMITIVES[1:]}")
        if type(source) is not int or not 0 <= source < node:
            raise ValueError(f"{where} reads node {source!r}: a node reads only earlier ones (0 to {node - 1})")
        checked.append([op, source])
    nodes = range(2, 2 + len(edges) // 2)
    if not isinstance(concat, list) or not concat or any(i not in nodes for i in concat) or \
            len(set(concat)) != len(concat):
        raise ValueError(f"darts_cells genotype: {kind}_concat must list intermediate nodes ({nodes[0]} to "
                         f"{nodes[-1]}) once each, got {concat!r}")
    return checked, list(concat)


def check_genotype(genotype: dict) -> dict:
    """A normalized copy of a darts_cells genotype; a ValueError names the bad part."""
    keys = {"space", "normal", "normal_concat", "reduce", "reduce_concat", "layers", "init_channels", "auxiliary"}
    unknown = set(genotype) - keys
    if unknown:
        raise ValueError(f"darts_cells genotype: unknown key(s) {sorted(unknown)} (expected {sorted(keys)})")
    checked = {"space": "darts_cells"}
    for kind in ("normal", "reduce"):
        if kind not in genotype or f"{kind}_concat" not in genotype:
            raise ValueError(f"darts_cells genotype: missing {kind} or {kind}_concat")
        checked[kind], checked[f"{kind}_concat"] = check_cell(kind, genotype[kind], genotype[f"{kind}_concat"])
    checked["layers"] = check_layers(genotype.get("layers", 8))
    channels = genotype.get("init_channels", 16)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 2 or channels % 2:
        raise ValueError(f"darts_cells genotype: init_channels must be an even int >= 2, got {channels!r}")
    checked["init_channels"] = channels
    if not isinstance(genotype.get("auxiliary", False), bool):
        raise ValueError(f"darts_cells genotype: auxiliary must be true or false, got {genotype['auxiliary']!r}")
    checked["auxiliary"] = genotype.get("auxiliary", False)
    return checked


def describe(genotype: dict) -> str:
    lines = [f"darts_cells, {genotype['layers']} cells from {genotype['init_channels']} channels:"]
    for kind in ("normal", "reduce"):
        edges = genotype[kind]
        nodes = [f"node {2 + i // 2} = " + " + ".join(f"{op}(node {j})" for op, j in edges[i:i + 2])
                 for i in range(0, len(edges), 2)]
        lines.append(f"  {kind} cell: " + "; ".join(nodes) + f"; output: concat {genotype[f'{kind}_concat']}")
    return "\n".join(lines)


class Cell(nn.Module):
    """A derived cell: node i (from 2) sums its two operations on earlier nodes (0 and 1 are the
    preprocessed outputs of the two previous cells); the output concatenates ``concat``."""

    def __init__(self, edges: list, concat: list[int], prev_prev_chs: int, prev_chs: int, chs: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.diagram_label = ["reduction cell" if reduction else "normal cell"]
        self.preprocess0 = FactorizedReduce(prev_prev_chs, chs) if reduction_prev else \
            relu_conv_bn(prev_prev_chs, chs, True)
        self.preprocess1 = relu_conv_bn(prev_chs, chs, True)
        self.inputs = [index for _, index in edges]
        self.ops = nn.ModuleList(make_op(name, chs, 2 if reduction and index < 2 else 1) for name, index in edges)
        self.concat = list(concat)
        self.out_chs = len(concat) * chs

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(len(self.ops) // 2):
            first, second = 2 * node, 2 * node + 1
            states.append(self.ops[first](states[self.inputs[first]]) + self.ops[second](states[self.inputs[second]]))
        return torch.cat([states[i] for i in self.concat], 1)


class AuxiliaryHead(nn.Module):
    """The paper's auxiliary classifier after the second reduction (ReLU, 5x5/3 average pool, 1x1
    conv 128, 2x2 conv 768, FC); the pool adapts to 2x2 so that small maps work too."""

    def __init__(self, chs: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Conv2d(chs, 128, 1, bias=False),
                                      nn.BatchNorm2d(128), nn.ReLU(), nn.Conv2d(128, 768, 2, bias=False),
                                      nn.BatchNorm2d(768), nn.ReLU(), nn.Flatten(1))
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class DartsNetwork(Backbone):
    """Stem (3x3 conv, 3C, BN), ``layers`` cells with reductions at 1/3 and 2/3, pool, classifier.

    ``small_input=False`` puts a 3x3/2 convolution and a 3x3/2 max pool in front (not the paper's
    ImageNet stem), so 224 inputs are affordable, as for the other NAS children.
    """

    first_conv = "stem.conv.0"
    head_modules = ("aux", "head")
    aux_loss_weight = AUX_WEIGHT

    def __init__(self, genotype: dict, *, num_classes: int, in_chans: int, drop_rate: float, small_input: bool):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, small_input=small_input)
        chs, layers = genotype["init_channels"], genotype["layers"]
        stem = OrderedDict()
        if not small_input:
            stem.update(down=nn.Sequential(nn.Conv2d(in_chans, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32),
                                           nn.ReLU(), nn.MaxPool2d(3, 2, 1)))
            self.first_conv = "stem.down.0"
        stem.update(conv=nn.Sequential(nn.Conv2d(in_chans if small_input else 32, STEM_MULTIPLIER * chs, 3, padding=1,
                                                 bias=False), nn.BatchNorm2d(STEM_MULTIPLIER * chs)))
        self.stem = nn.Sequential(stem)
        prev_prev, prev, reduction_prev, stride = STEM_MULTIPLIER * chs, STEM_MULTIPLIER * chs, False, 1 if \
            small_input else 4
        cells, self.aux = [], None
        for index in range(layers):
            reduction = index in reduction_cells(layers)
            chs, stride = (chs * 2, stride * 2) if reduction else (chs, stride)
            kind = "reduce" if reduction else "normal"
            cell = Cell(genotype[kind], genotype[f"{kind}_concat"], prev_prev, prev, chs, reduction, reduction_prev)
            cells.append(cell)
            prev_prev, prev, reduction_prev = prev, cell.out_chs, reduction
            self.feature_info.append(FeatureInfo(cell.out_chs, stride, f"stages.{index}"))
            if index == reduction_cells(layers)[1] and genotype["auxiliary"]:
                self.aux_index, self.aux = index, AuxiliaryHead(prev, num_classes)
        self.stages = nn.Sequential(*cells)
        self.num_features = prev
        self.head = ClassifierHead(prev, num_classes, drop_rate)
        self.min_input_size = stride
        self.default_input_size = 32 if small_input else 224
        self.init_weights()

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        s0 = s1 = self.stem(x)
        outputs = []
        for cell in self.stages:
            s0, s1 = s1, cell(s0, s1)
            outputs.append(s1)
        wanted = self.out_indices if self.out_indices is not None else range(len(outputs))
        return [outputs[i] for i in wanted]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_intermediates(x)[-1]

    def forward(self, x: torch.Tensor):
        if not isinstance(self.aux, AuxiliaryHead) or not self.training or self.out_indices is not None:
            return super().forward(x)
        outputs = self.forward_intermediates(x)
        return self.forward_head(outputs[-1]), self.aux(outputs[self.aux_index])
