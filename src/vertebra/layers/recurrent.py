"""Recurrent cells written from their gate equations, so that the gates can be shown.

Elman's RNN (1990): the history memory and the current input give the current output,
    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).
The LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000):
    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)     input gate: how much of the candidate enters
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)     forget gate: how much of c_{t-1} is kept
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)        candidate memory
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)     output gate: how much of the memory is shown
    c_t = f_t * c_{t-1} + i_t * g_t                          the new cell state (memory)
    h_t = o_t * tanh(c_t)                                    the output
Parameters keep torch.nn's names, shapes, gate order (i, f, g, o) and initialisation, so state
dicts move both ways between these modules and nn.RNNCell / nn.LSTMCell / nn.RNN / nn.LSTM.
What nn.LSTM cannot do: ``return_gates=True`` also returns every step's gates and cell state.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import check_int, check_rate


class LSTMGates(NamedTuple):
    """An LSTM's gate activations: (batch, hidden) for one step; (batch, seq, directions x hidden) stacked."""

    input: torch.Tensor  # i_t, in (0, 1)
    forget: torch.Tensor  # f_t, in (0, 1)
    candidate: torch.Tensor  # g_t, in (-1, 1)
    output: torch.Tensor  # o_t, in (0, 1)
    cell: torch.Tensor  # c_t, the memory after the step


def lstm_step(pre: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, LSTMGates]:
    """One LSTM step from the summed pre-activations (W_ih x + b_ih + W_hh h + b_hh, order i, f, g, o)."""
    i, f, g, o = pre.chunk(4, 1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c + i * g
    h = o * c.tanh()
    return h, c, LSTMGates(i, f, g, o, c)


ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}


def _check_activation(nonlinearity: str) -> str:
    if nonlinearity not in ACTIVATIONS:
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity


def _add_weights(module: nn.Module, suffix: str, rows: int, input_size: int, hidden_size: int,
                 bias: bool) -> None:
    """Register weight_ih/weight_hh (and bias_ih/bias_hh) + suffix, shaped as torch.nn's."""
    module.register_parameter(f"weight_ih{suffix}", nn.Parameter(torch.empty(rows, input_size)))
    module.register_parameter(f"weight_hh{suffix}", nn.Parameter(torch.empty(rows, hidden_size)))
    for name in (f"bias_ih{suffix}", f"bias_hh{suffix}"):
        module.register_parameter(name, nn.Parameter(torch.empty(rows)) if bias else None)


def _reset(module: nn.Module, hidden_size: int) -> None:
    """torch.nn's initialisation: every weight and bias uniform in +-1/sqrt(hidden_size)."""
    bound = 1.0 / math.sqrt(hidden_size)
    for parameter in module.parameters():
        nn.init.uniform_(parameter, -bound, bound)


def _check_features(name: str, x, ndim: int, layout: str, features: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim != ndim or x.shape[-1] != features:
        raise ValueError(f"{name} expects a {ndim}-D input ({layout}) with {features} features, "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} expects a floating-point input, got dtype {x.dtype}")


def _check_state(name: str, state: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(state, torch.Tensor) or tuple(state.shape) != shape:
        got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
        raise ValueError(f"{name} expects an initial state of shape {shape}, got {got}")
    return state


class _Cell(nn.Module):
    rows_per_unit = 1  # pre-activations per hidden unit: 1 for the RNN, 4 for the LSTM's gates

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size = check_int("input_size", input_size, 1)
        self.hidden_size = check_int("hidden_size", hidden_size, 1)
        self.bias = bias
        _add_weights(self, "", self.rows_per_unit * hidden_size, input_size, hidden_size, bias)
        _reset(self, hidden_size)

    def pre_activation(self, x: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """W_ih x + b_ih + W_hh h + b_hh, and h (zeros when none is given)."""
        _check_features(type(self).__name__, x, 2, "batch, features", self.input_size)
        shape = (x.shape[0], self.hidden_size)
        h = x.new_zeros(shape) if h is None else _check_state(type(self).__name__, h, shape)
        return F.linear(x, self.weight_ih, self.bias_ih) + F.linear(h, self.weight_hh, self.bias_hh), h


class RNNCell(_Cell):
    """One step of Elman's RNN: h' = tanh(W_ih x + b_ih + W_hh h + b_hh) (or relu)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh"):
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = _check_activation(nonlinearity)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        return ACTIVATIONS[self.nonlinearity](self.pre_activation(x, h)[0])


class LSTMCell(_Cell):
    """One LSTM step: ``(h, c) = cell(x, (h, c))``; ``return_gates=True`` adds the step's LSTMGates.

    Usable on its own, one token at a time (a search controller feeds back its own samples).
    """

    rows_per_unit = 4

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                return_gates: bool = False):
        h, c = (None, None) if state is None else state
        pre, h = self.pre_activation(x, h)
        c = torch.zeros_like(h) if c is None else _check_state("LSTMCell", c, tuple(h.shape))
        h, c, gates = lstm_step(pre, c)
        return (h, c, gates) if return_gates else (h, c)


def rnn_scan(steps: torch.Tensor, h: torch.Tensor, weight_hh: torch.Tensor, reverse: bool,
             nonlinearity: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Run an RNN over the input projections ``steps`` (seq, batch, hidden): W_ih x_t + b_ih + b_hh."""
    activation, weight, inputs = ACTIVATIONS[nonlinearity], weight_hh.t(), steps.unbind(0)
    outputs = [h] * len(inputs)
    for t in (reversed(range(len(inputs))) if reverse else range(len(inputs))):
        h = outputs[t] = activation(torch.addmm(inputs[t], h, weight))
    return torch.stack(outputs, 0), h


def lstm_scan(steps: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight_hh: torch.Tensor,
              reverse: bool, keep_gates: bool):
    """Run an LSTM over the input projections ``steps`` (seq, batch, 4 hidden); returns the outputs,
    h_n, c_n and, with ``keep_gates``, every step's LSTMGates by input position (else None).

    Plain autograd: a hand-written backward pass (one node per sequence, the recurrent weight's
    gradient as one product over all steps) measured no faster on the CPU.
    """
    weight, inputs = weight_hh.t(), steps.unbind(0)
    outputs, gates = [h] * len(inputs), [None] * len(inputs)
    for t in (reversed(range(len(inputs))) if reverse else range(len(inputs))):
        h, c, step_gates = lstm_step(torch.addmm(inputs[t], h, weight), c)
        outputs[t] = h
        if keep_gates:
            gates[t] = step_gates
    return torch.stack(outputs, 0), h, c, (gates if keep_gates else None)


class _Recurrent(nn.Module):
    """Stacked, optionally bidirectional layers with torch.nn.RNN/LSTM's parameter names."""

    rows_per_unit = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False):
        super().__init__()
        self.input_size = check_int("input_size", input_size, 1)
        self.hidden_size = check_int("hidden_size", hidden_size, 1)
        self.num_layers = check_int("num_layers", num_layers, 1)
        self.dropout = check_rate("dropout", dropout)  # between layers, in training, as torch.nn
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.num_directions = 2 if bidirectional else 1
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self.suffixes(layer):
                _add_weights(self, suffix, self.rows_per_unit * hidden_size, layer_input, hidden_size, bias)
        _reset(self, hidden_size)

    def suffixes(self, layer: int) -> tuple[str, ...]:
        return (f"_l{layer}", f"_l{layer}_reverse")[: self.num_directions]

    def parameters_of(self, layer: int, direction: int) -> list[torch.Tensor | None]:
        suffix = self.suffixes(layer)[direction]
        return [getattr(self, f"{name}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def projections(self, x: torch.Tensor, layer: int, direction: int) -> torch.Tensor:
        """W_ih x_t + b_ih + b_hh for every step at once (one matrix product): the part that
        does not wait for the previous step."""
        weight_ih, _, bias_ih, bias_hh = self.parameters_of(layer, direction)
        return F.linear(x, weight_ih, None if bias_ih is None else bias_ih + bias_hh)

    def time_major(self, x: torch.Tensor) -> torch.Tensor:
        layout = "batch, seq, features" if self.batch_first else "seq, batch, features"
        _check_features(type(self).__name__, x, 3, layout, self.input_size)
        return x.transpose(0, 1).contiguous() if self.batch_first else x  # steps as contiguous blocks

    def initial(self, state: torch.Tensor | None, x: torch.Tensor) -> list[torch.Tensor]:
        shape = (self.num_layers * self.num_directions, x.shape[1], self.hidden_size)
        state = x.new_zeros(shape) if state is None else _check_state(type(self).__name__, state, shape)
        return list(state.unbind(0))

    def layers(self, x: torch.Tensor, scan):
        """Feed each layer's output to the next; ``scan(steps, layer, direction)`` runs one direction
        and returns (outputs by position, finals, extras)."""
        finals, extras = [], []
        for layer in range(self.num_layers):
            if layer > 0:
                x = F.dropout(x, self.dropout, self.training)
            runs = [scan(self.projections(x, layer, d), layer, d) for d in range(self.num_directions)]
            x = torch.cat([outputs for outputs, _, _ in runs], -1)
            finals += [final for _, final, _ in runs]
            extras.append([extra for _, _, extra in runs])
        return (x.transpose(0, 1) if self.batch_first else x), finals, extras

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, batch_first={self.batch_first}")


class RNN(_Recurrent):
    """Elman RNN layers: ``output, h_n = rnn(x, h_0)``, shapes as torch.nn.RNN's."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = True, dropout: float = 0.0,
                 bidirectional: bool = False):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)
        self.nonlinearity = _check_activation(nonlinearity)

    def forward(self, x: torch.Tensor, h_0: torch.Tensor | None = None):
        x = self.time_major(x)
        h = self.initial(h_0, x)

        def scan(steps, layer, direction):
            weight_hh = self.parameters_of(layer, direction)[1]
            outputs, final = rnn_scan(steps, h[layer * self.num_directions + direction], weight_hh,
                                      direction == 1, self.nonlinearity)
            return outputs, final, None

        output, finals, _ = self.layers(x, scan)
        return output, torch.stack(finals, 0)


class LSTM(_Recurrent):
    """LSTM layers: ``output, (h_n, c_n) = lstm(x, (h_0, c_0))``, shapes as torch.nn.LSTM's.

    ``return_gates=True`` returns ``output, (h_n, c_n), gates``: one LSTMGates per layer, each
    field shaped like ``output`` (the reverse direction's units after the forward ones).
    """

    rows_per_unit = 4

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None,
                return_gates: bool = False):
        x = self.time_major(x)
        h_0, c_0 = (None, None) if state is None else state
        h, c = self.initial(h_0, x), self.initial(c_0, x)

        def scan(steps, layer, direction):
            index = layer * self.num_directions + direction
            outputs, h_n, c_n, gates = lstm_scan(steps, h[index], c[index], self.parameters_of(layer, direction)[1],
                                                 direction == 1, return_gates)
            return outputs, (h_n, c_n), gates

        output, finals, gates = self.layers(x, scan)
        h_n, c_n = (torch.stack(states, 0) for states in zip(*finals))
        if not return_gates:
            return output, (h_n, c_n)
        return output, (h_n, c_n), [self._stack_gates(layer) for layer in gates]

    def _stack_gates(self, directions: list[list[LSTMGates]]) -> LSTMGates:
        dim = 1 if self.batch_first else 0
        per_direction = [[torch.stack(field, dim) for field in zip(*steps)] for steps in directions]
        return LSTMGates(*(torch.cat(fields, -1) for fields in zip(*per_direction)))
