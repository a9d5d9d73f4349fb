"""Recurrent classifiers: an image read as a sequence of rows (the row-by-row MNIST setup).

RNN: Elman, "Finding Structure in Time", Cognitive Science 14(2), 1990 (no arXiv).
    A hidden state carried from step to step: the history memory and the current input give the output.
LSTM: Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1997 (no arXiv).
    Sigmoid gates decide what the cell state forgets, what it takes in and what it shows.
Bidirectional LSTM: Graves & Schmidhuber, "Framewise Phoneme Classification with Bidirectional
    LSTM and Other Neural Network Architectures", Neural Networks 18(5-6), 2005 (no arXiv).
    A second LSTM reads the sequence backwards, so every step sees both ends of the input.

Step t reads row t of the image: its pixels, all channels folded together (in_chans x width
features).  A "stage" is one recurrent layer; its output, the hidden state at every step, is
presented as a (batch, hidden, 1, steps) map: time runs along the last axis, one step per input
row, so its reduction is 1.  ``forward_features`` gives the last layer's map, whose final step is
the final hidden state; the head takes that state (for the bidirectional net, the forward
direction's last step and the backward direction's first) and classifies it.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import Backbone, ClassifierHead, FeatureInfo, check_int
from ..layers.recurrent import LSTM, RNN, LSTMGates
from ..registry import register


class RowSequence(nn.Module):
    """(batch, channels, height, width) image -> (batch, height, channels x width) sequence of rows.

    Rows of another width than ``img_size`` are first resampled to it by area averaging
    (adaptive average pooling along the width); at the native width nothing is resampled.
    """

    def __init__(self, img_size: int):
        super().__init__()
        self.img_size = img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.img_size:
            x = F.adaptive_avg_pool2d(x, (x.shape[-2], self.img_size))
        return x.permute(0, 2, 1, 3).flatten(2)


class FinalHiddenState(nn.Module):
    """Pools a (batch, directions x hidden, 1, steps) map to the final hidden state, (..., 1, 1).

    The forward direction ends at the last step; the backward one ends at the first.
    """

    def __init__(self, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.bidirectional:
            return x[..., -1:]
        forward_units = x.shape[1] // 2
        return torch.cat([x[:, :forward_units, :, -1:], x[:, forward_units:, :, :1]], 1)


class FinalStateHead(ClassifierHead):
    """ClassifierHead with the final hidden state in place of global average pooling."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float, bidirectional: bool):
        super().__init__(in_features, num_classes, drop_rate)
        self.pool = FinalHiddenState(bidirectional)


def as_map(sequence: torch.Tensor) -> torch.Tensor:
    """(batch, steps, features) -> (batch, features, 1, steps)."""
    return sequence.transpose(1, 2).unsqueeze(2)


class RecurrentClassifier(Backbone):
    """RowSequence stem, one stage per recurrent layer, the final hidden state classified.

    ``cell``: "rnn" (Elman, tanh) or "lstm".  ``img_size``: the row width the first layer reads
    (28, MNIST's, by default; 32 with ``small_input``).  There is no stem to adapt for 32x32
    images: ``small_input=True`` only makes 32-pixel rows the native width.
    """

    head_modules = ("head",)
    first_conv = ""  # no convolution: a different in_chans changes the row features instead

    def __init__(self, cell: str, bidirectional: bool, *, hidden_size: int = 128, num_layers: int = 2,
                 img_size: int | None = None, num_classes: int = 10, in_chans: int = 3,
                 drop_rate: float = 0.0, small_input: bool = False):
        super().__init__(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                         small_input=small_input)
        if cell not in ("rnn", "lstm"):
            raise ValueError(f"cell must be 'rnn' or 'lstm', got {cell!r}")
        check_int("hidden_size", hidden_size, 1)
        check_int("num_layers", num_layers, 1)
        img_size = check_int("img_size", img_size, 1) if img_size is not None else 32 if small_input else 28
        self.cell, self.hidden_size = cell, hidden_size
        self.stem = RowSequence(img_size)
        layer = LSTM if cell == "lstm" else RNN
        width = hidden_size * (2 if bidirectional else 1)
        self.stages = nn.Sequential(*(layer(in_chans * img_size if i == 0 else width, hidden_size,
                                            bidirectional=bidirectional) for i in range(num_layers)))
        self.feature_info = [FeatureInfo(width, 1, f"stages.{i}") for i in range(num_layers)]
        self.num_features = width
        self.head = FinalStateHead(width, num_classes, drop_rate, bidirectional)
        self.default_input_size = img_size
        self.min_input_size = 1  # one row is a sequence; any width is resampled to img_size

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        wanted = self.out_indices if self.out_indices is not None else range(len(self.stages))
        x, outputs = self.stem(x), []
        for index, stage in enumerate(self.stages):
            x = stage(x)[0]
            if index in wanted:
                outputs.append(as_map(x))
        return outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's hidden states at every step, (batch, num_features, 1, rows)."""
        return self.forward_intermediates(x)[-1]

    def forward_gates(self, x: torch.Tensor) -> list[LSTMGates]:
        """Every layer's gate activations and cell state, each (batch, rows, num_features)."""
        if self.cell != "lstm":
            raise ValueError(f"{self.model_name} is an Elman RNN: it has no gates (use an LSTM model)")
        self.check_input(x)
        x, gates = self.stem(x), []
        for stage in self.stages:
            x, _, (stage_gates,) = stage(x, return_gates=True)
            gates.append(stage_gates)
        return gates


# -- the registered models -----------------------------------------------------------------
# The papers give no image model: these follow the common row-by-row MNIST setup with the
# defaults below.  The reference is torch.nn.RNN / nn.LSTM of the same shape with a linear
# classifier: same parameters (the layers load its state dicts).  Defaults: 3 input channels
# (the contract's default), 28-pixel rows (84 features per step), 28 steps, 2 layers of 128
# units, 10 classes.  MACs: steps x rows x hidden x (inputs + hidden) per layer and direction
# (4 rows per unit for the LSTM), plus the classifier; torch's flop counter sees inside
# nn.RNN on the CPU but not inside nn.LSTM, so the LSTM figures are that formula.
ELMAN = dict(family="rnn", paper="Finding Structure in Time", year=1990,
             arxiv="none (Cognitive Science 14(2):179-211)",
             idea="a hidden state carried between steps: history memory and the current input give the output")
HOCHREITER = dict(family="lstm", paper="Long Short-Term Memory", year=1997,
                  arxiv="none (Neural Computation 9(8):1735-1780)",
                  idea="sigmoid gates control what the cell state forgets, takes in and shows")
GRAVES = dict(family="lstm", paper="Framewise Phoneme Classification with Bidirectional LSTM and Other "
              "Neural Network Architectures", year=2005, arxiv="none (Neural Networks 18(5-6):602-610)",
              idea="a second LSTM reads the sequence backwards, so each step sees both ends of the input")
ROWS = ("no image model in the paper: an image is read row by row (28 steps of 3 x 28 pixels by default; "
        "rows of another width are area-averaged to img_size, small_input=True makes it 32); a stage is "
        "one recurrent layer, its hidden states a (batch, hidden, 1, rows) map of reduction 1; the head "
        "classifies the final hidden state; MACs by formula for the LSTMs (torch's counter does not see "
        "inside nn.LSTM)")
FORGET = "; the forget gate is Gers, Schmidhuber & Cummins 2000's addition, as in torch.nn.LSTM (no peepholes)"

# name: (cell, bidirectional, paper, params, MACs at 28x28, reference)
RECURRENT = {
    "rnn_classifier": ("rnn", False, ELMAN, 61_706, 1_678_592,
                       "torch.nn.RNN(84, 128, num_layers=2) + nn.Linear(128, 10)"),
    "lstm_classifier": ("lstm", False, HOCHREITER, 242_954, 6_710_528,
                        "torch.nn.LSTM(84, 128, num_layers=2) + nn.Linear(128, 10)"),
    "bilstm_classifier": ("lstm", True, GRAVES, 616_970, 17_091_072,
                          "torch.nn.LSTM(84, 128, num_layers=2, bidirectional=True) + nn.Linear(256, 10)"),
}


for _name, (_cell, _bidirectional, _paper, _params, _macs, _ref) in RECURRENT.items():
    register(_name, **_paper, input_size=28, params=_params, macs=_macs, reference=_ref,
             notes=ROWS + (FORGET if _cell == "lstm" else ""))(partial(RecurrentClassifier, _cell, _bidirectional))
