"""Image transforms on torch tensors (C, H, W float in [0, 1]); randomness from a torch.Generator."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..data_config import IMAGENET, DataConfig, vertebra_config

IMAGENET_MEAN, IMAGENET_STD = IMAGENET


def resize(image: torch.Tensor, size: int | tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(image[None], size=size, mode=mode, align_corners=False, antialias=True)[0]


def random_resized_crop(image: torch.Tensor, size: int, generator: torch.Generator,
                        scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """A crop of random area (``scale``) and aspect (``ratio``), resized to ``size`` (Inception's augmentation)."""
    height, width = image.shape[-2:]
    area = height * width
    for _ in range(10):
        target = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return resize(image[:, top:top + h, left:left + w], size)
    return resize(center_crop(image, min(height, width)), size)  # fall back to the central square


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return image[:, top:top + size, left:left + size]


def horizontal_flip(image: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    return image.flip(-1) if _uniform(generator, 0, 1) < p else image


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype).view(-1, 1, 1)
    return (image - mean_t) / std_t


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class TrainTransform:
    """Random-resized crop, horizontal flip, normalisation."""

    def __init__(self, size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, flip: bool = True):
        self.size, self.mean, self.std, self.flip = size, mean, std, flip

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        image = random_resized_crop(image, self.size, generator)
        if self.flip:
            image = horizontal_flip(image, generator)
        return normalize(image, self.mean, self.std)


class EvalTransform:
    """Resize the short side to ``config.resize_size``, take the central ``input_size`` square,
    normalise (an RGB image in [0, 1] in; Caffe's BGR 0-255 where the configuration says so)."""

    def __init__(self, config: DataConfig | int):
        self.config = config if isinstance(config, DataConfig) else vertebra_config(config)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        config = self.config
        height, width = image.shape[-2:]
        short = config.resize_size
        scale = short / min(height, width)
        image = resize(image, (max(short, round(height * scale)), max(short, round(width * scale))),
                       config.interpolation)
        image = center_crop(image, config.input_size)
        if config.channel_order == "BGR":
            image = image.flip(0)
        return normalize(image * config.pixel_range, config.mean, config.std)
