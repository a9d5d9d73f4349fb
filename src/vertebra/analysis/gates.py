"""What an LSTM keeps and forgets: a heat map of its gates over the steps of one input.

``gate_activations`` runs an LSTM (vertebra.layers.recurrent.LSTM) or a recurrent classifier
(``lstm_classifier``, ``bilstm_classifier``) with its gates returned; ``plot_gates`` draws one
input's forget, input and output gates, candidate and cell state, unit by step, as a PNG.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..layers.recurrent import LSTMGates

# field: (title, colour map, value range; None: symmetric around zero, from the data)
PANELS = {
    "forget": ("forget gate f_t (1 keeps c_{t-1})", "viridis", (0.0, 1.0)),
    "input": ("input gate i_t (1 admits the candidate)", "viridis", (0.0, 1.0)),
    "output": ("output gate o_t (1 shows tanh(c_t))", "viridis", (0.0, 1.0)),
    "candidate": ("candidate g_t", "RdBu_r", (-1.0, 1.0)),
    "cell": ("cell state c_t", "RdBu_r", None),
}


def gate_activations(model: nn.Module, x: torch.Tensor) -> list[LSTMGates]:
    """Every layer's gates for the batch ``x``, each field (batch, steps, units); no gradients."""
    with torch.no_grad():
        if hasattr(model, "forward_gates"):  # a recurrent classifier: x is an image batch
            return model.forward_gates(x)
        return model(x, return_gates=True)[-1]


def plot_gates(gates: LSTMGates, path: str | Path, *, sample: int = 0, title: str | None = None,
               image: torch.Tensor | None = None) -> Path:
    """Write a PNG heat map (units x steps) of each gate of one input of ``gates`` (one layer's).

    ``image`` (channels, height, width), the input of a recurrent classifier, adds a first
    panel with its rows as columns, so that step t stands under the row it read.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"plot_gates writes a .png file, got {path.name!r}")
    if gates.forget.ndim != 3:
        raise ValueError(f"plot_gates expects one layer's stacked gates, (batch, steps, units), "
                         f"got fields of shape {tuple(gates.forget.shape)}")
    if not 0 <= sample < gates.forget.shape[0]:
        raise ValueError(f"sample {sample} is out of range for a batch of {gates.forget.shape[0]}")
    steps, units = gates.forget.shape[1:]
    panels = len(PANELS) + (image is not None)
    figure, axes = plt.subplots(panels, 1, figsize=(max(6.0, 0.25 * steps + 2), 2.2 * panels),
                                sharex=True, constrained_layout=True)
    if image is not None:
        if image.ndim != 3 or image.shape[1] != steps:
            raise ValueError(f"image must be (channels, {steps} rows, width) for {steps} steps, "
                             f"got shape {tuple(image.shape)}")
        shown = axes[0].imshow(image.detach().float().cpu().mean(0).T.numpy(), aspect="auto", cmap="gray",
                               interpolation="nearest")
        axes[0].set_title("input: row t of the image is column t", fontsize=9)
        axes[0].set_ylabel("pixel", fontsize=8)
        figure.colorbar(shown, ax=axes[0], pad=0.01)
    for axis, (field, (label, colours, limits)) in zip(axes[panels - len(PANELS):], PANELS.items()):
        values = getattr(gates, field)[sample].detach().float().cpu().T.numpy()  # units x steps
        if limits is None:
            bound = max(float(abs(values).max()), 1e-6)
            limits = (-bound, bound)
        image = axis.imshow(values, aspect="auto", cmap=colours, vmin=limits[0], vmax=limits[1],
                            interpolation="nearest")
        axis.set_title(label, fontsize=9)
        axis.set_ylabel(f"unit ({units})", fontsize=8)
        figure.colorbar(image, ax=axis, pad=0.01)
    axes[-1].set_xlabel("step (input row)")
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
