"""PNG plots of a training run: loss and accuracy curves, and the confusion matrix."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..durable import write_file  # noqa: E402


def _save(fig, path: Path) -> Path:
    """Atomically, like every file of a run: a kill never leaves half a picture."""
    try:
        return write_file(path, lambda temporary: fig.savefig(temporary, format="png"))
    finally:
        plt.close(fig)


def plot_history(history: list[dict], path: Path, title: str) -> Path:
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    loss_ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_ax.plot(epochs, [100 * h["train_accuracy"] for h in history], "o-", label="train")
    acc_ax.plot(epochs, [100 * h["val_accuracy"] for h in history], "s-", label="validation")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_confusion(confusion: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    size = max(4.0, 0.45 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    ax.imshow(confusion, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title=title)
    threshold = confusion.max() / 2 if confusion.size else 0
    for (row, col), count in np.ndenumerate(confusion):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                color="white" if count > threshold else "black")
    fig.tight_layout()
    return _save(fig, Path(path))
