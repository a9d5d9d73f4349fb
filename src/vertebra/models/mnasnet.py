"""MnasNet: Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile", 2019,
arXiv:1807.11626.

A reinforcement-learning controller searches a factorized hierarchical space (each stage of the
net picks its own block, kernel, expansion and depth) for the best accuracy x (latency / target)^w,
with latency measured on a real phone.  The blocks it finds are MobileNet V2's inverted residuals.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo
from ..layers import ConvNormAct, InvertedResidual, SeparableConv, make_divisible
from ..layers.inverted_residual import repeated_blocks
from ..layers.scaling import check_multiplier
from ..registry import register

ReLU = partial(nn.ReLU, inplace=True)
# The paper trains with TensorFlow's BN decay 0.9997, which is PyTorch's momentum 1 - 0.9997.
BatchNorm = partial(nn.BatchNorm2d, momentum=1 - 0.9997)

# The searched network as torchvision builds it (the MnasNet-B1 of the authors' TF code, without
# squeeze-and-excitation): a 3x3 stride-2 stem, SepConv 3x3 to 16 channels, then MBConv rows of
# (kernel k, expansion t, output channels c, repeats n, stride s of the first repeat).  Rows are
# grouped into stages that end where the resolution halves; the SepConv is stage 0.
STEM_WIDTH, SEPCONV_WIDTH, LAST_WIDTH = 32, 16, 1280
STAGES = (
    ((3, 3, 24, 3, 2),),
    ((5, 3, 40, 3, 2),),
    ((5, 6, 80, 3, 2), (3, 6, 96, 2, 1)),
    ((5, 6, 192, 4, 2), (3, 6, 320, 1, 1)),
)


class MnasNet(Backbone):
    """Stem, SepConv, the MBConv stages, a 1x1 conv to 1280 channels, the classifier.

    ``alpha``, the paper's (and torchvision's) "depth multiplier", scales the channels of every
    layer up to the last 1280 through ``make_divisible(c * alpha, 8)``, as MobileNet's width
    multiplier does.  ``small_input`` makes the stem stride 1.
    """

    first_conv = "stem.conv"
    head_modules = ("conv_head", "head")

    def __init__(self, alpha: float = 1.0, *, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.2, small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        alpha = check_multiplier("alpha", alpha, f"the stem conv ({STEM_WIDTH} channels)")
        stem_chs, in_chs = make_divisible(STEM_WIDTH * alpha), make_divisible(SEPCONV_WIDTH * alpha)
        reduction = 1 if small_input else 2
        self.stem = ConvNormAct(in_chans, stem_chs, 3, stride=reduction, norm=BatchNorm, act=ReLU)
        # SepConv: BN and ReLU after the depthwise filter, a linear pointwise projection
        stages = [nn.Sequential(SeparableConv(stem_chs, in_chs, 3, dw_norm=BatchNorm, dw_act=ReLU,
                                              pw_norm=BatchNorm, pw_act=None))]
        self.feature_info.append(FeatureInfo(in_chs, reduction, "stages.0"))
        for rows in STAGES:
            stage, in_chs, stride = repeated_blocks(
                in_chs, [(make_divisible(c * alpha), n, s, (k, t)) for k, t, c, n, s in rows],
                lambda chs, out_chs, stride, kt: InvertedResidual(chs, out_chs, kt[0], stride, chs * kt[1],
                                                                  act=ReLU, norm=BatchNorm))
            reduction *= stride
            self.feature_info.append(FeatureInfo(in_chs, reduction, f"stages.{len(stages)}"))
            stages.append(stage)
        self.stages = nn.Sequential(*stages)
        self.num_features = LAST_WIDTH
        self.conv_head = ConvNormAct(in_chs, LAST_WIDTH, 1, norm=BatchNorm, act=ReLU)
        self.head = ClassifierHead(LAST_WIDTH, num_classes, drop_rate)
        self.min_input_size = reduction
        self.default_input_size = 32 if small_input else 224
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(super().forward_features(x))


MNASNET = dict(family="mnasnet", paper="MnasNet: Platform-Aware Neural Architecture Search for Mobile",
               year=2019, arxiv="1807.11626",
               idea="RL search of a factorized space for accuracy x (measured phone latency / target)^w")
NOTES = ("torchvision layout: the MnasNet-B1 of the authors' TF code (no squeeze-and-excitation), "
         "not the SE-equipped MnasNet-A1 of the paper's Figure 7 (3.9M params, 312M MACs); BN eps "
         "1e-5 (PyTorch's default, which the published weights use); small_input makes the stem "
         "stride 1")
# name: (alpha, params, MACs at 224) as torchvision has them
ALPHAS = {
    "mnasnet0_5": (0.5, 2_218_512, 104_455_968),
    "mnasnet0_75": (0.75, 3_170_208, 215_493_104),
    "mnasnet1_0": (1.0, 4_383_312, 314_415_872),
    "mnasnet1_3": (1.3, 6_282_256, 526_362_432),
}
for _name, (_alpha, _params, _macs) in ALPHAS.items():
    register(_name, **MNASNET, input_size=224, params=_params, macs=_macs, reference=f"torchvision {_name}",
             layouts=("torchvision_mnasnet",), notes=NOTES)(partial(MnasNet, alpha=_alpha))
