"""The ResNet line: four papers, one family of residual networks.

ResNet: He et al., "Deep Residual Learning for Image Recognition", 2015, arXiv:1512.03385.
    Blocks learn a residual F(x) that is added to an identity shortcut, so very deep nets train.
Pre-activation ResNet: He et al., "Identity Mappings in Deep Residual Networks", 2016, arXiv:1603.05027.
    BN and ReLU move before each convolution, leaving a clean identity path through the whole net.
ResNeXt: Xie et al., "Aggregated Residual Transformations for Deep Neural Networks", 2017, arXiv:1611.05431.
    Cardinality, the number of parallel paths (one grouped 3x3 convolution), is a third dimension.
SENet: Hu et al., "Squeeze-and-Excitation Networks", 2018, arXiv:1709.01507.
    Each block rescales its channels by weights computed from the global context of its output.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo
from ..layers import ConvNormAct, DropPath, NormAct, SqueezeExcite, drop_path_rates
from ..registry import register

ReLU = partial(nn.ReLU, inplace=True)


@dataclass(frozen=True)
class BlockArgs:
    """How a residual block is shaped, beyond its input width, planes and stride."""

    groups: int = 1  # cardinality (ResNeXt)
    width_per_group: int = 64  # bottleneck width of one path (ResNeXt's "d")
    first_1x1_ratio: float = 1.0  # SENet-154 halves the first 1x1 convolution
    se_reduction: int | None = None  # SENet's r; None: no squeeze-and-excitation
    stride_in_1x1: bool = False  # the paper's (and Caffe's) stride placement
    downsample_kernel: int = 1  # SENet-154 projects with a 3x3 convolution
    shortcut: str = "projection"  # "zero_pad": the ResNet paper's option A, parameter-free (CIFAR nets)


class ZeroPadShortcut(nn.Module):
    """Option A of He et al. 2015: the identity, subsampled by the stride, with zero channels added."""

    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.extra, self.stride = out_chs - in_chs, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra))


def projection(in_chs: int, out_chs: int, stride: int, kernel: int) -> nn.Module:
    """The shortcut when width or resolution changes: a strided convolution and BN."""
    if stride == 1 and in_chs == out_chs:
        return nn.Identity()
    return ConvNormAct(in_chs, out_chs, kernel if stride > 1 else 1, stride=stride, act=None)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and an identity (or projection) shortcut: ResNet-18/34."""

    expansion = 1

    def __init__(self, in_chs: int, planes: int, stride: int, args: BlockArgs, drop_path: float):
        super().__init__()
        if args.groups != 1 or args.width_per_group != 64:
            raise ValueError("BasicBlock supports only groups=1 and width_per_group=64")
        self.conv1 = ConvNormAct(in_chs, planes, 3, stride=stride, act=ReLU)
        self.conv2 = ConvNormAct(planes, planes, 3, act=None)
        self.se = SqueezeExcite(planes, planes // args.se_reduction) if args.se_reduction else nn.Identity()
        self.downsample = projection(in_chs, planes, stride, args.downsample_kernel)
        self.drop_path = DropPath(drop_path)
        self.act = ReLU()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.conv2(self.conv1(x)))
        return self.act(self.drop_path(out) + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped in ResNeXt), 1x1 expand x4; SE rescales the branch before the sum."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int, args: BlockArgs, drop_path: float):
        super().__init__()
        width = int(planes * args.width_per_group / 64) * args.groups
        reduced = int(width * args.first_1x1_ratio)
        out_chs = planes * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if args.stride_in_1x1 else (1, stride)
        self.conv1 = ConvNormAct(in_chs, reduced, 1, stride=stride_1x1, act=ReLU)
        self.conv2 = ConvNormAct(reduced, width, 3, stride=stride_3x3, groups=args.groups, act=ReLU)
        self.conv3 = ConvNormAct(width, out_chs, 1, act=None)
        self.se = SqueezeExcite(out_chs, out_chs // args.se_reduction) if args.se_reduction else nn.Identity()
        self.downsample = projection(in_chs, out_chs, stride, args.downsample_kernel)
        self.drop_path = DropPath(drop_path)
        self.act = ReLU()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.conv3(self.conv2(self.conv1(x))))
        return self.act(self.drop_path(out) + self.downsample(x))


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3 twice; the shortcut is the identity, or (where the shape changes) a 1x1
    projection or a zero-padded subsample of the pre-activation."""

    expansion = 1

    def __init__(self, in_chs: int, planes: int, stride: int, args: BlockArgs, drop_path: float):
        super().__init__()
        self.norm1 = NormAct(in_chs, act=ReLU)
        self.conv1 = nn.Conv2d(in_chs, planes, 3, stride, 1, bias=False)
        self.norm2 = NormAct(planes, act=ReLU)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride == 1 and in_chs == planes:
            self.downsample = None
        elif args.shortcut == "zero_pad":
            self.downsample = ZeroPadShortcut(in_chs, planes, stride)
        else:
            self.downsample = nn.Conv2d(in_chs, planes, 1, stride, bias=False)
        self.drop_path = DropPath(drop_path)
        self.activated_shortcut = False  # the first unit after a bare conv1: both paths read BN-ReLU(x)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.norm1(x)
        shortcut = (pre if self.activated_shortcut else x) if self.downsample is None else self.downsample(pre)
        out = self.conv2(self.norm2(self.conv1(pre)))
        return self.drop_path(out) + shortcut


class PreActBottleneck(nn.Module):
    """BN-ReLU before each of 1x1, 3x3, 1x1; nothing after the addition (full pre-activation)."""

    expansion = 4

    def __init__(self, in_chs: int, planes: int, stride: int, args: BlockArgs, drop_path: float):
        super().__init__()
        out_chs = planes * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if args.stride_in_1x1 else (1, stride)
        self.norm1 = NormAct(in_chs, act=ReLU)
        self.conv1 = nn.Conv2d(in_chs, planes, 1, stride_1x1, bias=False)
        self.norm2 = NormAct(planes, act=ReLU)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride_3x3, 1, bias=False)
        self.norm3 = NormAct(planes, act=ReLU)
        self.conv3 = nn.Conv2d(planes, out_chs, 1, bias=False)
        self.downsample = (nn.Conv2d(in_chs, out_chs, 1, stride, bias=False)
                           if stride != 1 or in_chs != out_chs else None)
        self.drop_path = DropPath(drop_path)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.norm1(x)
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv3(self.norm3(self.conv2(self.norm2(self.conv1(pre)))))
        return self.drop_path(out) + shortcut


class ResNet(Backbone):
    """Stem, then one stage per entry of ``layers`` (the first at stride 1, the rest at 2), head.

    ``stem="7x7"``: a 7x7 stride-2 convolution and a 3x3 stride-2 max-pool (ResNet);
    ``stem="deep"``: three 3x3 convolutions instead of the 7x7 (SENet-154).  ``preact``
    builds He et al. 2016's network: a bare stem convolution, pre-activation blocks and
    one BN-ReLU after the last stage.  ``small_input`` swaps the stem for one 3x3 stride-1
    convolution without pooling, for 32x32 images.  ``zero_init_last`` (as timm) starts each
    residual branch at zero, so a fresh net is the identity path; False gives the papers' plain He
    initialisation.  ``shortcut="zero_pad"``: where a basic block changes shape, the shortcut is the
    ResNet paper's option A (a subsample with zero channels added) instead of a 1x1 projection.
    ``activate_conv1``: the pre-activation paper's first unit, whose shortcut, like its residual
    branch, reads the BN-ReLU of conv1 ("the first activation right after conv1 and before
    splitting into two paths").
    """

    head_modules = ("norm", "head")

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], *,
                 widths: tuple[int, ...] = (64, 128, 256, 512), stem_width: int = 64,
                 stem: str = "7x7", pool_ceil_mode: bool = False, preact: bool = False,
                 groups: int = 1, width_per_group: int = 64, first_1x1_ratio: float = 1.0,
                 se_reduction: int | None = None, stride_in_1x1: bool = False,
                 downsample_kernel: int = 1, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, small_input: bool = False,
                 zero_init_last: bool = True, shortcut: str = "projection", activate_conv1: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        if len(layers) != len(widths) or min(layers) < 1:
            raise ValueError(f"layers must give one positive block count per stage {widths}, got {layers}")
        if stem not in ("7x7", "deep"):
            raise ValueError(f"stem must be '7x7' or 'deep', got {stem!r}")
        if shortcut not in ("projection", "zero_pad"):
            raise ValueError(f"shortcut must be 'projection' or 'zero_pad', got {shortcut!r}")
        args = BlockArgs(groups, width_per_group, first_1x1_ratio, se_reduction, stride_in_1x1,
                         downsample_kernel, shortcut)
        self.stem = self._stem(stem, stem_width, pool_ceil_mode, preact)
        stem_reduction = 1 if small_input else 4
        drop_paths = drop_path_rates(sum(layers), drop_path_rate)
        in_chs, stages = stem_width, []
        for index, (num_blocks, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for b in range(num_blocks):
                stride = 2 if index > 0 and b == 0 else 1
                blocks.append(block(in_chs, planes, stride, args, drop_paths.pop(0)))
                in_chs = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(FeatureInfo(in_chs, stem_reduction * 2 ** index, f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chs
        # Pre-activation leaves the last unit's output un-normalised: one BN-ReLU closes the net.
        self.norm = NormAct(in_chs, act=ReLU) if preact else nn.Identity()
        self.head = ClassifierHead(in_chs, num_classes, drop_rate)
        self.min_input_size = self.feature_info[-1].reduction
        self.default_input_size = 32 if small_input else 224
        self.first_conv = "stem.conv1" if preact else "stem.conv1.conv"
        if activate_conv1:  # the pre-activation paper's first unit: conv1's BN-ReLU feeds both paths
            self.stages[0][0].activated_shortcut = True
        self.init_weights()
        if zero_init_last:
            for stage in self.stages:
                for block in stage:
                    block.zero_init_last()

    def _stem(self, kind: str, width: int, pool_ceil_mode: bool, preact: bool) -> nn.Sequential:
        in_chans = self.in_chans
        if preact:  # the first unit pre-activates, so the stem convolution stands alone
            size, stride, padding = (3, 1, 1) if self.small_input else (7, 2, 3)
            parts = OrderedDict(conv1=nn.Conv2d(in_chans, width, size, stride, padding, bias=False))
        elif self.small_input:
            parts = OrderedDict(conv1=ConvNormAct(in_chans, width, 3, act=ReLU))
        elif kind == "deep":
            parts = OrderedDict(conv1=ConvNormAct(in_chans, 64, 3, stride=2, act=ReLU),
                                conv2=ConvNormAct(64, 64, 3, act=ReLU),
                                conv3=ConvNormAct(64, width, 3, act=ReLU))
        else:
            parts = OrderedDict(conv1=ConvNormAct(in_chans, width, 7, stride=2, act=ReLU))
        if not self.small_input:
            # SENet's Caffe models pool with ceil_mode and no padding; torchvision pads by one.
            parts["pool"] = (nn.MaxPool2d(3, 2, ceil_mode=True) if pool_ceil_mode
                             else nn.MaxPool2d(3, 2, padding=1))
        return nn.Sequential(parts)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward_features(x))


# -- the registered models: each paper's architecture table as data ---------------------------
RESNET = dict(family="resnet", paper="Deep Residual Learning for Image Recognition", year=2015,
              arxiv="1512.03385", idea="residual blocks learn F(x) added to an identity shortcut")
RESNEXT = dict(family="resnext", paper="Aggregated Residual Transformations for Deep Neural Networks",
               year=2017, arxiv="1611.05431",
               idea="cardinality: many parallel bottleneck paths as one grouped convolution")
SENET = dict(family="senet", paper="Squeeze-and-Excitation Networks", year=2018, arxiv="1709.01507",
             idea="squeeze (global pool) and excite (FC-ReLU-FC-sigmoid) to rescale channels")
PREACT = dict(family="preact_resnet", paper="Identity Mappings in Deep Residual Networks", year=2016,
              arxiv="1603.05027", idea="full pre-activation (BN-ReLU before each conv) keeps a clean identity path")

V15 = ("torchvision layout: the stride sits on the 3x3 convolution (ResNet v1.5), which its "
       "published weights need; stride_in_1x1=True gives the paper's placement, in the first 1x1")
CAFFE = ("timm legacy_se* layout (the SENet authors' Caffe models): max-pool with ceil_mode and "
         "no padding; SE reduction 16 without rounding")
TV_KEYS, TIMM_SE_KEYS, TIMM_V2_KEYS = ("torchvision_resnet",), ("timm_legacy_senet",), ("timm_resnetv2",)

# name: (block, blocks per stage, cardinality, width per group, params, MACs at 224, reference)
POST_ACTIVATION = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), 1, 64, 11_689_512, 1_814_073_344, "torchvision resnet18"),
    "resnet34": (BasicBlock, (3, 4, 6, 3), 1, 64, 21_797_672, 3_663_761_408, "torchvision resnet34"),
    "resnet50": (Bottleneck, (3, 4, 6, 3), 1, 64, 25_557_032, 4_089_184_256, "torchvision resnet50"),
    "resnet101": (Bottleneck, (3, 4, 23, 3), 1, 64, 44_549_160, 7_801_405_440, "torchvision resnet101"),
    "resnet152": (Bottleneck, (3, 8, 36, 3), 1, 64, 60_192_808, 11_513_626_624, "torchvision resnet152"),
    "resnext50_32x4d": (Bottleneck, (3, 4, 6, 3), 32, 4, 25_028_904, 4_230_479_872,
                        "torchvision resnext50_32x4d"),
    "resnext101_32x4d": (Bottleneck, (3, 4, 23, 3), 32, 4, 44_177_704, 7_969_996_800,
                         "timm resnext101_32x4d"),
    "resnext101_32x8d": (Bottleneck, (3, 4, 23, 3), 32, 8, 88_791_336, 16_414_015_488,
                         "torchvision resnext101_32x8d"),
    "resnext101_64x4d": (Bottleneck, (3, 4, 23, 3), 64, 4, 83_455_272, 15_460_270_080,
                         "torchvision resnext101_64x4d"),
}
for _name, (_block, _layers, _groups, _width, _params, _macs, _ref) in POST_ACTIVATION.items():
    _paper = RESNET if _groups == 1 else RESNEXT
    register(_name, **_paper, input_size=224, params=_params, macs=_macs, reference=_ref,
             layouts=TV_KEYS, notes=V15)(
        partial(ResNet, _block, _layers, groups=_groups, width_per_group=_width))

# SE-ResNet keeps the paper's stride in the first 1x1; SE-ResNeXt strides the grouped 3x3.
SQUEEZE_EXCITATION = {
    "se_resnet50": ((3, 4, 6, 3), 1, 64, True, 28_088_024, 3_860_488_192, "legacy_seresnet50"),
    "se_resnet101": ((3, 4, 23, 3), 1, 64, True, 49_326_872, 7_574_937_600, "legacy_seresnet101"),
    "se_resnet152": ((3, 8, 36, 3), 1, 64, True, 66_821_848, 11_288_993_792, "legacy_seresnet152"),
    "se_resnext50_32x4d": ((3, 4, 6, 3), 32, 4, False, 27_559_896, 4_232_994_816,
                           "legacy_seresnext50_32x4d"),
    "se_resnext101_32x4d": ((3, 4, 23, 3), 32, 4, False, 48_955_416, 7_974_739_968,
                            "legacy_seresnext101_32x4d"),
}
for _name, (_layers, _groups, _width, _in_1x1, _params, _macs, _ref) in SQUEEZE_EXCITATION.items():
    register(_name, **SENET, input_size=224, params=_params, macs=_macs, reference=f"timm {_ref}",
             layouts=TIMM_SE_KEYS, notes=CAFFE)(
        partial(ResNet, Bottleneck, _layers, groups=_groups, width_per_group=_width, se_reduction=16,
                stride_in_1x1=_in_1x1, pool_ceil_mode=True))

# SENet-154 (the paper's appendix): 64 groups of width 4, the first 1x1 halved, a deep 3x3 stem,
# 3x3 stride-2 projections and dropout 0.2 before the classifier.
register("senet154", **SENET, input_size=224, params=115_088_984, macs=20_688_363_520,
         reference="timm legacy_senet154", layouts=TIMM_SE_KEYS, notes=CAFFE)(
    partial(ResNet, Bottleneck, (3, 8, 36, 3), groups=64, width_per_group=4, first_1x1_ratio=0.5,
            se_reduction=16, stem="deep", stem_width=128, pool_ceil_mode=True, downsample_kernel=3,
            drop_rate=0.2))

PREACT_IMAGENET = {
    "preact_resnet18": (PreActBasicBlock, (2, 2, 2, 2), 11_687_720, 1_814_073_344, "resnetv2_18"),
    "preact_resnet34": (PreActBasicBlock, (3, 4, 6, 3), 21_795_880, 3_663_761_408, "resnetv2_34"),
    "preact_resnet50": (PreActBottleneck, (3, 4, 6, 3), 25_549_352, 4_089_184_256, "resnetv2_50"),
    "preact_resnet101": (PreActBottleneck, (3, 4, 23, 3), 44_541_480, 7_801_405_440, "resnetv2_101"),
    "preact_resnet152": (PreActBottleneck, (3, 8, 36, 3), 60_185_128, 11_513_626_624, "resnetv2_152"),
}
for _name, (_block, _layers, _params, _macs, _ref) in PREACT_IMAGENET.items():
    register(_name, **PREACT, input_size=224, params=_params, macs=_macs, reference=f"timm {_ref}",
             layouts=TIMM_V2_KEYS,
             notes="timm resnetv2 layout: the stride sits on the 3x3 (the authors' code strides the "
                   "first 1x1: stride_in_1x1=True) and the stem has no BN, the first unit "
                   "pre-activating instead")(
        partial(ResNet, _block, _layers, preact=True))

# The paper's CIFAR networks (Table 1-2): a 16-filter 3x3 stem and three stages of widths
# 16, 32, 64 (x4 out of a bottleneck), 10 classes, 32x32 inputs.  The paper rounds its
# parameter counts to 0.1M: ResNet-110 1.7M, ResNet-164 1.7M, ResNet-1001 10.2M.  Its appendix
# keeps the original CIFAR ResNet's parameter-free shortcuts (option A) for the basic-block
# ResNet-110 and projects "for the bottleneck ResNets"; row: (block, blocks per stage, params,
# shortcut where the shape changes).
PREACT_CIFAR = {
    "preact_resnet110": (PreActBasicBlock, 18, 1_700_000, "zero_pad"),
    "preact_resnet164": (PreActBottleneck, 18, 1_700_000, "projection"),
    "preact_resnet1001": (PreActBottleneck, 111, 10_200_000, "projection"),
}
for _name, (_block, _depth, _params, _shortcut) in PREACT_CIFAR.items():
    register(_name, **PREACT, input_size=32, params=_params, macs=None, params_tolerance=0.03,
             reference="paper, Table 1-2 (rounded to 0.1M; no MACs given)",
             notes=("shortcuts are the ResNet paper's option A (a stride-2 subsample with zero channels added), "
                    "as the paper's appendix keeps for the basic-block net" if _shortcut == "zero_pad" else
                    "projection shortcuts are 1x1 convolutions of the pre-activation and the stride sits in the "
                    "first 1x1, as in the authors' resnet-pre-act.lua") +
                   "; the first unit's two paths both read conv1's BN-ReLU (the appendix); " +
                   ("the paper's He initialisation of every residual branch would overflow here before training "
                    "(eval mode: BN's fresh statistics normalise nothing over 333 units, and the logits are NaN), "
                    "so each branch's last convolution starts at zero (zero_init_last=False gives the paper's)"
                    if _depth > 100 else "the paper's He initialisation, every residual branch included "
                    "(zero_init_last=True starts them at zero)"))(
        partial(ResNet, _block, (_depth,) * 3, widths=(16, 32, 64), stem_width=16, preact=True,
                stride_in_1x1=True, small_input=True, num_classes=10, shortcut=_shortcut, activate_conv1=True,
                zero_init_last=_depth > 100))
