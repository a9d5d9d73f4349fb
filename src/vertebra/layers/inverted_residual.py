"""MobileNet V2's inverted residual (Sandler et al. 2018, arXiv:1801.04381) and its descendants.

Expand with a 1x1 convolution, filter with a k x k depthwise convolution, optionally
squeeze-and-excite, then project back with a *linear* 1x1 (no activation: a ReLU on the
narrow bottleneck would destroy information).  MnasNet, MobileNet V3 and EfficientNet's
MBConv are this block with other kernels, activations and SE settings.
"""
from __future__ import annotations

import torch
from torch import nn

from .conv_norm_act import ConvNormAct, LayerFactory
from .drop_path import DropPath
from .squeeze_excite import SqueezeExcite


class InvertedResidual(nn.Module):
    """``expand`` (skipped when ``expanded_chs == in_chs``), ``dw``, ``se``, ``project``.

    The shortcut exists only where the block keeps the shape (stride 1, ``in == out``);
    ``drop_path`` (stochastic depth) applies to the residual branch there.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, expanded_chs: int, *,
                 act: LayerFactory = nn.ReLU6, norm: LayerFactory = nn.BatchNorm2d,
                 se_chs: int | None = None, se_act: LayerFactory = nn.ReLU,
                 se_gate: LayerFactory = nn.Sigmoid, drop_path: float = 0.0):
        super().__init__()
        for name, value in (("in_chs", in_chs), ("out_chs", out_chs), ("expanded_chs", expanded_chs)):
            if value < 1:
                raise ValueError(f"InvertedResidual needs at least one channel, got {name}={value}")
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        self.expand = (ConvNormAct(in_chs, expanded_chs, 1, norm=norm, act=act)
                       if expanded_chs != in_chs else nn.Identity())
        self.dw = ConvNormAct(expanded_chs, expanded_chs, kernel_size, stride=stride, groups=expanded_chs,
                              norm=norm, act=act)
        self.se = SqueezeExcite(expanded_chs, se_chs, act=se_act, gate=se_gate) if se_chs else nn.Identity()
        self.project = ConvNormAct(expanded_chs, out_chs, 1, norm=norm, act=None)
        self.has_shortcut = stride == 1 and in_chs == out_chs
        self.drop_path = DropPath(drop_path) if self.has_shortcut else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.dw(self.expand(x))))
        return self.drop_path(out) + x if self.has_shortcut else out


def repeated_blocks(in_chs: int, rows, make_block) -> tuple[nn.Sequential, int, int]:
    """One stage from an architecture table's rows ``(out_chs, repeats, first_stride, row)``:
    ``repeats`` blocks per row, the first at ``first_stride``, each ``make_block(in_chs, out_chs,
    stride, row)``.  Returns the stage, its output channels and its total stride."""
    blocks, total_stride = [], 1
    for out_chs, repeats, first_stride, row in rows:
        for index in range(repeats):
            stride = first_stride if index == 0 else 1
            blocks.append(make_block(in_chs, out_chs, stride, row))
            in_chs, total_stride = out_chs, total_stride * stride
    return nn.Sequential(*blocks), in_chs, total_stride
