"""Squeeze-and-excitation (Hu et al. 2018, arXiv:1709.01507): reweight channels by global context."""
from __future__ import annotations

import torch
from torch import nn

from .conv_norm_act import LayerFactory


class SqueezeExcite(nn.Module):
    """Squeeze (global average pool), excite (fc -> act -> fc -> gate), rescale each channel.

    The two fully connected layers are 1x1 convolutions with bias, named ``fc1`` and
    ``fc2`` as in the SENet, MobileNet V3 and EfficientNet reference code; the gate is a
    sigmoid (SENet, EfficientNet) or a hard sigmoid (MobileNet V3).
    """

    def __init__(self, channels: int, reduced_channels: int, act: LayerFactory = nn.ReLU,
                 gate: LayerFactory = nn.Sigmoid):
        super().__init__()
        if not 0 < reduced_channels:
            raise ValueError(f"reduced_channels must be positive, got {reduced_channels}")
        self.fc1 = nn.Conv2d(channels, reduced_channels, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(reduced_channels, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.gate(self.fc2(self.act(self.fc1(scale))))
        return x * scale
