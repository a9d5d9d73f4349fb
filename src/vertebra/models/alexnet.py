"""AlexNet: Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NeurIPS 2012 (no arXiv version); its single-tower form: Krizhevsky, "One weird trick for
parallelizing convolutional neural networks", 2014, arXiv:1404.5997.

Five convolutions and three fully connected layers trained on two GPUs: ReLU, local response
normalisation, overlapping max-pooling and dropout made a deep net on ImageNet work.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn

from ..backbone import Backbone, FeatureInfo
from ..layers import ConvNormAct, FullyConnectedHead
from ..registry import register

ReLU = partial(nn.ReLU, inplace=True)

# Section 3.5 / Figure 2, one row per convolution: (name, filters, kernel, stride, split over the
# two GPUs).  conv3 reads the maps of both GPUs; conv2, conv4 and conv5 only those of their own.
PAPER = (("conv1", 96, 11, 4, False), ("conv2", 256, 5, 1, True), ("conv3", 384, 3, 1, False),
         ("conv4", 384, 3, 1, True), ("conv5", 256, 3, 1, True))
# The single-tower widths of "One weird trick" (Sec. 6), the layout torchvision's weights use.
ONE_TOWER = (("conv1", 64, 11, 4, False), ("conv2", 192, 5, 1, False), ("conv3", 384, 3, 1, False),
             ("conv4", 256, 3, 1, False), ("conv5", 256, 3, 1, False))
STAGES = (("conv1",), ("conv2",), ("conv3", "conv4", "conv5"))  # each followed by a max-pool


class ResponseNorm(nn.Module):
    """Sec. 3.3 with k=2, n=5, alpha=1e-4, beta=0.75, within each tower: a GPU normalises over its
    own kernel maps only, so the maps of ``towers`` equal groups are normalised apart.  The paper
    sums alpha * a^2 over the n neighbours; torch divides alpha by n first, so it gets alpha * n."""

    def __init__(self, towers: int = 1):
        super().__init__()
        self.towers = towers
        self.norm = nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.towers == 1:
            return self.norm(x)
        return torch.cat([self.norm(part) for part in x.chunk(self.towers, dim=1)], dim=1)


class AlexNet(Backbone):
    """Three stages, each ending in an overlapping 3x3 stride-2 max-pool: conv1, conv2, conv3-5.

    ``lrn`` adds response normalisation after conv1 and conv2 (Sec. 3.5), each tower's maps apart;
    ``groups`` splits the convolutions marked in the table over that many towers (2: the two GPUs).  ``small_input``
    turns conv1 into a 3x3 stride-1 convolution, drops the first pool, and pads the other two by
    one so that they halve a 32x32 map exactly (32 -> 16 -> 8).
    """

    classifier = "head.fc8"
    first_conv = "stages.0.conv1.conv"

    def __init__(self, table: tuple = PAPER, *, lrn: bool = True, groups: int = 2, dropout_inputs: bool = False,
                 paper_init: bool = True, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5,
                 small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        rows = {row[0]: row for row in table}
        self.stem = nn.Identity()  # conv1 is AlexNet's stem; it opens stage 0 so it is a feature level
        in_chs, stages, reduction = in_chans, [], 1
        for index, names in enumerate(STAGES):
            layers = OrderedDict()
            for name in names:
                _, width, kernel, stride, split = rows[name]
                if small_input and name == "conv1":
                    kernel, stride = 3, 1
                layers[name] = self._conv(name, in_chs, width, kernel, stride, groups if split else 1)
                reduction, in_chs = reduction * stride, width
                if lrn and name in ("conv1", "conv2"):
                    layers[f"lrn{name[-1]}"] = ResponseNorm(groups)
            if not (small_input and index == 0):
                layers[f"pool{names[-1][-1]}"] = nn.MaxPool2d(3, 2, padding=int(small_input))
                reduction *= 2
            stages.append(nn.Sequential(layers))
            self.feature_info.append(FeatureInfo(in_chs, reduction, f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_chs
        # pool5 is average-pooled to 6x6 so that any input size works (at 224 it is 6x6 already)
        self.head = FullyConnectedHead(in_chs, num_classes, drop_rate, grid=6, dropout_inputs=dropout_inputs)
        # the smallest input whose pool5 map is still 1x1: 63 (torchvision's min_size)
        self.min_input_size = reduction if small_input else 63
        self.default_input_size = 32 if small_input else 224
        if paper_init:
            self.paper_init()
        else:
            self.init_weights()

    @staticmethod
    def _conv(name: str, in_chs: int, out_chs: int, kernel: int, stride: int, groups: int) -> ConvNormAct:
        if in_chs % groups or out_chs % groups:
            raise ValueError(f"AlexNet {name}: groups={groups} must divide its {in_chs} input and "
                             f"{out_chs} output channels")
        # conv1 pads by 2 so that a 224 input gives the paper's 55x55 maps (the paper omits padding)
        return ConvNormAct(in_chs, out_chs, kernel, stride, padding=2 if kernel == 11 else kernel // 2,
                           groups=groups, norm=None, act=ReLU)

    def paper_init(self) -> None:
        """Sec. 5: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fully
        connected layers (positive inputs for the ReLUs), 0 elsewhere."""
        ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.constant_(module.bias, 1.0 if ones & set(name.split(".")) else 0.0)


ALEXNET = dict(family="alexnet", paper="ImageNet Classification with Deep Convolutional Neural Networks",
               year=2012, arxiv="none (NeurIPS 2012)",
               idea="a deep convnet on two GPUs: ReLU, response normalisation, overlapping pooling, dropout")


@register("alexnet", **ALEXNET, input_size=224, params=60_000_000, macs=None, params_tolerance=0.02,
          reference="paper, Sec. 1 and 3 (about 60 million parameters; no MACs given)",
          notes="60,965,224 parameters, 1.6% above the paper's rounded 'sixty million'; conv1 pads by 2 "
                "(224 gives the paper's 55x55); pool5 is average-pooled to 6x6 before fc6 so any input "
                "size works; LRN normalises each tower's maps apart, as each GPU did, with alpha scaled by n "
                "because torch divides it by n and the paper does not. "
                "small_input: conv1 becomes 3x3 stride 1, pool1 goes, pool2 and pool5 pad by 1")
def alexnet(*, lrn: bool = True, groups: int = 2, paper_init: bool = True, num_classes: int = 1000,
            in_chans: int = 3, drop_rate: float = 0.5, small_input: bool = False) -> AlexNet:
    return AlexNet(PAPER, lrn=lrn, groups=groups, paper_init=paper_init, num_classes=num_classes,
                   in_chans=in_chans, drop_rate=drop_rate, small_input=small_input)


@register("alexnet_tv", family="alexnet",
          paper="One weird trick for parallelizing convolutional neural networks", year=2014,
          arxiv="1404.5997", idea="AlexNet in one tower: 64-192-384-256-256 filters, no grouping, no LRN",
          input_size=224, params=61_100_840, macs=714_188_480, reference="torchvision alexnet",
          layouts=("torchvision_alexnet",),
          notes="torchvision layout: one tower, no LRN, dropout on the inputs of fc6 and fc7; "
                "small_input as alexnet's")
def alexnet_tv(*, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.5,
               small_input: bool = False) -> AlexNet:
    return AlexNet(ONE_TOWER, lrn=False, groups=1, dropout_inputs=True, paper_init=False,
                   num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate, small_input=small_input)
