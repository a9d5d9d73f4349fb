"""The recurrent classifiers: an image read row by row, the final hidden state classified."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vertebra
from vertebra.analysis.gates import gate_activations, plot_gates

NAMES = ("rnn_classifier", "lstm_classifier", "bilstm_classifier")


def test_one_step_per_row_with_the_channels_folded_into_its_features():
    model = vertebra.create_model("lstm_classifier", in_chans=2, hidden_size=16, num_layers=3)
    assert len(model.stages) == 3 and model.stages[0].input_size == 2 * 28
    assert [(i.channels, i.reduction) for i in model.feature_info] == [(16, 1)] * 3
    x = torch.randn(1, 2, 5, 28)  # five rows
    rows = model.stem(x)
    assert rows.shape == (1, 5, 56)
    torch.testing.assert_close(rows[0, 3], torch.cat([x[0, 0, 3], x[0, 1, 3]]))
    assert [f.shape for f in model.eval().forward_intermediates(x)] == [(1, 16, 1, 5)] * 3


def test_a_row_only_changes_the_steps_from_it_on():
    """Causality shows the reading order: step t has seen rows 0..t only (both ends, bidirectional)."""
    x = torch.randn(1, 3, 28, 28)
    later = x.clone()
    later[:, :, 20] += 1.0
    for name in NAMES:
        model = vertebra.create_model(name).eval()
        with torch.no_grad():
            before, after = model.forward_features(x), model.forward_features(later)
        changed = (before - after).abs().amax((0, 1, 2)) > 0
        expected = torch.arange(28) >= 20 if name != "bilstm_classifier" else torch.ones(28, dtype=torch.bool)
        assert torch.equal(changed, expected), name


def torch_lstm_of(model, bidirectional):
    """torch.nn.LSTM with the classifier's weights: its stage l's layer 0 becomes layer l."""
    layers = len(model.stages)
    lstm = nn.LSTM(model.stages[0].input_size, model.hidden_size, layers, batch_first=True,
                   bidirectional=bidirectional)
    state = {k.split(".", 2)[2].replace("_l0", f"_l{k.split('.')[1]}"): v
             for k, v in model.state_dict().items() if k.startswith("stages.")}
    lstm.load_state_dict(state, strict=True)
    return lstm


def test_the_head_classifies_the_final_hidden_state():
    x = torch.randn(2, 3, 28, 28)
    for name, bidirectional in (("lstm_classifier", False), ("bilstm_classifier", True)):
        model = vertebra.create_model(name).eval()
        lstm = torch_lstm_of(model, bidirectional)
        with torch.no_grad():
            h_n = lstm(x.permute(0, 2, 1, 3).flatten(2))[1][0]
            final = torch.cat([h_n[-2], h_n[-1]], 1) if bidirectional else h_n[-1]
            pooled = model.forward_head(model.forward_features(x), pre_logits=True)
            torch.testing.assert_close(pooled, final)
            torch.testing.assert_close(model(x), model.head.fc(final))


def test_hidden_size_in_chans_and_the_native_row_width():
    model = vertebra.create_model("bilstm_classifier", hidden_size=32, num_layers=2, in_chans=1)
    assert model.num_features == 64 and model.stages[1].input_size == 64
    assert model.stages[0].weight_ih_l0.shape == (4 * 32, 28) and model.default_input_size == 28
    small = vertebra.create_model("rnn_classifier", small_input=True)
    assert small.default_input_size == 32 and small.stages[0].input_size == 3 * 32
    assert vertebra.create_model("rnn_classifier", img_size=8).stages[0].input_size == 3 * 8


def test_rows_of_another_width_are_area_averaged_to_the_native_one():
    model = vertebra.create_model("lstm_classifier").eval()
    x = torch.randn(1, 3, 28, 28)
    doubled = x.repeat_interleave(2, dim=-1)  # each column twice: averaging pairs gives x back
    with torch.no_grad():
        torch.testing.assert_close(model(doubled), model(x))


def test_gates_and_their_heat_map(tmp_path):
    model = vertebra.create_model("bilstm_classifier", hidden_size=8).eval()
    x = torch.randn(2, 3, 28, 28)
    gates = gate_activations(model, x)
    assert len(gates) == 2 and gates[0].forget.shape == (2, 28, 16)
    path = plot_gates(gates[-1], tmp_path / "gates.png", sample=1, title="bilstm, layer 2", image=x[1])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    with pytest.raises(ValueError, match="no gates"):
        vertebra.create_model("rnn_classifier").forward_gates(torch.randn(1, 3, 28, 28))


def test_a_few_hundred_adam_steps_learn_the_digits():
    """Trainability, not the accuracy target (that waits for the training engine): 8x8 digits
    read as 8 rows of 8 pixels; 200 Adam steps bring the loss from ln 10 to a small fraction."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target)
    train, test = slice(0, 512), slice(1000, 1500)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is fastest and immune to a busy machine
    try:
        for name in NAMES:
            torch.manual_seed(0)
            model = vertebra.create_model(name, in_chans=1, img_size=8, hidden_size=32, num_layers=1)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(200):
                batch = torch.randint(0, 512, (64,))
                loss = F.cross_entropy(model(images[train][batch]), labels[train][batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                train_loss = F.cross_entropy(model(images[train]), labels[train]).item()
                accuracy = (model(images[test]).argmax(1) == labels[test]).float().mean().item()
            assert train_loss < 0.25 and accuracy > 0.8, (name, train_loss, accuracy)
    finally:
        torch.set_num_threads(threads)
