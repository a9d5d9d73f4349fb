"""`vertebra evaluate` and `vertebra predict`: a trained checkpoint on data or on image files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data_config import DataConfig, data_config
from ..registry import create_model, resolve
from ..weights import classes_in, load_weights, read_weights
from .data import DIGITS_SIZE, ImageFolder, digits
from .data import Augmented as _Augmented
from .transforms import EvalTransform


def load_trained(model_name: str, weights: str | Path):
    """The model in ``weights`` and what it says of its data: a vertebra weights file rebuilds its
    model from its card (with the preprocessing it was trained with); a torchvision/timm checkpoint
    fills the registered model through its key map, with its layout's published preprocessing."""
    state, card = read_weights(weights)
    if not card:
        model = create_model(model_name, num_classes=classes_in(create_model(model_name), state), pretrained=weights)
        return model.eval(), {"data_config": data_config(model_name).to_dict()}
    if resolve(card["model"]) != resolve(model_name):
        raise ValueError(f"{weights} holds weights of {card['model']}, not {model_name}")
    model = create_model(model_name, **card["kwargs"])
    load_weights(model, weights)
    return model.eval(), card.get("metadata", {})


def transform_of(metadata: dict) -> EvalTransform:
    """The evaluation preprocessing the weights' metadata records (vertebra's, for older files)."""
    saved = metadata.get("data_config")
    return EvalTransform(DataConfig.from_dict(saved) if saved else metadata.get("input_size", 224))


def evaluation_set(data: str, metadata: dict):
    if data == "digits":
        return digits(metadata.get("input_size") or DIGITS_SIZE).test
    folder = ImageFolder(data, metadata.get("classes"))
    return _Augmented(folder, transform_of(metadata))


def per_class_accuracy(confusion: np.ndarray) -> list[float]:
    totals = confusion.sum(1)
    return [float(confusion[i, i] / totals[i]) if totals[i] else float("nan") for i in range(len(totals))]


def load_image(path: str | Path, metadata: dict) -> torch.Tensor:
    """An image file preprocessed as the model's training data was."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if metadata.get("data") == "digits":
                grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
                size = metadata.get("input_size") or DIGITS_SIZE
                tensor = F.interpolate(torch.from_numpy(grey)[None, None], size=(size, size),
                                       mode="bilinear", align_corners=False, antialias=True)[0]
                return ((tensor - 0.5) / 0.5).expand(3, -1, -1)
            rgb = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image {path}: {type(error).__name__}: {error}") from None
    return transform_of(metadata)(rgb.permute(2, 0, 1).float() / 255.0)


@torch.no_grad()
def predict(model, images: list[torch.Tensor], classes: list[str], top_k: int = 5) -> list[list[tuple[str, float]]]:
    probabilities = model(torch.stack(images)).softmax(1)
    top = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
    return [[(classes[i] if i < len(classes) else str(i), float(p)) for p, i in zip(values, indices)]
            for values, indices in zip(top.values.tolist(), top.indices.tolist())]


def quantization_sets(data: str, metadata: dict, calibration: int, seed: int = 0):
    """Calibration images and a held-out (images, labels) set for ``vertebra quantize``: on the
    digits, ``calibration`` training images and the test split; in an image folder, ``calibration``
    images drawn by ``seed`` and the rest.  Also the unreadable images of the folder, skipped."""
    from .data import BadImage

    if data == "digits":
        splits = digits(metadata.get("input_size") or DIGITS_SIZE)
        order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(seed))[:calibration]
        return splits.train.images[order], (splits.test.images, splits.test.labels), []
    dataset = evaluation_set(data, metadata)
    if len(dataset) <= calibration:
        raise ValueError(f"{data} holds {len(dataset)} images: --calibration {calibration} must leave some "
                         "to measure the accuracy on")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    items = [dataset[i] for i in order]
    unreadable = [item for item in items if isinstance(item, BadImage)]
    readable = [item for item in items if not isinstance(item, BadImage)]
    images = torch.stack([image for image, _ in readable])
    labels = torch.tensor([label for _, label in readable])
    if len(readable) <= calibration:
        raise ValueError(f"{data}: only {len(readable)} images are readable; --calibration {calibration} "
                         "must leave some to measure the accuracy on")
    return images[:calibration], (images[calibration:], labels[calibration:]), unreadable
