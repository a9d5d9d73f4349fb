"""Xception.

Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", 2017, arXiv:1610.02357.
    Inception taken to its extreme: cross-channel and spatial correlations are mapped fully
    apart, by depthwise separable convolutions, stacked linearly in modules with residual
    connections (entry, middle and exit flows).
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo
from ..layers import ConvNormAct, SeparableConv
from ..registry import register

ReLU = partial(nn.ReLU, inplace=True)
BareSeparableConv = partial(SeparableConv, dw_norm=None, dw_act=None, pw_norm=None, pw_act=None, bias=False)

# Fig. 5 as rows: (module name, stage, widths of its 3x3 separable convolutions, stride).  A stride
# of 2 ends the module with a 3x3 max-pool and projects the shortcut with a strided 1x1.
XCEPTION = (
    ("block1", 0, (128, 128), 2),  # entry flow
    ("block2", 1, (256, 256), 2),
    ("block3", 2, (728, 728), 2),
    *((f"block{n}", 2, (728, 728, 728), 1) for n in range(4, 12)),  # middle flow, repeated 8 times
    ("block12", 3, (728, 1024), 2),  # exit flow
)
EXIT_WIDTHS = (1536, 2048)  # two separable convolutions, each with BN and ReLU, before the pool


class XceptionModule(nn.Module):
    """(ReLU, separable conv, BN) per width, a max-pool if strided, plus the (projected) input.

    The first module follows the stem's ReLU and starts with its convolution instead.
    """

    def __init__(self, in_chs: int, widths: tuple[int, ...], stride: int, relu_first: bool):
        super().__init__()
        layers, chs = [], in_chs
        for width in widths:
            # the first ReLU must not overwrite the input, which the shortcut still needs
            layers += [ReLU() if layers else nn.ReLU(), BareSeparableConv(chs, width), nn.BatchNorm2d(width)]
            chs = width
        if not relu_first:
            layers = layers[1:]
        if stride > 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.residual = nn.Sequential(*layers)
        self.shortcut = (ConvNormAct(in_chs, chs, 1, stride, act=None) if stride > 1 or chs != in_chs
                         else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class Xception(Backbone):
    """Stem (two 3x3 convolutions), 12 modules in four stages ending at strides 4, 8, 16, 32, head.

    The stem's convolutions are unpadded, as in the paper's Keras model: 299 pixels give a 10x10
    last map.  ``min_input_size`` is the total stride, 32, as for ResNet (the unpadded stem alone
    would run from 7 pixels, every later layer being padded).  ``small_input`` pads the stem and
    drops its stride, so a 32x32 image keeps its size through the stem (last map 2x2).
    ``drop_rate`` defaults to the paper's dropout of 0.5 before the classifier.
    """

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5,
                 small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        stride, padding = (1, 1) if small_input else (2, 0)
        self.stem = nn.Sequential(OrderedDict(
            conv1=ConvNormAct(in_chans, 32, 3, stride, padding, act=ReLU),
            conv2=ConvNormAct(32, 64, 3, 1, padding, act=ReLU),
        ))
        chs, stages = 64, [OrderedDict() for _ in range(4)]
        for name, stage, widths, block_stride in XCEPTION:
            stages[stage][name] = XceptionModule(chs, widths, block_stride, relu_first=name != "block1")
            chs = widths[-1]
        for index, width in enumerate(EXIT_WIDTHS, start=3):
            stages[-1][f"conv{index}"] = BareSeparableConv(chs, width)
            stages[-1][f"bn{index}"] = nn.BatchNorm2d(width)
            stages[-1][f"act{index}"] = ReLU()
            chs = width
        self.stages = nn.Sequential(*(nn.Sequential(stage) for stage in stages))
        reductions = self.stage_reductions(1 if small_input else 2, (2, 2, 2, 2))
        widths = (128, 256, 728, chs)
        self.feature_info = [FeatureInfo(c, r, f"stages.{i}") for i, (c, r) in enumerate(zip(widths, reductions))]
        self.num_features = chs
        self.head = ClassifierHead(chs, num_classes, drop_rate)
        self.min_input_size = reductions[-1]
        self.default_input_size = 32 if small_input else 299
        self.init_weights()


register("xception", family="xception", paper="Xception: Deep Learning with Depthwise Separable Convolutions",
         year=2017, arxiv="1610.02357",
         idea="depthwise separable convolutions in residual modules: Inception's hypothesis taken to the extreme",
         input_size=299, params=22_855_952, macs=8_357_403_496, reference="timm legacy_xception",
         layouts=("timm_legacy_xception",),
         notes="timm legacy_xception layout (the Keras model's port, which has the paper's 22,855,952 "
               "parameters): BN eps 1e-5; stem convolutions unpadded; shortcut 1x1 projections with BN. "
               "Dropout 0.5 by default as in the paper (timm: 0). small_input=True pads the two stem "
               "convolutions and gives the first stride 1, so a 32x32 image ends at 2x2")(Xception)
