"""Issue 5's bar, now that the training engine exists: each recurrent classifier, reading the
32x32 digits row by row, reaches at least 95% test accuracy on the embedded digits.

Recipes (AdamW, batch 64, a 1-epoch warm-up, seed 0): the LSTM learns in 15 epochs at lr 3e-3 (10 at 5e-3
gave 95.6%, too near the bar), the BiLSTM, reading each row both ways, in 8 at 5e-3; the plain RNN, whose
gradients fade over the 32 steps, needs 60 epochs at lr 1e-3 (30 or 40 at 2e-3 stayed under 94%).  Measured
with these recipes: LSTM 97.4%, BiLSTM 98.1%, RNN 96.7%.
"""
import pytest
from rich.console import Console

from vertebra.train import TrainConfig, train

RECIPES = {"lstm_classifier": (15, 3e-3), "bilstm_classifier": (8, 5e-3), "rnn_classifier": (60, 1e-3)}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_reads_digits_row_by_row_to_95_percent(name, tmp_path, quick_curves):
    epochs, lr = RECIPES[name]
    result = train(TrainConfig(name, epochs=epochs, lr=lr, batch_size=64, optimizer="adamw", seed=0, warmup_epochs=1.0,
                               channels_last=False, out=tmp_path / name), Console(quiet=True))
    assert result.test_accuracy >= 0.95, result.history[-1]
