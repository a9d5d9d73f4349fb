"""Stochastic depth (Huang et al. 2016, arXiv:1603.09382): drop whole residual branches per sample."""
import torch
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Zero the branch for a random ``drop_prob`` share of the samples, rescale the rest.

    Scaling the survivors by ``1 / (1 - drop_prob)`` keeps the expected output equal to
    the input, so nothing changes at inference time.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = x.new_empty(mask_shape).bernoulli_(keep_prob)
    return x * mask.div_(keep_prob)


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def drop_path_rates(num_blocks: int, max_rate: float) -> list[float]:
    """Stochastic depth's linear rule: block i of n drops with probability max_rate * i / (n - 1)."""
    if num_blocks <= 1:
        return [0.0] * num_blocks
    return [max_rate * i / (num_blocks - 1) for i in range(num_blocks)]
