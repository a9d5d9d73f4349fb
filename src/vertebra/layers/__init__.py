"""Blocks shared by two families or more."""
from .channel_shuffle import ChannelShuffle, channel_shuffle, concat_shuffle
from .conv_norm_act import ConvNormAct, NormAct
from .drop_path import DropPath, drop_path, drop_path_rates
from .fc_head import FullyConnectedHead
from .inverted_residual import InvertedResidual
from .make_divisible import make_divisible
from .recurrent import LSTM, RNN, LSTMCell, LSTMGates, RNNCell
from .scaling import check_multiplier, round_channels, round_repeats
from .separable import SeparableConv
from .squeeze_excite import SqueezeExcite

__all__ = ["ChannelShuffle", "channel_shuffle", "concat_shuffle", "ConvNormAct", "NormAct", "DropPath", "drop_path",
           "drop_path_rates", "FullyConnectedHead", "InvertedResidual", "make_divisible", "SeparableConv", "SqueezeExcite",
           "RNN", "LSTM", "RNNCell", "LSTMCell", "LSTMGates", "check_multiplier", "round_channels", "round_repeats"]
