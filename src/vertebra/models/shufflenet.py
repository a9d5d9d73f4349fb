"""The ShuffleNet line: two papers on networks for mobile compute budgets.

ShuffleNet: Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional Neural Network for
Mobile Devices", 2018, arXiv:1707.01083.
    The 1x1 convolutions that dominate a bottleneck's cost become group convolutions; a channel
    shuffle between them lets each group of the next one see every group of the last.
ShuffleNet V2: Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture
Design", 2018, arXiv:1807.11164.
    Speed is not FLOPs: equal widths, no group convolutions, few branches and element-wise ops.
    A unit splits its channels, leaves one half alone, passes the other through 1x1, 3x3
    depthwise, 1x1 convolutions of the same width, concatenates the halves and shuffles them.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo
from ..layers import ChannelShuffle, ConvNormAct, concat_shuffle, make_divisible
from ..registry import register

ReLU = partial(nn.ReLU, inplace=True)


def stem(in_chans: int, width: int, small_input: bool) -> nn.Sequential:
    """Conv1 (3x3 stride 2, BN, ReLU) and a 3x3 stride-2 max-pool; for 32x32 images stride 1, no pool."""
    parts = OrderedDict(conv1=ConvNormAct(in_chans, width, 3, stride=1 if small_input else 2, act=ReLU))
    if not small_input:
        parts["pool"] = nn.MaxPool2d(3, 2, padding=1)
    return nn.Sequential(parts)


def depthwise(chs: int, stride: int) -> ConvNormAct:
    """3x3 depthwise convolution and BN, without ReLU (both papers' figures)."""
    return ConvNormAct(chs, chs, 3, stride=stride, groups=chs, act=None)


# -- ShuffleNet V1 --------------------------------------------------------------------------------
# Table 1: output channels of Stage2, Stage3, Stage4 at 1x, for each number of groups g.
STAGE_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                8: (384, 768, 1536)}
STAGE_REPEATS = (4, 8, 4)  # units per stage, the first of each at stride 2
STEM_WIDTH = 24  # Conv1 at 1x


class ShuffleUnit(nn.Module):
    """Figure 2(b) at stride 1, 2(c) at stride 2: 1x1 GConv-BN-ReLU, shuffle, 3x3 DWConv-BN, 1x1 GConv-BN.

    At stride 1 the branch is added to the identity; at stride 2 it is concatenated with a 3x3
    average-pooled shortcut, so it only produces ``out_chs - in_chs`` maps.  ReLU follows the
    sum or the concatenation; there is none after the depthwise convolution.
    """

    def __init__(self, in_chs: int, out_chs: int, bottleneck_chs: int, stride: int, groups: int,
                 group_first: bool = True):
        super().__init__()
        branch_chs = out_chs - in_chs if stride == 2 else out_chs
        self.gconv1 = ConvNormAct(in_chs, bottleneck_chs, 1, groups=groups if group_first else 1, act=ReLU)
        self.shuffle = ChannelShuffle(groups)
        self.dwconv = depthwise(bottleneck_chs, stride)
        self.gconv2 = ConvNormAct(bottleneck_chs, branch_chs, 1, groups=groups, act=None)
        self.shortcut = nn.AvgPool2d(3, 2, padding=1) if stride == 2 else nn.Identity()
        self.stride = stride
        self.act = ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gconv2(self.dwconv(self.shuffle(self.gconv1(x))))
        if self.stride == 2:
            return self.act(torch.cat((self.shortcut(x), out), 1))
        return self.act(out + x)


def scaled_widths(groups: int, scale: float, stem_width: int | None) -> tuple[int, tuple[int, ...]]:
    """Conv1 and Stage2-4 widths of "ShuffleNet s x": Table 1's widths times s.

    Every grouped 1x1 convolution must split its channels into g groups, so a stage width that
    does not, or that leaves a bottleneck (a quarter of it) under one channel per group, is a
    ValueError.  Conv1 (24 x s unless given) is rounded to a multiple of g, so that the first
    stride-2 unit's branch, Stage2's width minus Conv1's, splits too.
    """
    if groups not in STAGE_WIDTHS:
        raise ValueError(f"groups must be one of Table 1's {sorted(STAGE_WIDTHS)}, got {groups}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    widths = tuple(round(w * scale) for w in STAGE_WIDTHS[groups])
    for index, width in enumerate(widths):
        if width < 4 * groups or width % groups:
            raise ValueError(f"stage {index + 2}: scale {scale} gives {width} output channels; with "
                             f"g={groups} a ShuffleNet unit needs a multiple of {groups} (its 1x1 group "
                             f"convolutions split them into {groups} groups) of at least {4 * groups} "
                             f"(its bottleneck, a quarter of them, needs a channel per group)")
    if stem_width is None:
        stem_width = make_divisible(STEM_WIDTH * scale, groups)
    if not 0 < stem_width < widths[0] or stem_width % groups:
        raise ValueError(f"Conv1: {stem_width} output channels; with g={groups} they must be a multiple of "
                         f"{groups} below Stage2's {widths[0]}, or Stage2's first unit ({widths[0]} - {stem_width} "
                         f"branch channels) does not split into {groups} groups")
    return stem_width, widths


class ShuffleNetV1(Backbone):
    """Conv1 (3x3 stride 2, 24 maps at 1x) and max-pool, Stage2-4 of ShuffleUnits, global pool, FC.

    ``groups`` is g of Table 1 and ``scale`` the "s x" width multiplier.  Each unit's bottleneck
    is a quarter of its output width, rounded to a multiple of g where it would not split into
    g groups (0.5x and 1.5x at g = 2 or 4).  The first 1x1 convolution of Stage2 is not grouped:
    its input has only Conv1's few channels.  ``small_input`` makes Conv1 stride 1 and drops the
    max-pool (strides 2, 4, 8 instead of 8, 16, 32).
    """

    def __init__(self, groups: int = 3, scale: float = 1.0, *, stem_width: int | None = None,
                 num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        stem_width, widths = scaled_widths(groups, scale, stem_width)
        self.stem = stem(in_chans, stem_width, small_input)
        stem_reduction = 1 if small_input else 4
        chs, stages = stem_width, []
        for index, (width, repeat) in enumerate(zip(widths, STAGE_REPEATS)):
            bottleneck = make_divisible(width / 4, groups)
            units = [ShuffleUnit(chs, width, bottleneck, 2, groups, group_first=index > 0)]
            units += [ShuffleUnit(width, width, bottleneck, 1, groups) for _ in range(repeat - 1)]
            stages.append(nn.Sequential(*units))
            chs = width
            self.feature_info.append(FeatureInfo(chs, stem_reduction * 2 ** (index + 1), f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = chs
        self.head = ClassifierHead(chs, num_classes, drop_rate)
        self.min_input_size = self.feature_info[-1].reduction
        self.default_input_size = 32 if small_input else 224
        self.init_weights()


# -- the registered models: Table 1's five group counts at the paper's four scales ----------------
SHUFFLENET_V1 = dict(family="shufflenet_v1",
                     paper="ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices",
                     year=2018, arxiv="1707.01083",
                     idea="pointwise group convolutions with a channel shuffle between them")
SCALES = {"x0_5": 0.5, "x1_0": 1.0, "x1_5": 1.5, "x2_0": 2.0}
# The paper's MFLOPs (multiply-adds): Table 1 (1x), Table 2 (0.5x, one figure for every g),
# Table 5 (1.5x and 2x, g = 3 only).
PAPER_MFLOPS = {(1, 1.0): 143, (2, 1.0): 140, (3, 1.0): 137, (4, 1.0): 133, (8, 1.0): 137,
                **{(g, 0.5): 38 for g in STAGE_WIDTHS}, (3, 1.5): 292, (3, 2.0): 524}
# Parameters the authors publish with their code (github.com/megvii-model/ShuffleNet-Series,
# ShuffleNetV1 README), rounded to 0.1M, for g = 3 and 8 only; the paper gives none.
AUTHORS_PARAMS = {(3, 0.5): 700_000, (3, 1.0): 1_900_000, (3, 1.5): 3_400_000, (3, 2.0): 5_400_000,
                  (8, 0.5): 1_000_000, (8, 1.0): 2_400_000, (8, 1.5): 4_300_000, (8, 2.0): 6_500_000}
ROUNDING = ("Conv1 is 24 x s maps except at 1.5x, where it stays 24 as in the authors' code (which "
            "gives the paper's 292 MFLOPs; 36 maps would give 300); at 0.5x with g=8 it is 16, as in "
            "the authors' code, because 192 - 12 = 180 branch maps do not split into 8 groups. "
            "Bottlenecks are a quarter of the stage width, rounded up to a multiple of g where they "
            "do not split (0.5x and 1.5x at g=2 and g=4; the paper does not say how it rounds). "
            "The first 1x1 of Stage2 is not grouped, and the shuffle sits before the depthwise "
            "convolution, as the paper's Figure 2 (the authors' code shuffles after it). "
            "small_input: Conv1 at stride 1 and no max-pool.")
# Where a count is more than 2% from the paper's figure, why.
GAPS = {(8, 0.5): "Table 2 gives one figure, 38, for the whole 0.5x row; with Conv1 at 16 maps this "
                  "model has 40.5M, which is what the authors' code README reports for it (40M). "}

for (_g, _s) in [(g, s) for s in SCALES.values() for g in STAGE_WIDTHS]:
    _suffix = next(k for k, v in SCALES.items() if v == _s)
    _paper = PAPER_MFLOPS.get((_g, _s))
    _published = AUTHORS_PARAMS.get((_g, _s))
    _flops_note = ((f"MACs: the paper's {_paper} MFLOPs (multiply-adds), which this build's count "
                    f"(convolutions and FC) must match within 2%. ") if _paper
                   else "The paper gives no MFLOPs for this one: the card holds none. ")
    register(f"shufflenet_v1_g{_g}_{_suffix}", **SHUFFLENET_V1, input_size=224,
             params=_published, params_tolerance=51_000 / _published if _published else 0.0,
             macs=_paper * 1_000_000 if _paper else None, macs_tolerance=0.07 if (_g, _s) in GAPS else 0.02,
             reference="paper, Tables 1, 2, 5 (no reference library has ShuffleNet V1); params: "
                       + (f"the authors' code README ({_published / 1e6:.1f}M, rounded to 0.1M; their FC "
                          f"has no bias, 1,000 parameters fewer)" if _published
                          else "none published for this one"),
             notes=_flops_note + GAPS.get((_g, _s), "") + ROUNDING)(
        partial(ShuffleNetV1, _g, _s, stem_width=24 if _s == 1.5 else None))


# -- ShuffleNet V2 --------------------------------------------------------------------------------
class ShuffleV2Unit(nn.Module):
    """Figure 3(c) at stride 1 (channel split), Figure 3(d) at stride 2 (both branches see all input).

    ``branch_main`` is 1x1 conv, 3x3 depthwise, 1x1 conv; ``branch_proj`` (stride 2 only) is a
    3x3 depthwise and a 1x1 conv; both are ``out_chs / 2`` wide, then concat and a 2-group shuffle.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        branch_chs = out_chs // 2
        if stride == 1 and in_chs != out_chs:
            raise ValueError(f"a stride-1 ShuffleNet V2 unit keeps its width: got {in_chs} -> {out_chs}")
        self.stride = stride
        self.branch_proj = nn.Sequential(OrderedDict(
            dw=depthwise(in_chs, stride), pw=ConvNormAct(in_chs, branch_chs, 1, act=ReLU),
        )) if stride > 1 else nn.Identity()
        self.branch_main = nn.Sequential(OrderedDict(
            pw1=ConvNormAct(in_chs if stride > 1 else branch_chs, branch_chs, 1, act=ReLU),
            dw=depthwise(branch_chs, stride),
            pw2=ConvNormAct(branch_chs, branch_chs, 1, act=ReLU),
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, x = x.chunk(2, dim=1)
        else:
            kept = self.branch_proj(x)
        return concat_shuffle(kept, self.branch_main(x))  # concat, then a 2-group channel shuffle


class ShuffleNetV2(Backbone):
    """Conv1 (3x3 stride 2) and max-pool, Stage2-4 (a downsampling unit, then basic units), Conv5, head.

    ``small_input`` makes Conv1 stride 1 and drops the max-pool (strides 2, 4, 8 instead of 8 to 32).
    """

    head_modules = ("conv5", "head")

    def __init__(self, widths: tuple[int, int, int], repeats: tuple[int, int, int] = (4, 8, 4), *,
                 stem_width: int = 24, last_width: int = 1024, num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.0, small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        if len(widths) != len(repeats) or min(repeats) < 1:
            raise ValueError(f"repeats must give one positive unit count per stage {widths}, got {repeats}")
        for index, width in enumerate(widths):
            if width < 2 or width % 2:
                raise ValueError(f"stage {index + 2}: {width} output channels do not split into the two "
                                 f"equal branches of a ShuffleNet V2 unit (need an even width >= 2)")
        self.stem = stem(in_chans, stem_width, small_input)
        stem_reduction = 1 if small_input else 4
        chs, stages = stem_width, []
        for index, (width, repeat) in enumerate(zip(widths, repeats)):
            units = [ShuffleV2Unit(chs, width, 2)] + [ShuffleV2Unit(width, width, 1) for _ in range(repeat - 1)]
            stages.append(nn.Sequential(*units))
            chs = width
            self.feature_info.append(FeatureInfo(chs, stem_reduction * 2 ** (index + 1), f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.conv5 = ConvNormAct(chs, last_width, 1, act=ReLU)
        self.num_features = last_width
        self.head = ClassifierHead(last_width, num_classes, drop_rate)
        self.min_input_size = self.feature_info[-1].reduction
        self.default_input_size = 32 if small_input else 224
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(super().forward_features(x))


# -- the registered models: the paper's Table 5 ---------------------------------------------------
SHUFFLENET_V2 = dict(family="shufflenet_v2",
                     paper="ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design",
                     year=2018, arxiv="1807.11164",
                     idea="channel split into an identity half and an equal-width branch, concat, shuffle")

# name: (Stage2-4 output channels, Conv5 channels, params, MACs at 224); units per stage 4, 8, 4
SHUFFLENETS_V2 = {
    "shufflenet_v2_x0_5": ((48, 96, 192), 1024, 1_366_792, 40_476_448),
    "shufflenet_v2_x1_0": ((116, 232, 464), 1024, 2_278_604, 144_907_992),
    "shufflenet_v2_x1_5": ((176, 352, 704), 1024, 3_503_624, 295_759_392),
    "shufflenet_v2_x2_0": ((244, 488, 976), 2048, 7_393_996, 583_253_464),
}
for _name, (_widths, _last, _params, _macs) in SHUFFLENETS_V2.items():
    register(_name, **SHUFFLENET_V2, input_size=224, params=_params, macs=_macs,
             reference=f"torchvision {_name}", layouts=("torchvision_shufflenet_v2",),
             notes="torchvision layout, the paper's Table 5 widths; the depthwise convolutions "
                   "and the downsampling unit's branches follow Figure 3 exactly; small_input: Conv1 "
                   "at stride 1 and no max-pool")(
        partial(ShuffleNetV2, _widths, last_width=_last))
