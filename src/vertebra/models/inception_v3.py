"""Inception v3: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", 2016,
arXiv:1512.00567.

Factorise convolutions: a 5x5 into two 3x3, an n x n into 1 x n then n x 1; shrink the grid with
modules that pool and convolve with stride 2 side by side, so no representational bottleneck forms.

The modules are named as in the v4 paper (torchvision's letters in brackets): InceptionA (A,
Figure 5, 35x35), ReductionA (B, Figure 10, 35 -> 17), InceptionB (C, Figure 6, 17x17),
ReductionB (D, 17 -> 8), InceptionC (E, Figure 7, 8x8).
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import ClassifierHead, FeatureInfo
from ..layers import ConvNormAct
from ..registry import register
from .inception import AUX_WEIGHTS, InceptionNet, InceptionOutputs

ReLU = partial(nn.ReLU, inplace=True)
BatchNorm = partial(nn.BatchNorm2d, eps=1e-3)  # the TensorFlow model's epsilon


def conv(in_chs: int, out_chs: int, kernel, stride: int = 1, padding=0) -> ConvNormAct:
    """Convolution, BN, ReLU; unpadded unless asked, as in the TensorFlow model."""
    return ConvNormAct(in_chs, out_chs, kernel, stride, padding, norm=BatchNorm, act=ReLU)


def conv1xn(in_chs: int, out_chs: int, n: int) -> ConvNormAct:
    return conv(in_chs, out_chs, (1, n), padding=(0, n // 2))


def convnx1(in_chs: int, out_chs: int, n: int) -> ConvNormAct:
    return conv(in_chs, out_chs, (n, 1), padding=(n // 2, 0))


def chain(x: torch.Tensor, *layers: nn.Module) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


class InceptionA(nn.Module):
    """35x35: 1x1; 5x5; 3x3 twice (the paper's factorised 5x5); avg-pool -> 1x1.  The released
    model keeps a 5x5 branch beside the double 3x3, and torchvision's weights need it."""

    def __init__(self, in_chs: int, pool_features: int):
        super().__init__()
        self.branch1x1 = conv(in_chs, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = conv(in_chs, 48, 1), conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = conv(in_chs, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = conv(64, 96, 3, padding=1), conv(96, 96, 3, padding=1)
        self.branch_pool = conv(in_chs, pool_features, 1)
        self.out_chs = 64 + 64 + 96 + pool_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), chain(x, self.branch5x5_1, self.branch5x5_2),
                          chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class ReductionA(nn.Module):
    """35 -> 17 (Figure 10): stride-2 3x3, 1x1 -> 3x3 -> stride-2 3x3, and a stride-2 max-pool in
    parallel, so the grid halves while the width grows.  ``pad=1`` halves even sizes exactly."""

    halves = True

    def __init__(self, in_chs: int, pad: int = 0):
        super().__init__()
        self.pad = pad
        self.branch3x3 = conv(in_chs, 384, 3, 2, pad)
        self.branch3x3dbl_1 = conv(in_chs, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = conv(64, 96, 3, padding=1), conv(96, 96, 3, 2, pad)
        self.out_chs = 384 + 96 + in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x),
                          chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                          F.max_pool2d(x, 3, 2, self.pad)], 1)


class InceptionB(nn.Module):
    """17x17 (Figure 6, n = 7): 1x1; 1x7 -> 7x1; (7x1 -> 1x7) twice; avg-pool -> 1x1."""

    def __init__(self, in_chs: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = conv(in_chs, 192, 1)
        self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = conv(in_chs, c7, 1), conv1xn(c7, c7, 7), convnx1(c7, 192, 7)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = conv(in_chs, c7, 1), convnx1(c7, c7, 7)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = conv1xn(c7, c7, 7), convnx1(c7, c7, 7)
        self.branch7x7dbl_5 = conv1xn(c7, 192, 7)
        self.branch_pool = conv(in_chs, 192, 1)
        self.out_chs = 4 * 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
                          chain(x, self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                                self.branch7x7dbl_4, self.branch7x7dbl_5),
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class ReductionB(nn.Module):
    """17 -> 8: 1x1 -> stride-2 3x3; 1x1 -> 1x7 -> 7x1 -> stride-2 3x3; stride-2 max-pool."""

    halves = True

    def __init__(self, in_chs: int, pad: int = 0):
        super().__init__()
        self.pad = pad
        self.branch3x3_1, self.branch3x3_2 = conv(in_chs, 192, 1), conv(192, 320, 3, 2, pad)
        self.branch7x7x3_1, self.branch7x7x3_2 = conv(in_chs, 192, 1), conv1xn(192, 192, 7)
        self.branch7x7x3_3, self.branch7x7x3_4 = convnx1(192, 192, 7), conv(192, 192, 3, 2, pad)
        self.out_chs = 320 + 192 + in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([chain(x, self.branch3x3_1, self.branch3x3_2),
                          chain(x, self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4),
                          F.max_pool2d(x, 3, 2, self.pad)], 1)


class InceptionC(nn.Module):
    """8x8 (Figure 7): the filter bank widened, each 3x3 split into 1x3 and 3x1 side by side."""

    def __init__(self, in_chs: int):
        super().__init__()
        self.branch1x1 = conv(in_chs, 320, 1)
        self.branch3x3_1 = conv(in_chs, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = conv1xn(384, 384, 3), convnx1(384, 384, 3)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = conv(in_chs, 448, 1), conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = conv1xn(384, 384, 3), convnx1(384, 384, 3)
        self.branch_pool = conv(in_chs, 192, 1)
        self.out_chs = 320 + 768 + 768 + 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class AuxHead(nn.Module):
    """On the last 17x17 map: 5x5/3 average pool, 1x1 conv (128), 5x5 conv (768), linear.

    Below 17x17 (small inputs) the 5x5/3 pool would leave the 5x5 convolution nothing to read,
    so there the map is average-pooled to 5x5 adaptively instead.
    """

    def __init__(self, in_chs: int, num_classes: int):
        super().__init__()
        self.conv0, self.conv1 = conv(in_chs, 128, 1), conv(128, 768, 5)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(768, num_classes, device=self.conv1.conv.weight.device) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 5, 3) if min(x.shape[-2:]) >= 17 else F.adaptive_avg_pool2d(x, 5)
        x = self.conv1(self.conv0(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


# Table 1 of the paper as torchvision builds it: the modules of each stage after the stem, with
# their pool-projection width (35x35) or 7x7 width (17x17).
MIXED = (
    (("5b", InceptionA, 32), ("5c", InceptionA, 64), ("5d", InceptionA, 64)),
    (("6a", ReductionA, None), ("6b", InceptionB, 128), ("6c", InceptionB, 160), ("6d", InceptionB, 160),
     ("6e", InceptionB, 192)),
    (("7a", ReductionB, None), ("7b", InceptionC, None), ("7c", InceptionC, None)),
)


class InceptionV3(InceptionNet):
    """Stem to 35x35 (five convolutions, two max-pools), then the 35, 17 and 8 grids.

    ``small_input`` turns the first convolution into a stride-1 one, drops the first max-pool and
    pads every unpadded 3x3 convolution and pool by 1, so a 32x32 input halves exactly, stage by
    stage, down to 4x4 (strides 1, 2, 4, 8), and the auxiliary head reads an 8x8 map.
    """

    aux_loss_weight = AUX_WEIGHTS[InceptionOutputs]  # the training engine's weight for the aux loss

    aux_taps = {"mixed_6e": "aux"}
    head_modules = ("aux", "head")
    classifier = ("head.fc", "aux.fc")  # re-initialised for another num_classes
    outputs = InceptionOutputs

    def __init__(self, *, aux_logits: bool = True, transform_input: bool = False, num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.5, small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        self.aux_logits = aux_logits and num_classes > 0
        pad = int(small_input)
        stem = self.input_stem(transform_input)
        stem["conv1a"] = conv(in_chans, 32, 3, stride=1 if small_input else 2, padding=pad)
        stem["conv2a"] = conv(32, 32, 3, padding=pad)
        stem["conv2b"] = conv(32, 64, 3, padding=1)
        if not small_input:
            stem["pool1"] = nn.MaxPool2d(3, 2)
        self.stem = nn.Sequential(stem)
        reduction = 1 if small_input else 4
        stages = [nn.Sequential(OrderedDict(conv3b=conv(64, 80, 1), conv4a=conv(80, 192, 3, padding=pad)))]
        self.feature_info.append(FeatureInfo(192, reduction, "stages.0"))
        in_chs = 192
        for index, modules in enumerate(MIXED, start=1):
            blocks = OrderedDict(pool2=nn.MaxPool2d(3, 2, padding=pad)) if index == 1 else OrderedDict()
            for name, module, width in modules:
                # reductions take the padding, the 35x35 and 17x17 modules their width
                args = (pad,) if getattr(module, "halves", False) else (width,) if width else ()
                blocks[f"mixed_{name}"] = block = module(in_chs, *args)
                in_chs = block.out_chs
            stages.append(nn.Sequential(blocks))
            reduction *= 2
            self.feature_info.append(FeatureInfo(in_chs, reduction, f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.aux = AuxHead(768, num_classes) if self.aux_logits else None
        self.num_features = in_chs
        self.head = ClassifierHead(in_chs, num_classes, drop_rate)
        self.first_conv = "stem.conv1a.conv"
        # 75: the smallest input whose last grid is still 1x1 (torchvision's min_size)
        self.min_input_size = reduction if small_input else 75
        self.default_input_size = 32 if small_input else 299
        self.init_weights()


@register("inception_v3", family="inception", paper="Rethinking the Inception Architecture for Computer Vision",
          year=2016, arxiv="1512.00567",
          idea="factorised convolutions (n x n as 1 x n then n x 1) and grid reductions without bottlenecks",
          input_size=299, params=27_161_264, macs=5_713_216_096, reference="torchvision inception_v3",
          reference_kwargs={"aux_logits": True, "transform_input": False, "init_weights": False},
          layouts=("torchvision_inception_v3",),
          notes="torchvision layout (the released TensorFlow model): a 5x5 branch beside the double 3x3 "
                "in the 35x35 modules, BN eps 1e-3; 23,834,568 parameters without the auxiliary head "
                "(aux_logits=False); its published weights expect transform_input=True; auxiliary loss "
                "weight 0.4 (TF-slim). Below a 17x17 map the auxiliary head pools adaptively to 5x5. "
                "small_input: conv1a stride 1, no first max-pool, every unpadded 3x3 convolution and "
                "pool padded by 1 (stages at strides 1, 2, 4, 8)")
def inception_v3(*, aux_logits: bool = True, transform_input: bool = False, num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.5, small_input: bool = False) -> InceptionV3:
    return InceptionV3(aux_logits=aux_logits, transform_input=transform_input, num_classes=num_classes,
                       in_chans=in_chans, drop_rate=drop_rate, small_input=small_input)
