"""DenseNet: Huang et al., "Densely Connected Convolutional Networks", 2017, arXiv:1608.06993.

Inside a dense block every layer receives the concatenation of the feature maps of all layers
before it and adds k (the growth rate) maps of its own, so features are reused, not relearned.
DenseNet-BC narrows each layer with a 1x1 bottleneck to 4k maps and halves the width in the
transition layers between blocks (compression 0.5).

Memory-efficient mode: Pleiss et al., "Memory-Efficient Implementation of DenseNets", 2017,
arXiv:1707.06990.  The concatenation, BN, ReLU and 1x1 convolution of each layer are
recomputed in the backward pass instead of stored, which makes activation memory grow
linearly instead of quadratically with the depth of a block.
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager, nullcontext
from functools import partial

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo
from ..layers import ConvNormAct, NormAct
from ..registry import register

ReLU = partial(nn.ReLU, inplace=True)


@contextmanager
def running_stats_frozen(bn: nn.BatchNorm2d):
    """Recomputing a checkpointed BN must not count the same batch twice in its running statistics.

    With momentum 0 the running mean and variance stay as they are; the batch counter is put back.
    """
    momentum, counted = bn.momentum, bn.num_batches_tracked.clone()
    bn.momentum = 0.0
    try:
        yield
    finally:
        bn.momentum = momentum
        bn.num_batches_tracked.copy_(counted)


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (the bottleneck, to bn_size * k maps), BN-ReLU-conv3x3 (to k maps).

    Its input is the list of all earlier maps of the block; the layer concatenates them itself,
    so that the memory-efficient mode can recompute the concatenation with the bottleneck.
    """

    def __init__(self, in_chs: int, growth_rate: int, bn_size: int, drop_rate: float,
                 memory_efficient: bool):
        super().__init__()
        self.norm1 = NormAct(in_chs, act=ReLU)
        self.conv1 = nn.Conv2d(in_chs, bn_size * growth_rate, 1, bias=False)
        self.norm2 = NormAct(bn_size * growth_rate, act=ReLU)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def bottleneck(self, *features: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.norm1(torch.cat(features, 1)))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and torch.is_grad_enabled() and any(f.requires_grad for f in features):
            frozen = partial(running_stats_frozen, self.norm1.bn)
            out = cp.checkpoint(self.bottleneck, *features, use_reentrant=False,
                                context_fn=lambda: (nullcontext(), frozen()))
        else:
            out = self.bottleneck(*features)
        out = self.conv2(self.norm2(out))
        return F.dropout(out, self.drop_rate, self.training) if self.drop_rate > 0 else out


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; the block's output is the concatenation of its input and all of theirs."""

    def __init__(self, num_layers: int, in_chs: int, growth_rate: int, bn_size: int, drop_rate: float,
                 memory_efficient: bool):
        super().__init__({f"denselayer{i + 1}": DenseLayer(in_chs + i * growth_rate, growth_rate, bn_size,
                                                           drop_rate, memory_efficient)
                          for i in range(num_layers)})
        self.out_chs = in_chs + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU, a 1x1 convolution that compresses the width by theta, 2x2 average pooling."""

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__(OrderedDict(norm=NormAct(in_chs, act=ReLU),
                                     conv=nn.Conv2d(in_chs, out_chs, 1, bias=False),
                                     pool=nn.AvgPool2d(2, 2)))


class DenseNet(Backbone):
    """Stem (7x7 stride-2 conv, 3x3 stride-2 max-pool), four stages, a final BN-ReLU, the head.

    Stage i is the transition that ends block i-1 (none before the first block) followed by
    dense block i, so each stage's output is a block's full concatenation at strides 4 to 32.
    ``small_input`` replaces the stem with one 3x3 stride-1 convolution and no pooling, as the
    paper's CIFAR networks do (with the ImageNet stem width), giving strides 1 to 8.
    ``drop_rate`` is the classifier's dropout; ``layer_drop_rate`` the paper's dropout after
    each dense layer (torchvision's ``drop_rate``).
    """

    head_modules = ("norm", "head")

    def __init__(self, block_config: tuple[int, ...], *, growth_rate: int = 32, stem_width: int = 64,
                 bn_size: int = 4, compression: float = 0.5, memory_efficient: bool = False,
                 layer_drop_rate: float = 0.0, num_classes: int = 1000, in_chans: int = 3,
                 drop_rate: float = 0.0, small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        if min(block_config, default=0) < 1:
            raise ValueError(f"block_config must give a positive layer count per block, got {block_config}")
        if growth_rate < 1 or bn_size < 1 or stem_width < 1:
            raise ValueError(f"growth_rate, bn_size and stem_width must be positive, got "
                             f"{growth_rate}, {bn_size}, {stem_width}")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        if small_input:
            self.stem = nn.Sequential(OrderedDict(conv1=ConvNormAct(in_chans, stem_width, 3, act=ReLU)))
        else:
            self.stem = nn.Sequential(OrderedDict(conv1=ConvNormAct(in_chans, stem_width, 7, stride=2, act=ReLU),
                                                  pool=nn.MaxPool2d(3, 2, padding=1)))
        stem_reduction = 1 if small_input else 4
        chs, stages = stem_width, []
        for index, num_layers in enumerate(block_config):
            parts = OrderedDict()
            if index > 0:
                # torchvision floors the compressed width (int(), as num_features // 2 at theta 0.5)
                out_chs = int(chs * compression)
                if out_chs < 1:
                    raise ValueError(f"transition {index}: compression {compression} rounds {chs} "
                                     f"channels to zero")
                parts["transition"] = Transition(chs, out_chs)
                chs = out_chs
            parts["denseblock"] = DenseBlock(num_layers, chs, growth_rate, bn_size, layer_drop_rate,
                                             memory_efficient)
            chs = parts["denseblock"].out_chs
            stages.append(nn.Sequential(parts))
            self.feature_info.append(FeatureInfo(chs, stem_reduction * 2 ** index, f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = chs
        self.norm = NormAct(chs, act=ReLU)  # the last block's output is not yet normalised
        self.head = ClassifierHead(chs, num_classes, drop_rate)
        self.min_input_size = self.feature_info[-1].reduction
        self.default_input_size = 32 if small_input else 224
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward_features(x))


# -- the registered models: the paper's Table 1 (DenseNet-BC, k = 32 or 48, theta = 0.5) --------
DENSENET = dict(family="densenet", paper="Densely Connected Convolutional Networks", year=2017,
                arxiv="1608.06993",
                idea="each layer takes the concatenation of all earlier maps in its block as input")

# name: (layers per dense block, growth rate k, stem width, params, MACs at 224)
DENSENETS = {
    "densenet121": ((6, 12, 24, 16), 32, 64, 7_978_856, 2_834_161_664),
    "densenet161": ((6, 12, 36, 24), 48, 96, 28_681_000, 7_727_907_072),
    "densenet169": ((6, 12, 32, 32), 32, 64, 14_149_480, 3_359_843_328),
    "densenet201": ((6, 12, 48, 32), 32, 64, 20_013_928, 4_291_365_888),
}
for _name, (_blocks, _k, _stem, _params, _macs) in DENSENETS.items():
    register(_name, **DENSENET, input_size=224, params=_params, macs=_macs,
             reference=f"torchvision {_name}", layouts=("torchvision_densenet",),
             notes="torchvision layout, as the paper's ImageNet DenseNet-BC (Table 1); densenet161 "
                   "is the authors' wider k=48 model with a 96-map stem. memory_efficient=True "
                   "recomputes each layer's concatenation and bottleneck in the backward pass: "
                   "same outputs, gradients and running statistics, less activation memory. "
                   "small_input: the stem is one 3x3 stride-1 convolution without max-pool, as the "
                   "paper's CIFAR networks")(
        partial(DenseNet, _blocks, growth_rate=_k, stem_width=_stem))
