"""Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2.

Szegedy, Ioffe, Vanhoucke and Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual
Connections on Learning", 2017, arXiv:1602.07261.
    A uniform, streamlined Inception net (v4) built from a stem and three kinds of modules on
    35x35, 17x17 and 8x8 grids, and its residual versions: each Inception block's concatenated
    branches go through a linear 1x1 convolution, are scaled down (0.1-0.3) and added to its input.

Every module is written as the paper draws it: a tuple of branches, each branch a list of
convolutions ``Conv(filters, kernel, stride, padding)`` run in sequence.  "valid" marks the
figures' "V" (unpadded) convolutions; a tuple inside a branch is a nested module (Inception-C
splits a branch into parallel 1x3 and 3x1 convolutions).
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import NamedTuple, Union

import torch
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo
from ..layers import ConvNormAct
from ..registry import register

ReLU = partial(nn.ReLU, inplace=True)
BatchNorm = partial(nn.BatchNorm2d, eps=1e-3)  # the TensorFlow models' epsilon
V = "valid"


class Conv(NamedTuple):
    filters: int
    kernel: int | tuple[int, int]
    stride: int = 1
    padding: str = "same"  # "valid": the figures' "V", no padding


class Pool(NamedTuple):
    kind: str  # "max" or "avg", always 3x3
    stride: int = 1
    padding: str = "same"


class Residual(NamedTuple):
    """An Inception-ResNet block: ``branches``, a linear 1x1 back to the input width, x scale, + input."""

    branches: tuple
    scale: float
    activate: bool = True  # ReLU after the sum


Layer = Union[Conv, Pool, Residual, tuple]
MAX_POOL = Pool("max", 2, V)
AVG_POOL = Pool("avg")  # in the modules' pooling branch; the padding is left out of the mean


class Net(NamedTuple):
    stem: tuple[tuple[str, Layer], ...]  # named layers in order
    grids: tuple[tuple[tuple[Layer, int], ...], ...]  # per grid (35, 17, 8): (module, repeats) rows


def build(spec: Layer, in_chs: int, small_input: bool, in_stem: bool) -> tuple[nn.Module, int]:
    """One table entry as a module, and its output width.

    ``small_input`` pads every layer ("same") and, in the stem, makes every stride 1: that keeps
    a 32x32 image whole through the stem and lets the two grid reductions halve it exactly.
    """
    if isinstance(spec, (Conv, Pool)):
        stride = 1 if small_input and in_stem else spec.stride
        pad = small_input or spec.padding == "same"
    if isinstance(spec, Conv):
        kernel = (spec.kernel, spec.kernel) if isinstance(spec.kernel, int) else spec.kernel
        padding = tuple((k - 1) // 2 for k in kernel) if pad else 0
        return ConvNormAct(in_chs, spec.filters, kernel, stride, padding, norm=BatchNorm, act=ReLU), spec.filters
    if isinstance(spec, Pool):
        if spec.kind == "avg":
            return nn.AvgPool2d(3, stride, int(pad), count_include_pad=False), in_chs
        return nn.MaxPool2d(3, stride, int(pad)), in_chs
    if isinstance(spec, Residual):
        return InceptionResNetBlock(spec, in_chs, small_input), in_chs
    module = InceptionModule(spec, in_chs, small_input, in_stem)
    return module, module.out_chs


class InceptionModule(nn.Module):
    """Parallel branches over one input, concatenated along channels (Figures 3-8, 12, 18)."""

    def __init__(self, branches: tuple, in_chs: int, small_input: bool, in_stem: bool = False):
        super().__init__()
        self.out_chs, self.branch_names = 0, []
        for index, branch in enumerate(branches):
            layers, chs = [], in_chs
            for spec in branch:
                layer, chs = build(spec, chs, small_input, in_stem)
                layers.append(layer)
            name = f"branch{index}"
            self.add_module(name, layers[0] if len(layers) == 1 else nn.Sequential(*layers))
            self.branch_names.append(name)
            self.out_chs += chs

    def concat(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, name)(x) for name in self.branch_names], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.concat(x)


class InceptionResNetBlock(InceptionModule):
    """Inception-ResNet-A, -B, -C (Figures 10, 11, 13, 16, 17, 19) with the scaled residual of Fig. 20.

    The 1x1 projection is linear (no BN, no ReLU) so the branches' sum can match the input's
    width; scaling it down keeps very wide residual nets from dying early in training.
    """

    def __init__(self, spec: Residual, in_chs: int, small_input: bool):
        super().__init__(spec.branches, in_chs, small_input)
        self.proj = nn.Conv2d(self.out_chs, in_chs, 1)
        self.scale = spec.scale
        self.act = ReLU() if spec.activate else nn.Identity()
        self.out_chs = in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.scale * self.proj(self.concat(x)))


class InceptionV4(Backbone):
    """A stem down to the 35x35 grid, then one stage per grid (35, 17, 8), pooling and classifier.

    Stage 0 repeats the 35x35 module; stages 1 and 2 open with Reduction-A and Reduction-B.
    The ImageNet stem's valid convolutions need at least 75x75 pixels (299 -> 35x35, 8x8 last).
    ``small_input`` keeps every stem layer but at stride 1 and padded, and pads the reductions,
    so a 32x32 image gives 32, 16 and 8 grids.  ``drop_rate`` defaults to the paper's 0.2
    (dropout keeping 0.8 before the classifier).
    """

    first_conv = "stem.conv2d_1a.conv"

    def __init__(self, net: Net, *, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2,
                 small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        chs, stem = in_chans, OrderedDict()
        for name, spec in net.stem:
            stem[name], chs = build(spec, chs, small_input, in_stem=True)
        self.stem = nn.Sequential(stem)
        reductions = self.stage_reductions(1 if small_input else 8, (1, 2, 2))
        stages = []
        for index, rows in enumerate(net.grids):
            modules = []
            for spec, repeats in rows:
                for _ in range(repeats):
                    module, chs = build(spec, chs, small_input, in_stem=False)
                    modules.append(module)
            stages.append(nn.Sequential(*modules))
            self.feature_info.append(FeatureInfo(chs, reductions[index], f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = chs
        self.head = ClassifierHead(chs, num_classes, drop_rate)
        self.min_input_size = reductions[-1] if small_input else 75
        self.default_input_size = 32 if small_input else 299
        self.init_weights()


def reduction_a(k: int, l: int, m: int, n: int) -> tuple:
    """Fig. 7, 35x35 -> 17x17, with the filter counts k, l, m, n of Table 1."""
    return ([Conv(n, 3, 2, V)], [Conv(k, 1), Conv(l, 3), Conv(m, 3, 2, V)], [MAX_POOL])


# -- Inception-v4: Figures 3-9 ------------------------------------------------------------------
# Where the paper's figures and the published (TensorFlow, hence timm) model disagree on the
# order of a 1x7/7x1 or 1x3/3x1 pair, the table follows the published model: its weights need it.
# Fig. 3 and Fig. 14 open alike: three 3x3 convolutions, the first two valid, the first strided.
STEM_CONVS = (("conv2d_1a", Conv(32, 3, 2, V)), ("conv2d_2a", Conv(32, 3, 1, V)), ("conv2d_2b", Conv(64, 3)))
V4_STEM = STEM_CONVS + (
    ("mixed_3a", ([MAX_POOL], [Conv(96, 3, 2, V)])),
    ("mixed_4a", ([Conv(64, 1), Conv(96, 3, 1, V)],
                  [Conv(64, 1), Conv(64, (1, 7)), Conv(64, (7, 1)), Conv(96, 3, 1, V)])),
    ("mixed_5a", ([Conv(192, 3, 2, V)], [MAX_POOL])),
)
INCEPTION_A = ([Conv(96, 1)], [Conv(64, 1), Conv(96, 3)], [Conv(64, 1), Conv(96, 3), Conv(96, 3)],
               [AVG_POOL, Conv(96, 1)])
INCEPTION_B = ([Conv(384, 1)], [Conv(192, 1), Conv(224, (1, 7)), Conv(256, (7, 1))],
               [Conv(192, 1), Conv(192, (7, 1)), Conv(224, (1, 7)), Conv(224, (7, 1)), Conv(256, (1, 7))],
               [AVG_POOL, Conv(128, 1)])
REDUCTION_B = ([Conv(192, 1), Conv(192, 3, 2, V)],
               [Conv(256, 1), Conv(256, (1, 7)), Conv(320, (7, 1)), Conv(320, 3, 2, V)], [MAX_POOL])
SPLIT = ([Conv(256, (1, 3))], [Conv(256, (3, 1))])  # Inception-C's parallel 1x3 and 3x1
INCEPTION_C = ([Conv(256, 1)], [Conv(384, 1), SPLIT],
               [Conv(384, 1), Conv(448, (3, 1)), Conv(512, (1, 3)), SPLIT], [AVG_POOL, Conv(256, 1)])
INCEPTION_V4 = Net(V4_STEM, (
    ((INCEPTION_A, 4),),
    ((reduction_a(192, 224, 256, 384), 1), (INCEPTION_B, 7)),
    ((REDUCTION_B, 1), (INCEPTION_C, 3)),
))

# -- Inception-ResNet-v1: Figures 10-15, 5 / 10 / 5 blocks --------------------------------------
# The paper gives the scales only as "between 0.1 and 0.3"; these are the published v2 model's.
IR_V1_STEM = STEM_CONVS + (
    ("maxpool_3a", MAX_POOL), ("conv2d_3b", Conv(80, 1)), ("conv2d_4a", Conv(192, 3, 1, V)),
    ("conv2d_4b", Conv(256, 3, 2, V)),
)
IR_A_V1 = Residual(([Conv(32, 1)], [Conv(32, 1), Conv(32, 3)], [Conv(32, 1), Conv(32, 3), Conv(32, 3)]), 0.17)
IR_B_V1 = Residual(([Conv(128, 1)], [Conv(128, 1), Conv(128, (1, 7)), Conv(128, (7, 1))]), 0.10)
IR_C_V1 = Residual(([Conv(192, 1)], [Conv(192, 1), Conv(192, (1, 3)), Conv(192, (3, 1))]), 0.20)
IR_REDUCTION_B_V1 = ([Conv(256, 1), Conv(384, 3, 2, V)], [Conv(256, 1), Conv(256, 3, 2, V)],
                     [Conv(256, 1), Conv(256, 3), Conv(256, 3, 2, V)], [MAX_POOL])
INCEPTION_RESNET_V1 = Net(IR_V1_STEM, (
    ((IR_A_V1, 5),),
    ((reduction_a(192, 192, 256, 384), 1), (IR_B_V1, 10)),
    ((IR_REDUCTION_B_V1, 1), (IR_C_V1, 5)),
))

# -- Inception-ResNet-v2 as published (TensorFlow-Slim, timm): Figures 16-19 ---------------------
# The published stem is Inception-v3's: Fig. 14's, with a max-pool and Mixed_5b after conv2d_4a.
IR_V2_STEM = IR_V1_STEM[:-1] + (
    ("maxpool_5a", MAX_POOL),
    ("mixed_5b", ([Conv(96, 1)], [Conv(48, 1), Conv(64, 5)], [Conv(64, 1), Conv(96, 3), Conv(96, 3)],
                  [AVG_POOL, Conv(64, 1)])),
)
IR_A_V2 = Residual(([Conv(32, 1)], [Conv(32, 1), Conv(32, 3)], [Conv(32, 1), Conv(48, 3), Conv(64, 3)]), 0.17)
IR_B_V2 = Residual(([Conv(192, 1)], [Conv(128, 1), Conv(160, (1, 7)), Conv(192, (7, 1))]), 0.10)
IR_C_V2 = Residual(([Conv(192, 1)], [Conv(192, 1), Conv(224, (1, 3)), Conv(256, (3, 1))]), 0.20)
IR_REDUCTION_B_V2 = ([Conv(256, 1), Conv(384, 3, 2, V)], [Conv(256, 1), Conv(288, 3, 2, V)],
                     [Conv(256, 1), Conv(288, 3), Conv(320, 3, 2, V)], [MAX_POOL])
INCEPTION_RESNET_V2 = Net(IR_V2_STEM, (
    ((IR_A_V2, 10),),
    ((reduction_a(256, 256, 384, 384), 1), (IR_B_V2, 20)),
    # the last block is unscaled and has no ReLU; a 1x1 convolution widens to 1536 before the pool
    ((IR_REDUCTION_B_V2, 1), (IR_C_V2, 9), (IR_C_V2._replace(scale=1.0, activate=False), 1), (Conv(1536, 1), 1)),
))

PAPER = dict(family="inception_v4", year=2017, arxiv="1602.07261",
             paper="Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning")
SMALL = ("small_input=True keeps every stem layer but at stride 1 and 'same'-padded, and pads the "
         "grid reductions, so a 32x32 image gives 32x32, 16x16 and 8x8 grids")
register("inception_v4", **PAPER, idea="a uniform Inception net: stem, Inception-A/B/C blocks, Reduction-A/B",
         input_size=299, params=42_679_816, macs=12_253_974_624, reference="timm inception_v4",
         layouts=("timm_inception_v4",),
         notes="timm (TensorFlow-Slim) layout: BN eps 1e-3; Mixed_4a and Inception-B/C order some 1xn/nx1 "
               "pairs differently from Figures 3, 5, 6; dropout 0.2 by default as in Fig. 9 (timm: 0). "
               + SMALL)(partial(InceptionV4, INCEPTION_V4))
register("inception_resnet_v1", **PAPER, idea="Inception blocks with scaled residual connections, Inception-v3 cost",
         input_size=299, params=22_756_328, macs=None,
         reference="paper, Figures 10-15 (no published parameter count: counted from the figures)",
         notes="no torchvision/timm model and no count in the paper: params is this net's own count from "
               "Figures 10-15 (stem of Fig. 14, 5/10/5 blocks of Fig. 15, Reduction-A with k,l,m,n = "
               "192,192,256,384 of Table 1, 1000-way classifier).  Its trunk (20,963,328 parameters "
               "without the classifier) has layer for layer the shapes of the FaceNet port "
               "(davidsandberg/facenet, timesler/facenet-pytorch), which adds a sixth, unscaled "
               "Inception-ResNet-C block and a face-embedding head.  Residual scales 0.17/0.10/0.20 "
               "(the paper says only 'between 0.1 and 0.3'), as in the published v2. " + SMALL)(
    partial(InceptionV4, INCEPTION_RESNET_V1))
register("inception_resnet_v2", **PAPER, idea="a wider residual Inception net with scaled residuals",
         input_size=299, params=55_843_464, macs=13_155_794_016, reference="timm inception_resnet_v2",
         layouts=("timm_inception_resnet_v2",),
         notes="the published model (TensorFlow-Slim, timm), which differs from Figures 15-19: an "
               "Inception-v3-like stem with Mixed_5b (320 channels, not Fig. 3's 384), 10/20/10 blocks "
               "instead of 5/10/5, block widths 320/1088/2080 instead of 384/1154/2048, the last block "
               "unscaled without ReLU, a 1x1 convolution to 1536 before the pool; BN eps 1e-3; dropout "
               "0.2 by default (timm: 0). " + SMALL)(partial(InceptionV4, INCEPTION_RESNET_V2))
