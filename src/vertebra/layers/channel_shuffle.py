"""Channel shuffle (ShuffleNet, Zhang et al. 2018, arXiv:1707.01083).

After a grouped convolution each output group has seen only its own input group; shuffling
interleaves the groups so that the next grouped convolution mixes information across them.
"""
import torch
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(n, g*c, h, w) -> view as (n, g, c, h, w), swap g and c, flatten back: a view and a transpose."""
    batch, channels, height, width = x.shape
    if channels % groups:
        raise ValueError(f"channel_shuffle: {channels} channels do not split into {groups} groups")
    return x.view(batch, groups, channels // groups, height, width).transpose(1, 2).reshape(
        batch, channels, height, width)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
