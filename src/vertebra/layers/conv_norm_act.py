"""Convolution, normalisation and activation: the unit nearly every backbone repeats."""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

from torch import nn

LayerFactory = Callable[..., nn.Module]


class ConvNormAct(nn.Sequential):
    """``conv -> bn -> act`` with "same" padding; ``norm=None`` or ``act=None`` drops a part.

    The children are named ``conv``, ``bn`` and ``act`` so that BatchNorm folding and the
    weight key maps find them by name.  By default the convolution has a bias only when there
    is no normalisation after it (a bias before BatchNorm is cancelled by the mean); ``bias``
    overrides that where a reference differs.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, groups: int = 1, dilation: int = 1,
                 norm: LayerFactory | None = nn.BatchNorm2d,
                 act: LayerFactory | None = nn.ReLU, bias: bool | None = None):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        parts: OrderedDict[str, nn.Module] = OrderedDict()
        parts["conv"] = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                  padding=padding, groups=groups, dilation=dilation,
                                  bias=norm is None if bias is None else bias)
        if norm is not None:
            parts["bn"] = norm(out_channels)
        if act is not None:
            parts["act"] = act()
        super().__init__(parts)
        self.in_channels, self.out_channels = in_channels, out_channels


class NormAct(nn.Sequential):
    """``bn -> act``: the pre-activation of He et al. 2016, applied before a convolution."""

    def __init__(self, channels: int, norm: LayerFactory = nn.BatchNorm2d,
                 act: LayerFactory = nn.ReLU):
        super().__init__(OrderedDict(bn=norm(channels), act=act()))
