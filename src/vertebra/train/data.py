"""Training data: the embedded handwritten digits, and image folders (one sub-folder per class)."""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from .transforms import EvalTransform, TrainTransform

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
DIGITS_SIZE = 32


@dataclass
class DataSplits:
    name: str
    train: Dataset
    val: Dataset
    test: Dataset | None
    classes: list[str]
    in_chans: int
    input_size: int
    fingerprint: dict = field(default_factory=dict)  # what the data is, for resume's identity check
    cache_refused: str | None = None  # why --cache did not cache


@dataclass(frozen=True)
class BadImage:
    """Returned in place of a sample whose file cannot be read; the loop reports and skips it."""

    path: str
    reason: str


class Augmented(Dataset):
    """Applies a transform with a generator seeded by (seed, epoch, index): the same sample gets the
    same augmentation in every run, whatever the number of processes or workers."""

    def __init__(self, base: Dataset, transform, seed: int = 0):
        self.base, self.transform, self.seed, self.epoch = base, transform, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        item = self.base[index]
        if isinstance(item, BadImage):
            return item
        image, label = item
        digest = hashlib.blake2b(f"{self.seed}:{self.epoch}:{index}".encode(), digest_size=8).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
        return self.transform(image, generator), label


class TensorImages(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], int(self.labels[index])


DIGITS_FILE = Path(__file__).with_name("digits.npz")  # written by tools/embed_digits.py


@functools.lru_cache(maxsize=2)
def _digits_tensors(size: int = DIGITS_SIZE) -> tuple[torch.Tensor, torch.Tensor, dict[str, np.ndarray]]:
    """The digits as size x size RGB tensors and the split's indices: read once per process (read-only)."""
    with np.load(DIGITS_FILE) as stored:
        data = {name: stored[name] for name in stored.files}
    images = torch.tensor(data["images"], dtype=torch.float32)[:, None] / 16.0  # 8x8, ink in [0, 1]
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = ((images - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
    splits = {name: data[name].astype(np.int64) for name in ("train", "val", "test")}
    return images, torch.tensor(data["labels"], dtype=torch.int64), splits


def digits(size: int = DIGITS_SIZE) -> DataSplits:
    """scikit-learn's 1,797 handwritten digits as 32x32 RGB tensors (``size``: another resolution,
    as compound scaling's resolution axis needs), split 70/15/15 by class.

    The split is fixed (random_state=0) and independent of the training seed.
    """
    if type(size) is not int or size < 8:
        raise ValueError(f"the digits are 8x8 images: an input size of at least 8 is needed, got {size!r}")
    images, labels, splits = _digits_tensors(size)
    split = {name: TensorImages(images[torch.from_numpy(i)], labels[torch.from_numpy(i)]) for name, i in splits.items()}
    return DataSplits("digits", split["train"], split["val"], split["test"], [str(d) for d in range(10)], 3,
                      size, {"source": "digits", "images": len(labels)})


def class_names(root: Path) -> list[str]:
    """An image folder's classes: its sorted sub-folder names (hidden ones left out)."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


class ImageFolder(Dataset):
    """``root/<class>/<image>``; classes are the sorted sub-folder names."""

    def __init__(self, root: str | Path, classes: list[str] | None = None):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"data folder not found: {root}")
        found = class_names(root)
        if classes is not None and found != classes:
            raise ValueError(f"{root} has classes {found}, expected the training classes {classes}")
        self.root, self.classes = root, found
        self.decoded: list | None = None  # every image's uint8 tensor (or BadImage), once cache() ran
        self.samples = [(path, label) for label, name in enumerate(found)
                        for path in sorted((root / name).rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]
        if not self.samples:
            raise ValueError(f"no images in {root}: expected one sub-folder of images per class "
                             f"(suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
        if len({label for _, label in self.samples}) < 2:
            raise ValueError(f"{root} holds images of one class only ({found}); a classifier needs two or more")

    def __len__(self) -> int:
        return len(self.samples)

    def fingerprint(self) -> dict:
        """The class list and a hash of every file's path (relative to the root) and size."""
        digest = hashlib.sha256()
        for path, label in self.samples:
            digest.update(f"{path.relative_to(self.root)}\t{label}\t{path.stat().st_size}\n".encode())
        return {"classes": self.classes, "images": len(self.samples), "files_sha256": digest.hexdigest()}

    def decode(self, index: int) -> torch.Tensor | BadImage:
        """The image as a (3, H, W) uint8 tensor, or why it cannot be read."""
        from PIL import Image, UnidentifiedImageError

        path = self.samples[index][0]
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as error:
            return BadImage(str(path), f"{type(error).__name__}: {error}")
        return torch.from_numpy(array.copy()).permute(2, 0, 1)

    def cache(self, budget_bytes: int) -> str | None:
        """Decode every image once into memory (small datasets are otherwise decoded again every
        epoch); workers forked later share the decoded images.  Returns why not, where the decoded
        images would take more than ``budget_bytes``."""
        from PIL import Image

        need = 0
        for path, _ in self.samples:
            try:
                with Image.open(path) as image:  # reads the header only
                    need += 3 * image.width * image.height
            except Exception:  # noqa: BLE001 - an unreadable file is reported when it is decoded
                pass
        if need > budget_bytes:
            return (f"the decoded images need {need / 2 ** 30:.1f} GiB, more than half the available memory "
                    f"({budget_bytes / 2 ** 30:.1f} GiB)")
        self.decoded = [self.decode(index) for index in range(len(self.samples))]
        return None

    def __getitem__(self, index: int):
        decoded = self.decoded[index] if self.decoded is not None else self.decode(index)
        if isinstance(decoded, BadImage):
            return decoded
        return decoded.float() / 255.0, self.samples[index][1]


def available_memory() -> int:
    """Bytes of memory the system can still give (Linux's MemAvailable; elsewhere physical memory)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def cache_images(folders: list[ImageFolder]) -> str | None:
    """Decode the folders into memory when they fit in half the available memory; else why not."""
    budget = available_memory() // 2
    for folder in folders:
        refused = folder.cache(budget)
        if refused:
            for done in folders:
                done.decoded = None
            return refused
        budget -= sum(image.numel() for image in folder.decoded if isinstance(image, torch.Tensor))
    return None


def image_folder(train: str | Path, val: str | Path | None, val_split: float, input_size: int,
                 seed: int, cache: bool = False) -> DataSplits:
    """Train on ``train``; validate on ``val`` or on a stratified ``val_split`` share of ``train``;
    ``cache``: decode every image once, into memory, where they fit."""
    dataset = ImageFolder(train)
    fingerprint = {"source": "folder", "train": dataset.fingerprint(), "val_split": val_split}
    val_folder = ImageFolder(val, dataset.classes) if val is not None else None
    if val_folder is None and not 0 < val_split < 1:
        raise ValueError(f"val_split must be in (0, 1) when no validation folder is given, got {val_split}")
    refused = cache_images([f for f in (dataset, val_folder) if f is not None]) if cache else None
    if val_folder is not None:
        fingerprint.update(val=val_folder.fingerprint(), val_split=None)
        val_set: Dataset = Augmented(val_folder, EvalTransform(input_size), seed)
        train_set: Dataset = Augmented(dataset, TrainTransform(input_size), seed)
    else:
        from sklearn.model_selection import train_test_split

        labels = [label for _, label in dataset.samples]
        train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=val_split, stratify=labels,
                                              random_state=0)
        train_set = Augmented(Subset(dataset, sorted(train_idx.tolist())), TrainTransform(input_size), seed)
        val_set = Augmented(Subset(dataset, sorted(val_idx.tolist())), EvalTransform(input_size), seed)
    return DataSplits(str(train), train_set, val_set, None, dataset.classes, 3, input_size, fingerprint,
                      cache_refused=refused)


def load_data(data: str, *, val: str | None = None, val_split: float = 0.1, input_size: int | None = None,
              seed: int = 0, cache: bool = False) -> DataSplits:
    """The digits (32x32 unless ``input_size`` says otherwise) or an image folder (224 by default;
    ``cache``: decoded once into memory where it fits)."""
    if data == "digits":
        return digits(input_size or DIGITS_SIZE)
    return image_folder(data, val, val_split, input_size or 224, seed, cache)


def hold_out(data: DataSplits, share: float) -> DataSplits:
    """The training split cut in two: ``share`` of it (a fixed draw, whatever the seed) becomes the
    validation split, the rest trains; the test split is untouched.  NetAdapt picks its proposals
    on such a held-out set, so the validation split it reports on was never used to choose."""
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0)).tolist()
    count = max(1, round(share * len(order)))
    return replace(data, train=Subset(data.train, sorted(order[count:])), val=Subset(data.train, sorted(order[:count])),
                   fingerprint={**data.fingerprint, "holdout": share})


def collate(batch: list) -> tuple[torch.Tensor | None, torch.Tensor | None, list[BadImage]]:
    """Stack the good samples; hand back the unreadable ones for the loop to report."""
    bad = [item for item in batch if isinstance(item, BadImage)]
    good = [item for item in batch if not isinstance(item, BadImage)]
    if not good:
        return None, None, bad
    return torch.stack([image for image, _ in good]), torch.tensor([label for _, label in good]), bad
