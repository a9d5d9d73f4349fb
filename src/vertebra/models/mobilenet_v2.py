"""MobileNet V2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", 2018,
arXiv:1801.04381.

The residual block is inverted: a thin bottleneck is expanded t times by a 1x1 convolution,
filtered by a 3x3 depthwise convolution and projected back by a *linear* 1x1 (a ReLU on the
narrow bottleneck would destroy information); the shortcut joins the thin bottlenecks.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo
from ..layers import ConvNormAct, InvertedResidual
from ..layers.inverted_residual import repeated_blocks
from ..layers.scaling import round_channels, round_repeats
from ..registry import register

ReLU6 = partial(nn.ReLU6, inplace=True)

# Table 2: expansion t, output channels c, repeats n, stride s of the first repeat.  Rows are
# grouped into stages that end where the resolution halves.
STEM_WIDTH, LAST_WIDTH = 32, 1280
STAGES = (
    ((1, 16, 1, 1),),
    ((6, 24, 2, 2),),
    ((6, 32, 3, 2),),
    ((6, 64, 4, 2), (6, 96, 3, 1)),
    ((6, 160, 3, 2), (6, 320, 1, 1)),
)


class MobileNetV2(Backbone):
    """A 3x3 stride-2 stem, Table 2's bottlenecks in five stages, a 1x1 conv to 1280, the classifier.

    Every layer's width is ``round_channels(c, width_mult)``, a multiple of 8; the last convolution
    keeps its 1280 channels for multipliers below one, as the paper says ("we apply width multiplier
    to all layers except the very last convolutional layer").  ``depth_mult`` scales each row's
    repeats n, rounded up (compound scaling's depth axis).  ``small_input`` makes the stem stride 1.
    """

    first_conv = "stem.conv"
    head_modules = ("conv_head", "head")

    def __init__(self, width_mult: float = 1.0, *, depth_mult: float = 1.0, num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.2, small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        in_chs = round_channels(STEM_WIDTH, width_mult, layer="the stem conv")
        reduction = 1 if small_input else 2
        self.stem = ConvNormAct(in_chans, in_chs, 3, stride=reduction, act=ReLU6)
        stages = []
        for index, rows in enumerate(STAGES):
            stage, in_chs, stride = repeated_blocks(
                in_chs, [(round_channels(c, width_mult), round_repeats(n, depth_mult), s, t) for t, c, n, s in rows],
                lambda chs, out_chs, stride, t: InvertedResidual(chs, out_chs, 3, stride, round(chs * t), act=ReLU6))
            reduction *= stride
            stages.append(stage)
            self.feature_info.append(FeatureInfo(in_chs, reduction, f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = round_channels(LAST_WIDTH, max(1.0, width_mult))
        self.conv_head = ConvNormAct(in_chs, self.num_features, 1, act=ReLU6)
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        self.min_input_size = reduction
        self.default_input_size = 32 if small_input else 224
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(super().forward_features(x))


MOBILENET_V2 = dict(family="mobilenet_v2", paper="MobileNetV2: Inverted Residuals and Linear Bottlenecks",
                    year=2018, arxiv="1801.04381",
                    idea="inverted residuals: expand, depthwise filter, project by a linear 1x1 bottleneck")
NOTES = ("torchvision layout (widths rounded to multiples of 8, as in the authors' TF-slim code); "
         "small_input makes the stem stride 1. The paper quotes 1.4 at 6.9M params and 585M MACs; "
         "torchvision's width_mult=1.4, with published weights, has 6.1M and 582M")
# name: (width multiplier, params, MACs at 224) as torchvision's mobilenet_v2(width_mult=...) has them
WIDTHS = {
    "mobilenet_v2_035": (0.35, 1_677_128, 59_285_808),
    "mobilenet_v2_050": (0.5, 1_968_680, 97_131_840),
    "mobilenet_v2_075": (0.75, 2_636_424, 209_069_792),
    "mobilenet_v2_100": (1.0, 3_504_872, 300_774_272),
    "mobilenet_v2_130": (1.3, 5_386_792, 509_374_560),
    "mobilenet_v2_140": (1.4, 6_108_776, 582_195_824),
}
for _name, (_width, _params, _macs) in WIDTHS.items():
    register(_name, **MOBILENET_V2, input_size=224, params=_params, macs=_macs,
             reference="torchvision mobilenet_v2", reference_kwargs={"width_mult": _width},
             layouts=("torchvision_mobilenet_v2",), notes=NOTES)(partial(MobileNetV2, width_mult=_width))
