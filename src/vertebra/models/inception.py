"""The Inception line, v1 and v2 (v3 is in inception_v3.py).

GoogLeNet / Inception v1: Szegedy et al., "Going Deeper with Convolutions", 2015, arXiv:1409.4842.
    The Inception module runs 1x1, 3x3 and 5x5 convolutions and a pooling side by side and
    concatenates them; 1x1 reductions in front keep the cost flat while the net grows deep and wide.
BN-Inception / Inception v2: Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network
Training by Reducing Internal Covariate Shift", 2015, arXiv:1502.03167.
    Every convolution is batch-normalised; each 5x5 becomes two stacked 3x3 convolutions.

Auxiliary classifiers (GoogLeNet, Inception v3) add their losses in training only: in training
mode ``forward`` returns a named tuple, the logits first, and ``auxiliary_loss`` weighs it.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo
from ..layers import ConvNormAct
from ..registry import register

ReLU = partial(nn.ReLU, inplace=True)


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux_logits1: torch.Tensor  # after inception (4a)
    aux_logits2: torch.Tensor  # after inception (4d)


class InceptionOutputs(NamedTuple):
    logits: torch.Tensor
    aux_logits: torch.Tensor  # after the last 17x17 module


# GoogLeNet Sec. 5: the auxiliary losses are "weighted by 0.3".  Inception v3's paper gives no
# weight; its reference training (TF-slim's train_image_classifier.py) uses 0.4.
AUX_WEIGHTS = {GoogLeNetOutputs: 0.3, InceptionOutputs: 0.4}


def auxiliary_loss(output, target: torch.Tensor, criterion: Callable) -> torch.Tensor:
    """``criterion`` on the logits plus the papers' weight times it on each auxiliary output.
    A plain tensor (eval mode, or ``aux_logits=False``) gives ``criterion(output, target)``."""
    if not isinstance(output, tuple):
        return criterion(output, target)
    logits, *aux = output
    return criterion(logits, target) + AUX_WEIGHTS[type(output)] * sum(criterion(a, target) for a in aux)


class TransformInput(nn.Module):
    """torchvision's ``transform_input``: inputs normalised with ImageNet's mean and std are
    re-normalised to [-1, 1] scaling, which the Google-trained weights expect."""

    def __init__(self):
        super().__init__()
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        self.register_buffer("scale", (std / 0.5).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((mean - 0.5) / 0.5).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class InceptionNet(Backbone):
    """A Backbone whose auxiliary classifiers read the outputs of named blocks in training mode.

    ``aux_taps`` maps a block's name in its stage to the attribute holding its auxiliary head.
    """

    aux_taps: dict[str, str] = {}
    outputs = GoogLeNetOutputs

    def returns_aux(self) -> bool:
        return self.training and self.aux_logits and self.out_indices is None and self.num_classes > 0

    def forward(self, x: torch.Tensor):
        if not self.returns_aux():
            return super().forward(x)
        self.check_input(x)
        x, aux = self.stem(x), []
        for stage in self.stages:
            for name, block in stage.named_children():
                x = block(x)
                if name in self.aux_taps:
                    aux.append(getattr(self, self.aux_taps[name])(x))
        return self.outputs(self.forward_head(x), *aux)

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        for head in self.aux_taps.values():
            if self.aux_logits:
                getattr(self, head).reset(num_classes)

    def input_stem(self, transform_input: bool) -> OrderedDict:
        """The start of the stem: torchvision's input transform where asked for."""
        if transform_input and self.in_chans != 3:
            raise ValueError(f"transform_input re-normalises RGB inputs, got in_chans={self.in_chans}")
        return OrderedDict(transform=TransformInput()) if transform_input else OrderedDict()


class InceptionRow(NamedTuple):
    """One row of GoogLeNet's Table 1 (BN-Inception's Figure 5 adds the pool type and stride)."""

    n1x1: int  # 0: no 1x1 branch (BN-Inception's stride-2 modules)
    n3x3_reduce: int
    n3x3: int
    n5x5_reduce: int  # "double #3x3 reduce" in BN-Inception
    n5x5: int
    pool_proj: int  # 0: the pooled input passes through unprojected
    pool: str = "max"
    stride: int = 1


class InceptionModule(nn.Module):
    """1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5; 3x3 pool -> 1x1 projection; concatenated.

    ``five`` says what fills the 5x5 branch: "5x5" (the paper), "3x3" (torchvision's GoogLeNet,
    whose published weights have a 3x3 there) or "double3x3" (BN-Inception: two stacked 3x3).
    A stride-2 module pads its max-pool by one, so that it matches its stride-2 convolutions at
    every size; ``ceil_pool`` pools as Caffe does instead (no padding, ceil mode).
    """

    def __init__(self, in_chs: int, row: InceptionRow, conv: Callable, five: str = "5x5", ceil_pool: bool = False):
        super().__init__()
        stride = row.stride
        self.branch1x1 = conv(in_chs, row.n1x1, 1) if row.n1x1 else None
        self.branch3x3 = nn.Sequential(conv(in_chs, row.n3x3_reduce, 1),
                                       conv(row.n3x3_reduce, row.n3x3, 3, stride))
        if five == "double3x3":
            self.branch5x5 = nn.Sequential(conv(in_chs, row.n5x5_reduce, 1), conv(row.n5x5_reduce, row.n5x5, 3),
                                           conv(row.n5x5, row.n5x5, 3, stride))
        else:
            self.branch5x5 = nn.Sequential(conv(in_chs, row.n5x5_reduce, 1),
                                           conv(row.n5x5_reduce, row.n5x5, 5 if five == "5x5" else 3, stride))
        if row.pool == "avg":
            pool = nn.AvgPool2d(3, stride, padding=1)
        elif stride == 1 or not ceil_pool:
            pool = nn.MaxPool2d(3, stride, padding=1, ceil_mode=stride == 1)
        else:  # Caffe's stride-2 pool: no padding, the last window rounded up
            pool = nn.MaxPool2d(3, stride, ceil_mode=True)
        self.branch_pool = nn.Sequential(pool, *([conv(in_chs, row.pool_proj, 1)] if row.pool_proj else []))
        self.out_chs = row.n1x1 + row.n3x3 + row.n5x5 + (row.pool_proj or in_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1x1] if self.branch1x1 is not None else []
        return torch.cat([b(x) for b in (*branches, self.branch3x3, self.branch5x5, self.branch_pool)], 1)


def separable_conv1(in_chans: int, conv: Callable) -> nn.Sequential:
    """Table 1's conv1 (2.7K parameters, 34M multiply-adds at 224): a 7x7/2 depthwise convolution
    with depth multiplier 8, then a 1x1 convolution to 64 maps; BN-Inception's "convolution*"."""
    return nn.Sequential(OrderedDict(dw=nn.Conv2d(in_chans, 8 * in_chans, 7, 2, 3, groups=in_chans, bias=False),
                                     pw=conv(8 * in_chans, 64, 1)))


class AuxClassifier(nn.Module):
    """GoogLeNet Sec. 5: average pool to 4x4, 1x1 conv (128), FC-1024, dropout 0.7, linear.

    ``paper_pool``: the paper's 5x5 stride-3 average pool, which makes 4x4 of the 14x14 maps of a
    224 input (windows of 5 at 0, 3, 6, 9); a larger map is pooled so too and then adaptively to
    4x4, a smaller one adaptively only.  Otherwise the pool is adaptive at every size
    (torchvision's: windows of 4 at 0, 3, 7, 10 on a 14x14 map).
    """

    def __init__(self, in_chs: int, num_classes: int, conv: Callable, paper_pool: bool = False):
        super().__init__()
        self.paper_pool = paper_pool
        self.conv = conv(in_chs, 128, 1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.drop = nn.Dropout(0.7)
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        self.fc2 = nn.Linear(1024, num_classes, device=self.fc1.weight.device) if num_classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.paper_pool and min(x.shape[-2:]) >= 14:
            x = F.avg_pool2d(x, 5, 3)
        x = self.conv(F.adaptive_avg_pool2d(x, 4)).flatten(1)
        return self.fc2(self.drop(F.relu(self.fc1(x), inplace=True)))


class GoogLeNet(InceptionNet):
    """Stem (7x7/2 conv, max-pool), stage 0 (1x1 then 3x3 conv), three stages of Inception modules.

    ``stages`` lists each stage's blocks: "pool" is a 3x3 stride-2 max-pool (``last_pool`` sets the
    last one's size), any other name a row of ``rows``.  ``lrn`` adds the paper's local response
    normalisation after the stem and stage 0.  ``stem="separable"``: the papers' conv1, a 7x7
    depthwise convolution with depth multiplier 8 and a 1x1 (``separable_conv1``); "dense": the
    released Caffe models' full 7x7.  ``small_input`` makes conv1 a dense 3x3 stride 1 and drops
    the stem's pool, so a 32x32 input reaches the last stage at 4x4.
    """

    aux_loss_weight = AUX_WEIGHTS[GoogLeNetOutputs]  # the training engine's weight per auxiliary loss

    aux_taps = {"inception4a": "aux1", "inception4d": "aux2"}
    head_modules = ("aux1", "aux2", "head")
    classifier = ("head.fc", "aux1.fc2", "aux2.fc2")  # re-initialised for another num_classes

    def __init__(self, rows: dict, stages: tuple, conv: Callable, *, stem: str = "separable", five: str = "5x5",
                 lrn: bool = False, last_pool: int = 3, aux_logits: bool = True, aux_pool: str = "paper",
                 ceil_pool: bool = False, transform_input: bool = False, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.4,
                 small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        if stem not in ("separable", "dense"):
            raise ValueError(f"stem must be 'separable' (the paper's conv1) or 'dense' (the Caffe model's), "
                             f"got {stem!r}")
        self.aux_logits = aux_logits and num_classes > 0
        self.aux1 = self.aux2 = None
        separable = stem == "separable" and not small_input
        layers = self.input_stem(transform_input)
        layers["conv1"] = (conv(in_chans, 64, 3) if small_input else
                           separable_conv1(in_chans, conv) if separable else conv(in_chans, 64, 7, 2))
        if not small_input:
            layers["pool1"] = nn.MaxPool2d(3, 2, ceil_mode=True)
        stage0 = OrderedDict(conv2=conv(64, 64, 1), conv3=conv(64, 192, 3))
        if lrn:  # Figure 3: LocalRespNorm after the first pool and after conv3 (Caffe's n=5, alpha, beta)
            layers["lrn1"] = nn.LocalResponseNorm(5, 1e-4, 0.75)
            stage0["lrn2"] = nn.LocalResponseNorm(5, 1e-4, 0.75)
        self.stem = nn.Sequential(layers)
        reduction, in_chs, built = 1 if small_input else 4, 192, [nn.Sequential(stage0)]
        self.feature_info.append(FeatureInfo(192, reduction, "stages.0"))
        for index, names in enumerate(stages, start=1):
            blocks = OrderedDict()
            for name in names:
                if name == "pool":
                    size = last_pool if index == len(stages) else 3
                    blocks[f"pool{index + 1}"] = nn.MaxPool2d(size, 2, ceil_mode=True)
                    reduction *= 2
                else:
                    blocks[f"inception{name}"] = module = InceptionModule(in_chs, rows[name], conv, five, ceil_pool)
                    reduction, in_chs = reduction * rows[name].stride, module.out_chs
                if self.aux_logits and f"inception{name}" in self.aux_taps:
                    setattr(self, self.aux_taps[f"inception{name}"],
                            AuxClassifier(in_chs, num_classes, conv, paper_pool=aux_pool == "paper"))
            built.append(nn.Sequential(blocks))
            self.feature_info.append(FeatureInfo(in_chs, reduction, f"stages.{index}"))
        self.stages = nn.Sequential(*built)
        self.num_features = in_chs
        self.head = ClassifierHead(in_chs, num_classes, drop_rate)
        self.first_conv = "stem.conv1.dw" if separable else "stem.conv1.conv"
        self.min_input_size = reduction if small_input else 32
        self.default_input_size = 32 if small_input else 224
        self.init_weights()


# GoogLeNet Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
GOOGLENET = {
    "3a": InceptionRow(64, 96, 128, 16, 32, 32),
    "3b": InceptionRow(128, 128, 192, 32, 96, 64),
    "4a": InceptionRow(192, 96, 208, 16, 48, 64),
    "4b": InceptionRow(160, 112, 224, 24, 64, 64),
    "4c": InceptionRow(128, 128, 256, 24, 64, 64),
    "4d": InceptionRow(112, 144, 288, 32, 64, 64),
    "4e": InceptionRow(256, 160, 320, 32, 128, 128),
    "5a": InceptionRow(256, 160, 320, 32, 128, 128),
    "5b": InceptionRow(384, 192, 384, 48, 128, 128),
}
GOOGLENET_STAGES = (("pool", "3a", "3b"), ("pool", "4a", "4b", "4c", "4d", "4e"), ("pool", "5a", "5b"))

# BN-Inception Figure 5: #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool + proj,
# and the stride of the modules that halve the grid (their pool passes through, unprojected).
BN_INCEPTION = {
    "3a": InceptionRow(64, 64, 64, 64, 96, 32, "avg"),
    "3b": InceptionRow(64, 64, 96, 64, 96, 64, "avg"),
    "3c": InceptionRow(0, 128, 160, 64, 96, 0, "max", 2),
    "4a": InceptionRow(224, 64, 96, 96, 128, 128, "avg"),
    "4b": InceptionRow(192, 96, 128, 96, 128, 128, "avg"),
    "4c": InceptionRow(160, 128, 160, 128, 160, 128, "avg"),
    "4d": InceptionRow(96, 128, 192, 160, 192, 128, "avg"),
    "4e": InceptionRow(0, 128, 192, 192, 256, 0, "max", 2),
    "5a": InceptionRow(352, 192, 320, 160, 224, 128, "avg"),
    "5b": InceptionRow(352, 192, 320, 192, 224, 128, "max"),
}
BN_INCEPTION_STAGES = (("pool", "3a", "3b"), ("3c", "4a", "4b", "4c", "4d"), ("4e", "5a", "5b"))

PAPER_CONV = partial(ConvNormAct, norm=None, act=ReLU)  # the paper predates BatchNorm: conv + bias, ReLU
TV_CONV = partial(ConvNormAct, norm=partial(nn.BatchNorm2d, eps=1e-3), act=ReLU)
# Sec. 3.2: the bias before BN is cancelled by the mean subtraction, so the convolutions have none.
BN_CONV = partial(ConvNormAct, act=ReLU)

V1 = dict(family="inception", paper="Going Deeper with Convolutions", year=2015, arxiv="1409.4842",
          idea="Inception modules: parallel 1x1, 3x3, 5x5 and pool branches behind 1x1 reductions")
SMALL = ("small_input: conv1 becomes 3x3 stride 1 and the stem's max-pool goes (stages at strides "
         "1, 2, 4, 8)")
AUX = ("auxiliary heads after 4a and 4d (aux_logits=False removes them): the paper's 5x5/3 average pool "
       "on maps of 14x14 or more, then an adaptive pool to 4x4, so they run at any input size")


# Table 1 counts parameters in K = 1024 and operations in M = 10^6, biases left out.  Its
# 1,502M operations are the paper's total; these filters give 1,498.7M: every row within the
# table's rounding but 5a, printed 54M and 1072K where its own filter counts give 51.1M and
# 1018K (1,042,432 weights on a 7x7 map).  Its 6,797.7K weights are 6,960,845; the filters give
# 6,983,576 (+0.3%: the rows for 4a-4e and 5b print 1-7% fewer than their filters give).  The
# card's parameters add the biases (8,280) and the two auxiliary heads of Sec. 5 (6,379,728).
@register("googlenet", **V1, input_size=224, params=13_340_573, macs=1_502_000_000, params_tolerance=0.01,
          reference="paper, Table 1 (6,797.7K weights, K = 1024; 1,502M multiply-adds, M = 10^6) and the "
                    "auxiliary heads of Sec. 5",
          notes="the paper's network: conv1 a 7x7/2 separable convolution with depth multiplier 8 (Table 1's "
                "2.7K weights and 34M operations; stem='dense' gives the released Caffe model's full 7x7: "
                "9,408 weights, 118M), true 5x5 branches, no BatchNorm, LRN, a 3x3/2 pool before 5a, dropout "
                "0.4; 1,498.7M multiply-adds, 0.2% under Table 1's total, all of it row 5a, which the table "
                "prints as 54M where its filters give 51.1M; 6,983,576 weights against the table's 6,797.7K "
                "(+0.3%), 6,991,856 parameters without the auxiliary heads, 13,371,584 with them; " + AUX +
                "; " + SMALL)
def googlenet(*, stem: str = "separable", aux_logits: bool = True, lrn: bool = True, num_classes: int = 1000,
              in_chans: int = 3, drop_rate: float = 0.4, small_input: bool = False) -> GoogLeNet:
    return GoogLeNet(GOOGLENET, GOOGLENET_STAGES, PAPER_CONV, stem=stem, five="5x5", lrn=lrn, aux_logits=aux_logits,
                     num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, small_input=small_input)


@register("googlenet_tv", **V1, input_size=224, params=13_004_888, macs=1_498_376_192,
          reference="torchvision googlenet",
          reference_kwargs={"aux_logits": True, "transform_input": False, "init_weights": False},
          layouts=("torchvision_googlenet",),
          notes="torchvision layout: BN (eps 1e-3) after every convolution, a 3x3 where the paper has 5x5, "
                "a 2x2/2 pool before 5a, no LRN, dropout 0.2; 6,624,904 parameters without the auxiliary "
                "heads; its published weights expect transform_input=True; conv1 is a full 7x7; the auxiliary "
                "heads pool adaptively to 4x4 at every size. " + SMALL)
def googlenet_tv(*, aux_logits: bool = True, transform_input: bool = False, num_classes: int = 1000,
                 in_chans: int = 3, drop_rate: float = 0.2, small_input: bool = False) -> GoogLeNet:
    return GoogLeNet(GOOGLENET, GOOGLENET_STAGES, TV_CONV, stem="dense", five="3x3", last_pool=2,
                     aux_logits=aux_logits, aux_pool="adaptive", transform_input=transform_input,
                     num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, small_input=small_input)


BN = dict(family="inception",
          paper="Batch Normalization: Accelerating Deep Network Training by Reducing Internal Covariate Shift",
          year=2015, arxiv="1502.03167", idea="BatchNorm after every convolution; each 5x5 becomes two 3x3")


# Sec. 4.2 says the network "contains 13.6*10^6 parameters"; Figure 5's filters give 11,278,528
# (11,245,568 weights, 1,024,000 of them the classifier's, and 32,960 BatchNorm scales and
# shifts).  No reading of Figure 5 reaches 13.6M: a dense 7x7 conv1 gives 11,285,224, true 5x5
# branches 12,231,744, and one or two GoogLeNet-style auxiliary heads 14.5M or 17.7M (the
# paper says there is no fully connected layer but the classifier).
@register("bn_inception", **BN, input_size=224, params=11_278_528, macs=None,
          reference="paper, Figure 5 (the module table; parameters counted from it, no MACs given)",
          notes="conv1 is the appendix's 7x7/2 separable convolution with depth multiplier 8 (2,712 weights; "
                "stem='dense' gives the Caffe model's 9,408); 11,278,528 parameters, 17% under the 13.6*10^6 "
                "of Sec. 4.2, a gap Figure 5 does not explain (a dense conv1 gives 11,285,224, true 5x5 "
                "branches 12,231,744); 1,948.6M multiply-adds at 224; no auxiliary heads and no dropout "
                "(Sec. 4.2.1 removes it); convolutions have no bias (Sec. 3.2); the stride-2 modules pad their "
                "pool by 1 so it matches their stride-2 convolutions at every size. " + SMALL)
def bn_inception(*, stem: str = "separable", num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                 small_input: bool = False) -> GoogLeNet:
    return GoogLeNet(BN_INCEPTION, BN_INCEPTION_STAGES, BN_CONV, stem=stem, five="double3x3", aux_logits=False,
                     num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, small_input=small_input)


@register("bn_inception_caffe", **BN, input_size=224, params=11_295_240, macs=2_032_600_064,
          reference="pretrainedmodels bninception", layouts=("pretrainedmodels_bninception",),
          notes="the released Caffe model's layout, as the pretrainedmodels package ports it: a dense 7x7 conv1, "
                "a bias on every convolution, stride-2 modules pooled Caffe's way (3x3/2, ceil mode, no "
                "padding); its weights expect BGR images in 0-255 less the mean (104, 117, 128). " + SMALL)
def bn_inception_caffe(*, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0,
                       small_input: bool = False) -> GoogLeNet:
    return GoogLeNet(BN_INCEPTION, BN_INCEPTION_STAGES, partial(BN_CONV, bias=True), stem="dense", five="double3x3",
                     aux_logits=False, ceil_pool=True, num_classes=num_classes, in_chans=in_chans,
                     drop_rate=drop_rate, small_input=small_input)
