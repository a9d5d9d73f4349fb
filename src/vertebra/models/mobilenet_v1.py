"""MobileNet V1: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile
Vision Applications", 2017, arXiv:1704.04861.

Every convolution but the first is depthwise separable: a 3x3 depthwise filter per channel, then a
1x1 pointwise mix, each followed by BN and ReLU, with no skip connections.  Two hyper-parameters
trade accuracy for cost: the width multiplier alpha thins every layer, the resolution multiplier
rho is simply the input size.
"""
from __future__ import annotations

from functools import partial

from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo
from ..layers import ConvNormAct, SeparableConv
from ..layers.inverted_residual import repeated_blocks
from ..layers.scaling import round_channels, spread_repeats
from ..registry import register

# Table 1, one row per depthwise separable layer: (stride of the 3x3 depthwise, pointwise filters).
# A stage ends where the resolution halves.  The table's last depthwise layer reads "s2" on a 7x7
# input that stays 7x7: a typo, the authors' TF-slim code and timm use stride 1.
STEM_WIDTH = 32
STAGES = (
    ((1, 64),),
    ((2, 128), (1, 128)),
    ((2, 256), (1, 256)),
    ((2, 512),) + ((1, 512),) * 5,
    ((2, 1024), (1, 1024)),
)


class MobileNetV1(Backbone):
    """A 3x3 stride-2 stem convolution, then Table 1's 13 depthwise separable layers in five stages.

    Channels are ``round_channels(c, width_mult)``, multiples of 8 as in TF-slim and timm (exact
    for the paper's alphas).  ``relu6=True`` (the default) clips activations at 6 like the TF-slim
    and timm models whose weights load here; ``relu6=False`` gives the paper's plain ReLU.
    ``depth_mult`` deepens each stage as a whole (``spread_repeats``: the last rows repeat first;
    compound scaling's depth axis).  ``small_input`` makes the stem stride 1 (32x32 images end at 2x2).
    """

    first_conv = "stem.conv"

    def __init__(self, width_mult: float = 1.0, *, depth_mult: float = 1.0, relu6: bool = True,
                 num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0, small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        act = partial(nn.ReLU6 if relu6 else nn.ReLU, inplace=True)
        in_chs = round_channels(STEM_WIDTH, width_mult, layer="the stem conv")
        reduction = 1 if small_input else 2
        self.stem = ConvNormAct(in_chans, in_chs, 3, stride=reduction, act=act)
        stages = []
        for index, rows in enumerate(STAGES):
            repeats = spread_repeats([1] * len(rows), depth_mult, layer=f"stage {index}")
            stage, in_chs, stride = repeated_blocks(
                in_chs, [(round_channels(c, width_mult), n, s, None) for (s, c), n in zip(rows, repeats)],
                lambda chs, out_chs, stride, _: SeparableConv(chs, out_chs, 3, stride, dw_act=act, pw_act=act))
            reduction *= stride
            stages.append(stage)
            self.feature_info.append(FeatureInfo(in_chs, reduction, f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chs
        self.head = ClassifierHead(in_chs, num_classes, drop_rate)
        self.min_input_size = reduction
        self.default_input_size = 32 if small_input else 224
        self.init_weights()


MOBILENET_V1 = dict(family="mobilenet_v1", paper="MobileNets: Efficient Convolutional Neural Networks for "
                    "Mobile Vision Applications", year=2017, arxiv="1704.04861",
                    idea="depthwise separable convolutions, thinned by a width multiplier alpha")
NOTES = ("timm mobilenetv1_100 layout: ReLU6 as in the authors' TF-slim code (relu6=False gives the "
         "paper's ReLU); Table 1's last depthwise layer has stride 1, not the table's 's2' typo; "
         "the resolution multiplier rho is the input size (1.0 at 192/160/128: 418M/291M/186M MACs, "
         "the paper's 418/290/186M); small_input makes the stem stride 1")
register("mobilenet_v1_100", **MOBILENET_V1, input_size=224, params=4_231_976, macs=568_740_352,
         reference="timm mobilenetv1_100", layouts=("timm_mobilenetv1",), notes=NOTES)(
    partial(MobileNetV1, width_mult=1.0))

# No library builds the thinner nets: their figures are the paper's Table 6, whose parameter counts
# are rounded to 0.1M (these nets have 2,585,560, 1,331,592 and 470,072), hence the tolerance of
# half a rounding step.  The MACs are exact.
# name: (alpha, the paper's parameters and MACs at 224)
THINNER = {
    "mobilenet_v1_075": (0.75, 2_600_000, 325_000_000),
    "mobilenet_v1_050": (0.50, 1_300_000, 149_000_000),
    "mobilenet_v1_025": (0.25, 500_000, 41_000_000),
}
for _name, (_alpha, _params, _macs) in THINNER.items():
    register(_name, **MOBILENET_V1, input_size=224, params=_params, macs=_macs,
             reference="paper, Table 6 (parameters rounded to 0.1M)", layouts=("timm_mobilenetv1",),
             params_tolerance=50_000 / _params, notes=NOTES)(partial(MobileNetV1, width_mult=_alpha))
