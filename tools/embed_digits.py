"""Write src/vertebra/train/digits.npz: scikit-learn's 1,797 handwritten digits and vertebra's split.

    .venv/bin/python tools/embed_digits.py

The digits are the UCI optical-recognition test set as scikit-learn ships it (8x8 images, ink
0-16).  vertebra reads them from this 50 KB file rather than through scikit-learn, whose import
alone took 1.4-2 s of every training run's start.  The split (70/15/15, stratified by class,
random_state=0) is stored beside the images, so it stays what it was; tests/train/test_data.py
checks the file against scikit-learn's own load and split.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "vertebra" / "train" / "digits.npz"


def digits_and_split() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    index = np.arange(len(data.target))
    train, rest = train_test_split(index, test_size=0.3, stratify=data.target, random_state=0)
    val, test = train_test_split(rest, test_size=0.5, stratify=data.target[rest], random_state=0)
    return {"images": data.images.astype(np.uint8), "labels": data.target.astype(np.uint8),
            "train": np.sort(train).astype(np.uint16), "val": np.sort(val).astype(np.uint16),
            "test": np.sort(test).astype(np.uint16)}


def main() -> None:
    np.savez_compressed(OUT, **digits_and_split())
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
