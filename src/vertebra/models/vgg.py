"""VGG: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
2015, arXiv:1409.1556.

Depth is the variable: only 3x3 convolutions (stride 1, padding 1) in five blocks, each closed by a
2x2 max-pool, then three fully connected layers; two stacked 3x3 see what one 5x5 sees, cheaper.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo
from ..layers import ConvNormAct, FullyConnectedHead
from ..registry import register

ReLU = partial(nn.ReLU, inplace=True)

# Table 1: the widths of each block's 3x3 convolutions, per configuration.
CONFIGS = {
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "E": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


def fully_connected(in_features: int, out_features: int, device=None) -> nn.Linear:
    """A linear layer initialised as Sec. 3.1 says, N(0, 0.01) weights and zero biases; skipping
    torch's own initialisation first halves the time to build these 120M-parameter layers."""
    device = device or torch.get_default_device()  # meta under `with torch.device("meta")`
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features, device=device)
    nn.init.normal_(layer.weight, 0.0, 0.01)
    nn.init.zeros_(layer.bias)
    return layer


class VGG(Backbone):
    """Five stages of 3x3 convolutions, each ending in a 2x2 stride-2 max-pool, and the fully connected head.

    ``batch_norm`` puts BN after every convolution (the _bn models; the paper predates BN).
    ``small_input`` drops the first max-pool, so a 32x32 image ends at 2x2 instead of 1x1.
    """

    classifier = "head.fc8"
    first_conv = "stages.0.0.conv"

    def __init__(self, config: str, *, batch_norm: bool = False, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.5, small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        if config not in CONFIGS:
            raise ValueError(f"config must be one of {sorted(CONFIGS)}, got {config!r}")
        norm = nn.BatchNorm2d if batch_norm else None
        self.stem = nn.Identity()  # VGG has no stem: the first block is already 3x3 convolutions
        in_chs, stages, reduction = in_chans, [], 1
        for index, widths in enumerate(CONFIGS[config]):
            layers = []
            for width in widths:
                layers.append(ConvNormAct(in_chs, width, 3, norm=norm, act=ReLU, bias=True))
                in_chs = width
            if not (small_input and index == 0):
                layers.append(nn.MaxPool2d(2, 2))
                reduction *= 2
            stages.append(nn.Sequential(*layers))
            self.feature_info.append(FeatureInfo(in_chs, reduction, f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chs
        # FC-4096, FC-4096, FC-classes (Sec. 2.1), after pool5 average-pooled to 7x7 (torchvision's
        # way of accepting any input size)
        self.head = FullyConnectedHead(in_chs, num_classes, drop_rate, grid=7, linear=fully_connected)
        self.min_input_size = reduction
        self.default_input_size = 32 if small_input else 224
        self.init_weights()


VGG_CARD = dict(family="vgg", paper="Very Deep Convolutional Networks for Large-Scale Image Recognition",
                year=2015, arxiv="1409.1556", idea="depth from stacks of small 3x3 convolutions")
TV_NOTES = ("torchvision layout: the pool5 map is average-pooled to 7x7 before fc6 so any input size "
            "works (the paper evaluates densely, fc layers as convolutions); num_classes=0 returns the "
            "global average of pool5, the contract's pooled features")
BN_NOTES = TV_NOTES + "; BatchNorm after every convolution is torchvision's addition (BN postdates VGG)"

# name: (configuration, batch norm, params, MACs at 224)
MODELS = {
    "vgg11": ("A", False, 132_863_336, 7_609_090_048),
    "vgg13": ("B", False, 133_047_848, 11_308_466_176),
    "vgg16": ("D", False, 138_357_544, 15_470_264_320),
    "vgg19": ("E", False, 143_667_240, 19_632_062_464),
    "vgg11_bn": ("A", True, 132_868_840, 7_609_090_048),
    "vgg13_bn": ("B", True, 133_053_736, 11_308_466_176),
    "vgg16_bn": ("D", True, 138_365_992, 15_470_264_320),
    "vgg19_bn": ("E", True, 143_678_248, 19_632_062_464),
}
for _name, (_config, _bn, _params, _macs) in MODELS.items():
    register(_name, **VGG_CARD, input_size=224, params=_params, macs=_macs, reference=f"torchvision {_name}",
             layouts=(f"torchvision_{_name}",), notes=BN_NOTES if _bn else TV_NOTES)(
        partial(VGG, _config, batch_norm=_bn))
