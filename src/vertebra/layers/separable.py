"""Depthwise separable convolution (Xception, Chollet 2017; MobileNet V1, Howard et al. 2017).

A k x k depthwise convolution filters each channel alone, then a 1x1 pointwise convolution
mixes channels: about 1/out + 1/k^2 of a full convolution's cost.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .conv_norm_act import ConvNormAct, LayerFactory


class SeparableConv(nn.Sequential):
    """``dw`` (k x k, groups = channels) then ``pw`` (1x1), each a ``ConvNormAct``.

    MobileNet V1 puts BN and ReLU after both (the defaults); Xception's separable convolution
    has neither between or after them (``dw_norm=dw_act=pw_norm=pw_act=None``, ``bias=False``).
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1,
                 *, dw_norm: LayerFactory | None = nn.BatchNorm2d, dw_act: LayerFactory | None = nn.ReLU,
                 pw_norm: LayerFactory | None = nn.BatchNorm2d, pw_act: LayerFactory | None = nn.ReLU,
                 bias: bool | None = None):
        super().__init__(OrderedDict(
            dw=ConvNormAct(in_chs, in_chs, kernel_size, stride=stride, groups=in_chs, dilation=dilation,
                           norm=dw_norm, act=dw_act, bias=bias),
            pw=ConvNormAct(in_chs, out_chs, 1, norm=pw_norm, act=pw_act, bias=bias),
        ))
