"""EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks (Tan & Le, 2019, arXiv:1905.11946).

A baseline found by architecture search (B0: MBConv blocks with squeeze-and-excitation and
swish) is scaled up by *compound scaling*: one coefficient grows depth, width and input
resolution together, by fixed ratios, instead of any one of them alone.  B1-B7 are the
B0 table below passed through that rule (``vertebra.layers.scaling``), not tables of their own.
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo, check_int, check_rate
from ..layers import ConvNormAct, InvertedResidual, make_divisible
from ..layers.scaling import round_channels, round_repeats
from ..registry import register

# Table 1 of the paper, EfficientNet-B0.  Stage 1 is the 3x3 stem, stage 9 the 1x1 head.
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# Stages 2-8, one row each: MBConv expand ratio t, kernel k, stride s of the first layer,
# output channels c, layers n.
B0_STAGES = (
    # t, k, s,   c, n
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class MBConv(InvertedResidual):
    """Mobile inverted bottleneck (MnasNet's MBConv) with swish and squeeze-and-excitation.

    Expand by ``expand_ratio`` (1x1), depthwise k x k, SE on the expanded channels squeezed
    to a quarter of the block's *input* channels (swish inside, sigmoid gate), linear 1x1
    projection; stochastic depth on the residual branch.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, expand_ratio: int,
                 norm: partial, drop_path: float):
        super().__init__(in_chs, out_chs, kernel_size, stride, make_divisible(in_chs * expand_ratio),
                         act=nn.SiLU, norm=norm, se_chs=max(1, in_chs // 4), se_act=nn.SiLU,
                         se_gate=nn.Sigmoid, drop_path=drop_path)


def stochastic_depth_rates(num_blocks: int, rate: float) -> list[float]:
    """Block i of n drops its branch with probability ``rate * i / n``.

    The EfficientNet reference code's schedule (torchvision's too): it divides by n, not by
    n - 1 as ``layers.drop_path_rates`` does, so the last block stays just under ``rate``.
    """
    return [rate * i / num_blocks for i in range(num_blocks)]


class EfficientNet(Backbone):
    """Stem (3x3 conv, stride 2), seven MBConv stages from ``B0_STAGES``, 1x1 conv head, classifier.

    ``width_mult`` scales every layer's channels (rounded to multiples of 8) and ``depth_mult``
    every stage's layers (rounded up); ``resolution`` is the input size the scaled model is
    meant for (its ``default_input_size``).  Each stage is one feature level; ``conv_head``
    (the paper's stage 9 convolution) belongs to the head, so ``features_only`` ends at the
    last MBConv stage.  ``small_input`` puts the stem at stride 1 for 32x32 images.
    ``drop_path_rate`` is stochastic depth's final rate (0.2 as the paper and torchvision).
    ``bn_eps``/``bn_momentum`` are BatchNorm's (torch convention: TensorFlow's 0.99 is 0.01).
    """

    head_modules = ("conv_head", "head")
    first_conv = "stem.conv"

    def __init__(self, *, width_mult: float = 1.0, depth_mult: float = 1.0, resolution: int = 224,
                 num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
                 drop_path_rate: float = 0.2, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        drop_path_rate = check_rate("drop_path_rate", drop_path_rate)
        norm = partial(nn.BatchNorm2d, eps=bn_eps, momentum=bn_momentum)
        stem_chs = round_channels(STEM_CHANNELS, width_mult, layer="the stem")
        stem_stride = 1 if small_input else 2
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=stem_stride, norm=norm, act=nn.SiLU)

        stages = [(t, k, s, round_channels(c, width_mult, layer=f"stage {i}"),
                   round_repeats(n, depth_mult, layer=f"stage {i}"))
                  for i, (t, k, s, c, n) in enumerate(B0_STAGES)]
        rates = stochastic_depth_rates(sum(n for *_, n in stages), drop_path_rate)
        in_chs, reduction, built = stem_chs, stem_stride, []
        for index, (expand_ratio, kernel, stride, out_chs, layers) in enumerate(stages):
            blocks = []
            for b in range(layers):
                blocks.append(MBConv(in_chs, out_chs, kernel, stride if b == 0 else 1, expand_ratio,
                                     norm, rates.pop(0)))
                in_chs = out_chs
            built.append(nn.Sequential(*blocks))
            reduction *= stride
            self.feature_info.append(FeatureInfo(out_chs, reduction, f"stages.{index}"))
        self.stages = nn.Sequential(*built)

        self.num_features = round_channels(HEAD_CHANNELS, width_mult, layer="the head convolution")
        self.conv_head = ConvNormAct(in_chs, self.num_features, 1, norm=norm, act=nn.SiLU)
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        self.min_input_size = reduction
        self.default_input_size = 32 if small_input else check_int("resolution", resolution, 1)
        self.init_weights()

    def init_weights(self) -> None:
        """He (fan-out) convolutions as the base class; the classifier uniform in +-1/sqrt(classes)
        as the reference code."""
        super().init_weights()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(super().forward_features(x))


# -- the registered models: B0 and its compound-scaled descendants ---------------------------
EFFICIENTNET = dict(family="efficientnet",
                    paper="EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
                    year=2019, arxiv="1905.11946",
                    idea="compound scaling: one coefficient grows depth, width and resolution together")

# name: (width, depth, resolution, dropout) of the paper's B0-B7, then torchvision's params and MACs
# at that resolution (tools/record_reference.py).
SCALED = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2, 5_288_548, 385_814_752),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2, 7_794_184, 686_802_832),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3, 9_109_994, 993_561_872),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3, 12_233_232, 1_827_141_392),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4, 19_341_616, 4_393_771_024),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4, 30_389_784, 10_266_384_752),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5, 43_040_704, 19_067_593_536),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5, 66_347_960, 37_745_884_192),
}
# torchvision's B5-B7 weights are ports of the TensorFlow originals and keep TF's BatchNorm;
# its B0-B4 were trained in PyTorch with torch's defaults, which those weights depend on.
TF_BATCHNORM = {"efficientnet_b5", "efficientnet_b6", "efficientnet_b7"}
NOTES = {
    False: "BatchNorm eps 1e-5, momentum 0.1 as torchvision, whose B0-B4 weights were trained in "
           "PyTorch; the paper's TensorFlow BatchNorm is bn_eps=1e-3, bn_momentum=0.01",
    True: "BatchNorm eps 1e-3, momentum 0.01: the paper's TensorFlow setting, as torchvision's ported weights",
}
SMALL_INPUT = ("; small_input puts the stem convolution at stride 1 (total stride 16); stochastic depth "
               "as the paper and torchvision: drop_path_rate=0.2, growing as rate * i / n over the blocks")

for _name, (_width, _depth, _resolution, _dropout, _params, _macs) in SCALED.items():
    _tf = _name in TF_BATCHNORM
    _bn = dict(bn_eps=1e-3, bn_momentum=0.01) if _tf else {}
    register(_name, **EFFICIENTNET, input_size=_resolution, params=_params, macs=_macs,
             reference=f"torchvision {_name}", layouts=("torchvision_efficientnet",),
             notes=NOTES[_tf] + SMALL_INPUT)(
        partial(EfficientNet, width_mult=_width, depth_mult=_depth, resolution=_resolution,
                drop_rate=_dropout, **_bn))
