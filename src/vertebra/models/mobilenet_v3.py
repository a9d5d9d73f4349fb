"""MobileNet V3: Howard et al., "Searching for MobileNetV3", 2019, arXiv:1905.02244.

Platform-aware NAS (MnasNet's) finds the blocks and NetAdapt trims each layer's width; then the
authors redesign the expensive ends by hand and add h-swish, x * ReLU6(x + 3) / 6, a cheap swish,
and squeeze-and-excitation gated by the hard sigmoid ReLU6(x + 3) / 6 inside MobileNet V2's blocks.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo
from ..layers import ConvNormAct, InvertedResidual, make_divisible
from ..layers.inverted_residual import repeated_blocks
from ..layers.scaling import round_channels, spread_repeats
from ..registry import register

# TensorFlow's BN (decay 0.99, epsilon 1e-3), which the authors trained with and torchvision keeps.
BatchNorm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
ACTIVATIONS = {"RE": partial(nn.ReLU, inplace=True), "HS": partial(nn.Hardswish, inplace=True)}

# Tables 1 and 2, one row per bneck: (kernel, exp size, #out, SE, NL, s).  Rows are grouped into
# stages that end where the resolution halves.
LARGE = dict(stem=16, last=960, hidden=1280, stages=(
    ((3, 16, 16, False, "RE", 1),),
    ((3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1)),
    ((5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1)),
    ((3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
     (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1)),
    ((5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1)),
))
SMALL = dict(stem=16, last=576, hidden=1024, stages=(
    ((3, 16, 16, True, "RE", 2),),
    ((3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1)),
    ((5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
     (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1)),
    ((5, 288, 96, True, "HS", 2), (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1)),
))


class MobileNetV3Head(nn.Module):
    """The tables' last rows: pool, "conv2d 1x1, NBN" (no BN) with h-swish, "conv2d 1x1, NBN" to k.

    On the pooled 1x1 map both convolutions are linear layers (``hidden`` and ``fc``).  Dropout
    sits before the classifier.  ``num_classes=0`` removes both and leaves the pooled features.
    """

    def __init__(self, in_features: int, hidden_features: int, num_classes: int, drop_rate: float):
        super().__init__()
        self.in_features, self.hidden_features = in_features, hidden_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.act = nn.Hardswish(inplace=True)
        self.drop = nn.Dropout(drop_rate)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        device = next((p.device for p in self.parameters()), None)
        if num_classes > 0:
            self.hidden = nn.Linear(self.in_features, self.hidden_features, device=device)
            self.fc = nn.Linear(self.hidden_features, num_classes, device=device)
        else:
            self.hidden, self.fc = nn.Identity(), nn.Identity()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.pool(x))
        if pre_logits or self.num_classes == 0:
            return x
        return self.fc(self.drop(self.act(self.hidden(x))))


class MobileNetV3(Backbone):
    """A 3x3 stride-2 stem with h-swish, the table's bnecks, a 1x1 conv, the head above.

    Widths are ``round_channels(c, width_mult)``, multiples of 8 (the hidden head layer's too, as
    in torchvision); SE squeezes to ``make_divisible(exp / 4, 8)`` channels, "1/4 of the number of
    channels in the expansion layer".  ``depth_mult`` deepens each stage as a whole (``spread_repeats``:
    the last rows repeat first; compound scaling's depth axis).  ``small_input`` makes the stem stride 1.
    """

    first_conv = "stem.conv"
    classifier = "head.fc"  # a different num_classes re-initialises the classifier, not the hidden layer
    head_modules = ("conv_head", "head")

    def __init__(self, arch: dict, width_mult: float = 1.0, *, depth_mult: float = 1.0, num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.2, small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        in_chs = round_channels(arch["stem"], width_mult, layer="the stem conv")
        reduction = 1 if small_input else 2
        self.stem = ConvNormAct(in_chans, in_chs, 3, stride=reduction, norm=BatchNorm,
                                act=ACTIVATIONS["HS"])
        stages = []
        for index, rows in enumerate(arch["stages"]):
            repeats = spread_repeats([1] * len(rows), depth_mult, layer=f"stage {index}")
            stage, in_chs, stride = repeated_blocks(
                in_chs, [(round_channels(row[2], width_mult), n, row[5], row) for row, n in zip(rows, repeats)],
                lambda chs, out_chs, stride, row: self.bneck(chs, out_chs, stride, row, width_mult))
            reduction *= stride
            stages.append(stage)
            self.feature_info.append(FeatureInfo(in_chs, reduction, f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = round_channels(arch["last"], width_mult)
        self.conv_head = ConvNormAct(in_chs, self.num_features, 1, norm=BatchNorm, act=ACTIVATIONS["HS"])
        self.head = MobileNetV3Head(self.num_features, round_channels(arch["hidden"], width_mult),
                                    num_classes, drop_rate)
        self.min_input_size = reduction
        self.default_input_size = 32 if small_input else 224
        self.init_weights()

    @staticmethod
    def bneck(in_chs: int, out_chs: int, stride: int, row: tuple, width_mult: float) -> InvertedResidual:
        """One row of the table: (kernel, exp size, #out, SE, NL, s); SE squeezes to a quarter of exp."""
        kernel, exp, _, se, nl, _ = row
        exp_chs = round_channels(exp, width_mult)
        return InvertedResidual(in_chs, out_chs, kernel, stride, exp_chs, act=ACTIVATIONS[nl], norm=BatchNorm,
                                se_chs=make_divisible(exp_chs // 4) if se else None, se_gate=nn.Hardsigmoid)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(super().forward_features(x))


MOBILENET_V3 = dict(family="mobilenet_v3", paper="Searching for MobileNetV3", year=2019, arxiv="1905.02244",
                    idea="NAS + NetAdapt blocks with h-swish and hard-sigmoid squeeze-excitation")
COMMON = ("torchvision layout; BN eps 1e-3 and momentum 0.01 (TensorFlow's defaults the authors used); "
          "small_input makes the stem stride 1")
register("mobilenet_v3_large", **MOBILENET_V3, input_size=224, params=5_483_032, macs=216_589_760,
         reference="torchvision mobilenet_v3_large", layouts=("torchvision_mobilenet_v3_large",),
         notes=f"{COMMON}. MACs: the paper's Table 3 says 219M, 1.1% above the 216.6M counted here "
               "(conv and linear multiply-adds); the authors' TF-slim README gives 217M for the same "
               "released model, so the gap is the paper's counting, not the structure")(
    partial(MobileNetV3, LARGE))
register("mobilenet_v3_small", **MOBILENET_V3, input_size=224, params=2_542_856, macs=56_510_400,
         reference="torchvision mobilenet_v3_small", layouts=("torchvision_mobilenet_v3_small",),
         notes=f"{COMMON}. Table 2 marks the last 1x1 conv (576) with SE; the authors' released model "
               "and torchvision have none there, and the paper's 2.5M params and 56M MACs match that")(
    partial(MobileNetV3, SMALL))
