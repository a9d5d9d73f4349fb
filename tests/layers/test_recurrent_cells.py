"""RNN and LSTM from their gate equations: equal to torch.nn's, and their gates shown."""
import math

import pytest
import torch
from torch import nn

from vertebra.layers.recurrent import LSTM, RNN, LSTMCell, LSTMGates, RNNCell

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def relative_error(mine, theirs):
    return ((mine - theirs).norm() / theirs.norm()).item()


def outputs_and_gradients(module, x, state):
    """Output, final states and the gradients of a loss that uses all of them."""
    x = x.detach().requires_grad_()
    output, final = module(x, state)
    finals = final if isinstance(final, tuple) else (final,)
    (output.square().sum() + sum(f.sin().sum() for f in finals)).backward()
    return [output, *finals, x.grad, *(p.grad for p in module.parameters())]


CONFIGS = [  # (num_layers, bidirectional, batch_first, bias, nonlinearity, with initial state)
    (1, False, True, True, "tanh", False),
    (3, False, True, True, "tanh", True),
    (2, True, True, True, "relu", False),
    (2, True, False, False, "tanh", True),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layers, bidirectional, batch_first, bias, nonlinearity, with_state", CONFIGS)
@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_equal_to_torch_nn(kind, layers, bidirectional, batch_first, bias, nonlinearity, with_state, dtype):
    kwargs = dict(num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    if kind == "rnn":
        theirs, mine = nn.RNN(7, 5, nonlinearity=nonlinearity, **kwargs), RNN(7, 5, nonlinearity=nonlinearity, **kwargs)
    else:
        theirs, mine = nn.LSTM(7, 5, **kwargs), LSTM(7, 5, **kwargs)
    theirs, mine = theirs.to(dtype), mine.to(dtype)
    mine.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 6, 7, dtype=dtype)
    state = None
    if with_state:
        h = torch.randn(layers * (1 + bidirectional), 6 if not batch_first else 4, 5, dtype=dtype)
        state = h if kind == "rnn" else (h, torch.randn_like(h))
    for got, expected in zip(outputs_and_gradients(mine, x, state), outputs_and_gradients(theirs, x, state)):
        assert got.shape == expected.shape
        assert relative_error(got, expected) <= TOLERANCE[dtype]


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_state_dicts_load_both_ways(kind):
    ours, torchs = (RNN, nn.RNN) if kind == "rnn" else (LSTM, nn.LSTM)
    mine, theirs = ours(3, 4, num_layers=2, bidirectional=True), torchs(3, 4, num_layers=2, bidirectional=True)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(mine.state_dict(), strict=True)
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(theirs(x.transpose(0, 1))[0], mine(x)[0].transpose(0, 1))  # time-major
    mine.load_state_dict(torchs(3, 4, num_layers=2, bidirectional=True).state_dict(), strict=True)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cells_equal_torch_cells(dtype):
    x, h, c = torch.randn(3, 6, dtype=dtype), torch.randn(3, 4, dtype=dtype), torch.randn(3, 4, dtype=dtype)
    rnn, theirs = RNNCell(6, 4, nonlinearity="relu").to(dtype), nn.RNNCell(6, 4, nonlinearity="relu").to(dtype)
    rnn.load_state_dict(theirs.state_dict())
    assert relative_error(rnn(x, h), theirs(x, h)) <= TOLERANCE[dtype]
    lstm, theirs = LSTMCell(6, 4).to(dtype), nn.LSTMCell(6, 4).to(dtype)
    theirs.load_state_dict(lstm.state_dict())
    for got, expected in zip(lstm(x, (h, c)), theirs(x, (h, c))):
        assert relative_error(got, expected) <= TOLERANCE[dtype]
    torch.testing.assert_close(lstm(x)[0], theirs(x)[0])  # no state: zeros


def test_the_cell_steps_one_token_at_a_time_like_the_layer():
    """A search controller feeds the LSTM one token at a time: stepping the cell, or the layer
    with one-step sequences and its state, gives the whole-sequence output."""
    layer, cell = LSTM(5, 8), LSTMCell(5, 8)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in layer.state_dict().items()})
    x = torch.randn(2, 7, 5)
    output, (h_n, c_n) = layer(x)
    state, stepped = None, None
    for t in range(7):
        state = cell(x[:, t], state)
        stepped = layer(x[:, t:t + 1], stepped)[1]
        torch.testing.assert_close(state[0], output[:, t])
        torch.testing.assert_close(stepped[0][0], output[:, t])
    torch.testing.assert_close(state[1], c_n[0])


def test_gates_by_hand():
    """One unit, one input, no recurrent weights: pre-activations +-ln 3 and 0 give gates
    3/4, 1/4, 1/2 and the candidate tanh(ln 3) = 4/5, so every value is known in closed form."""
    cell = LSTMCell(1, 1).double()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.tensor([[math.log(3)], [-math.log(3)], [math.log(3)], [0.0]], dtype=torch.float64))  # i, f, g, o
        cell.weight_hh.zero_()
        cell.bias_ih.zero_()
        cell.bias_hh.zero_()
    h, c, gates = cell(torch.tensor([[1.0]], dtype=torch.float64), return_gates=True)
    expected = dict(input=0.75, forget=0.25, candidate=0.8, output=0.5, cell=0.75 * 0.8)
    assert {k: getattr(gates, k).item() for k in expected} == pytest.approx(expected, abs=1e-15)
    assert h.item() == pytest.approx(0.5 * math.tanh(0.6), abs=1e-15)
    # x = -1 flips every sign: keep 3/4 of the memory, admit 1/4 of the candidate -4/5
    h, c, gates = cell(torch.tensor([[-1.0]], dtype=torch.float64), (h, c), return_gates=True)
    assert (gates.input.item(), gates.forget.item(), gates.candidate.item()) == pytest.approx((0.25, 0.75, -0.8), abs=1e-15)
    assert c.item() == pytest.approx(0.75 * 0.6 + 0.25 * -0.8, abs=1e-15) and gates.cell.item() == c.item()
    assert h.item() == pytest.approx(0.5 * math.tanh(0.25), abs=1e-15)


def test_layer_gates_are_the_steps_gates_in_the_outputs_layout():
    lstm = LSTM(3, 4, num_layers=2, bidirectional=True).eval()
    x = torch.randn(2, 5, 3)
    output, (h_n, c_n), gates = lstm(x, return_gates=True)
    torch.testing.assert_close(output, lstm(x)[0])
    assert len(gates) == 2 and all(isinstance(g, LSTMGates) for g in gates)
    last = gates[-1]
    assert all(field.shape == (2, 5, 8) for field in last)
    torch.testing.assert_close(output, last.output * last.cell.tanh())  # h_t = o_t tanh(c_t)
    torch.testing.assert_close(last.cell[:, -1, :4], c_n[-2])  # forward direction ends at the last step
    torch.testing.assert_close(last.cell[:, 0, 4:], c_n[-1])  # backward direction ends at the first
    sigmoid_fields = torch.stack([last.input, last.forget, last.output])
    assert sigmoid_fields.min() > 0 and sigmoid_fields.max() < 1 and last.candidate.abs().max() < 1


def test_dropout_between_layers_only_in_training():
    lstm = LSTM(3, 4, num_layers=2, dropout=0.5)
    x = torch.randn(2, 5, 3)
    lstm.eval()
    torch.testing.assert_close(lstm(x)[0], lstm(x)[0])
    lstm.train()
    assert not torch.equal(lstm(x)[0], lstm(x)[0])


def test_bad_inputs_and_arguments():
    lstm = LSTM(3, 4, num_layers=2)
    for x, message in ((torch.randn(5, 3), "3-D input"), (torch.randn(2, 5, 4), "with 3 features"),
                       (torch.zeros(2, 5, 3, dtype=torch.long), "floating-point")):
        with pytest.raises(ValueError, match=message):
            lstm(x)
    with pytest.raises(ValueError, match=r"initial state of shape \(2, 2, 4\)"):
        lstm(torch.randn(2, 5, 3), (torch.zeros(1, 2, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="initial state"):
        LSTMCell(3, 4)(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(3, 4)))
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        LSTM(3, 0)
    with pytest.raises(ValueError, match="dropout"):
        RNN(3, 4, dropout=1.0)
