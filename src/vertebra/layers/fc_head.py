"""The fully connected classifier of AlexNet and VGG: fc6 and fc7 (hidden, ReLU, dropout), fc8."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class FullyConnectedHead(nn.Module):
    """Average-pool the last map to ``grid`` x ``grid`` (so any input size works), then fc6-fc8.

    ``dropout_inputs``: dropout before fc6 and fc7 (torchvision's AlexNet) instead of after
    their ReLU (the AlexNet and VGG papers).  ``num_classes=0`` drops all three layers and
    returns the contract's pooled features, the global average of the map; ``reset`` to
    another number of classes keeps fc6 and fc7 and replaces only fc8.  ``linear`` builds
    each layer (``linear(in_features, out_features, device=...)``), for a family's own init.
    """

    def __init__(self, in_chs: int, num_classes: int, drop_rate: float, *, grid: int, hidden: int = 4096,
                 dropout_inputs: bool = False, linear: Callable[..., nn.Linear] = nn.Linear):
        super().__init__()
        self.in_chs, self.hidden, self.grid = in_chs, hidden, grid
        self.dropout_inputs, self.linear = dropout_inputs, linear
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.act, self.drop = nn.ReLU(inplace=True), nn.Dropout(drop_rate)
        self.fc6 = self.fc7 = self.fc8 = None
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        device = next((p.device for p in self.parameters()), None)
        if num_classes == 0:
            self.fc6 = self.fc7 = self.fc8 = None
            return
        if self.fc6 is None:  # fine-tuning keeps fc6 and fc7; only the last layer is new
            self.fc6 = self.linear(self.in_chs * self.grid ** 2, self.hidden, device=device)
            self.fc7 = self.linear(self.hidden, self.hidden, device=device)
        self.fc8 = self.linear(self.hidden, num_classes, device=device)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits or self.fc8 is None:
            return x.mean((2, 3))
        x = self.pool(x).flatten(1)
        for fc in (self.fc6, self.fc7):
            x = self.act(fc(self.drop(x))) if self.dropout_inputs else self.drop(self.act(fc(x)))
        return self.fc8(x)
