"""The scaling rule of a width- and depth-multiplied network (EfficientNet, Tan & Le 2019, arXiv:1905.11946).

Width scales every layer's channels and rounds them to a multiple of 8 (``make_divisible``,
the TensorFlow rule); depth scales every stage's number of layers and rounds *up*, so a
stage never loses its last layer.  Any family with a width or depth multiplier uses these;
``vertebra.design.scaling`` chooses the multipliers (compound scaling).
"""
from __future__ import annotations

import math

from .make_divisible import make_divisible


def check_multiplier(kind: str, multiplier: float, what: str) -> float:
    """A positive, finite multiplier; anything else would leave ``what`` (a layer, named in the
    error) with nothing.  Families with a multiplier of their own validate it with this too."""
    if isinstance(multiplier, bool) or not isinstance(multiplier, (int, float)):
        raise TypeError(f"{kind} must be a number, got {type(multiplier).__name__} {multiplier!r}")
    if not (math.isfinite(multiplier) and multiplier > 0):
        raise ValueError(f"{kind}={multiplier} rounds {what} to zero: "
                         f"the multiplier must be a positive finite number")
    return float(multiplier)


def round_channels(channels: int, width_mult: float, divisor: int = 8, *, layer: str = "a layer") -> int:
    """``channels * width_mult`` rounded to a multiple of ``divisor`` (never below ``divisor``).

    ``layer`` names the layer in the error raised when the setting leaves it no channels.
    """
    width_mult = check_multiplier("width_mult", width_mult, f"{layer} ({channels} channels)")
    return make_divisible(channels * width_mult, divisor)


def round_repeats(repeats: int, depth_mult: float, *, layer: str = "a stage") -> int:
    """``ceil(repeats * depth_mult)``: the number of layers of a depth-scaled stage.

    Plain ``math.ceil`` as in the EfficientNet reference code (and torchvision), so that the
    published models' depths come out exactly.
    """
    depth_mult = check_multiplier("depth_mult", depth_mult, f"{layer} ({repeats} layers)")
    return int(math.ceil(repeats * depth_mult))


def spread_repeats(repeats: list[int], depth_mult: float, *, layer: str = "a stage") -> list[int]:
    """A stage of several rows deepened as one: ``ceil(sum(repeats) * depth_mult)`` layers in all,
    shared in proportion to the rows' repeats, the last rows served first (they take the most, as in
    timm's rule for tables that list each layer, MobileNet V1 and V3).  Every row keeps a layer."""
    total = sum(repeats)
    remaining = round_repeats(total, depth_mult, layer=layer)
    scaled = []
    for count in reversed(repeats):
        share = max(1, round(count / total * remaining))
        scaled.append(share)
        total, remaining = total - count, remaining - share
    return scaled[::-1]
