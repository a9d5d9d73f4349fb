"""Blocks shared by two families or more."""
from .conv_norm_act import ConvNormAct, NormAct
from .drop_path import DropPath, drop_path, drop_path_rates
from .make_divisible import make_divisible
from .squeeze_excite import SqueezeExcite

__all__ = ["ConvNormAct", "NormAct", "DropPath", "drop_path", "drop_path_rates", "make_divisible", "SqueezeExcite"]
