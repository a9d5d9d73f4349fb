"""The model contract of DESIGN.md, written once: every registered model is a ``Backbone``."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import nn


@dataclass(frozen=True)
class FeatureInfo:
    """One feature level: a stage's output channels, its stride against the input, its module."""

    channels: int
    reduction: int
    module: str

    def to_dict(self) -> dict:
        return asdict(self)


class ClassifierHead(nn.Module):
    """Global average pool, dropout, fully connected; ``num_classes=0`` leaves pooled features."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = self._classifier(num_classes)

    def _classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        device = next((p.device for p in self.parameters()), None)
        self.fc = self._classifier(num_classes).to(device)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.flatten(self.pool(x))
        if pre_logits:
            return x
        return self.fc(self.drop(x))


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_rate(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__} {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def resolve_out_indices(out_indices: Sequence[int] | None, num_levels: int) -> tuple[int, ...]:
    """Turn user indices (negative ones count from the end) into sorted, checked stage indices."""
    if out_indices is None:
        return tuple(range(num_levels))
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        out_indices = (out_indices,)
    resolved = []
    for index in out_indices:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"out_indices must hold ints, got {type(index).__name__} {index!r}")
        if not -num_levels <= index < num_levels:
            raise ValueError(f"out_index {index} is out of range: this model has {num_levels} "
                             f"feature levels (valid: {-num_levels} to {num_levels - 1})")
        resolved.append(index % num_levels)
    if not resolved:
        raise ValueError("out_indices is empty: name at least one feature level")
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"out_indices {tuple(out_indices)} names a feature level twice")
    return tuple(sorted(resolved))


def _autocast_casts(x: torch.Tensor) -> bool:
    """Whether autocast is on for ``x``'s device and casts it (every float type but float64)."""
    if x.dtype == torch.float64:
        return False
    try:
        return torch.is_autocast_enabled(x.device.type)
    except RuntimeError:  # a device autocast does not know (meta, when counting MACs)
        return False


class Backbone(nn.Module):
    """A stem, an ordered ``nn.Sequential`` of stages, a head.

    A family builds ``self.stem``, ``self.stages`` and ``self.head`` and fills in
    ``feature_info`` (one entry per stage), ``num_features``, ``default_input_size`` and
    ``min_input_size``; everything else of the contract is here.  Families whose forward is
    not stem-then-stages override ``forward_features`` and ``forward_intermediates``.
    """

    # Names of the modules after the last stage: removed for ``features_only``.
    head_modules: tuple[str, ...] = ("head",)
    # State-dict prefixes the weight loader adapts when a pretrained file's shapes differ; the
    # classifier may be a tuple of prefixes (auxiliary classifiers).
    first_conv: str = "stem.conv1.conv"
    classifier: str | tuple[str, ...] = "head.fc"

    def __init__(self, *, num_classes: int, in_chans: int, drop_rate: float, small_input: bool):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, 0)
        self.in_chans = check_int("in_chans", in_chans, 1)
        self.drop_rate = check_rate("drop_rate", drop_rate)
        if not isinstance(small_input, bool):
            raise TypeError(f"small_input must be a bool, got {type(small_input).__name__}")
        self.small_input = small_input
        self.feature_info: list[FeatureInfo] = []
        self.num_features = 0
        self.default_input_size = 224
        self.min_input_size = 32
        self.out_indices: tuple[int, ...] | None = None
        self.model_name = type(self).__name__.lower()
        self.model_kwargs: dict = {}

    # -- the forward passes ---------------------------------------------------------------
    def check_input(self, x) -> None:
        """Raise a ValueError (TypeError for non-tensors) saying what was expected and what came."""
        name = self.model_name
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} expects a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"{name} expects a 4-D input (batch, channels, height, width), "
                             f"got {x.ndim}-D with shape {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(f"{name} expects {self.in_chans} input channels, got {x.shape[1]} "
                             f"(input shape {tuple(x.shape)})")
        if not x.is_floating_point():
            raise ValueError(f"{name} expects a floating-point input, got dtype {x.dtype}")
        weight = next(self.parameters(), None)
        if weight is not None and x.dtype != weight.dtype and not _autocast_casts(x):
            raise ValueError(f"{name} expects {weight.dtype} input like its weights, got {x.dtype}: convert "
                             f"the input (x.to({weight.dtype})) or the model (model.to({x.dtype})), "
                             f"or run under torch.autocast")
        height, width = x.shape[-2:]
        if min(height, width) < self.min_input_size:
            raise ValueError(f"{name} expects height and width of at least {self.min_input_size}, "
                             f"got {height}x{width}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, unpooled."""
        self.check_input(x)
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool and classify a feature map; ``pre_logits=True`` stops at the pooled features."""
        if self.out_indices is not None:
            raise RuntimeError(f"{self.model_name} was built with features_only: it has no head")
        return self.head(x, pre_logits=pre_logits)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the stages in ``out_indices`` (all stages when it is unset)."""
        self.check_input(x)
        wanted = self.out_indices if self.out_indices is not None else range(len(self.stages))
        x = self.stem(x)
        outputs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in wanted:
                outputs.append(x)
        return outputs

    def forward(self, x: torch.Tensor):
        if self.out_indices is not None:
            return self.forward_intermediates(x)
        return self.forward_head(self.forward_features(x))

    # -- changing the model ---------------------------------------------------------------
    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier; ``num_classes=0`` makes ``forward`` return pooled features."""
        if self.out_indices is not None:
            raise RuntimeError(f"{self.model_name} was built with features_only: it has no classifier")
        self.head.reset(check_int("num_classes", num_classes, 0))
        self.num_classes = num_classes

    def as_feature_extractor(self, out_indices: Sequence[int] | None = None) -> "Backbone":
        """Turn this model, in place, into one whose forward returns the chosen stages' outputs.

        The head and the stages after the last chosen one are removed, so state-dict keys
        stay those of the full model and weights load the same way.
        """
        if self.out_indices is not None:
            raise RuntimeError(f"{self.model_name} is already a feature extractor")
        indices = resolve_out_indices(out_indices, len(self.feature_info))
        del self.stages[max(indices) + 1:]
        for name in self.head_modules:
            delattr(self, name)
            setattr(self, name, nn.Identity())
        self.feature_info = [self.feature_info[i] for i in indices]
        self.out_indices = indices
        self.num_classes = 0
        return self

    def init_weights(self) -> None:
        """He initialisation for convolutions, unit BatchNorm; classifiers keep torch's default."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def stage_reductions(self, stem_reduction: int, strides: Sequence[int]) -> list[int]:
        """Each stage's total stride against the input, from the stem's and the stages' strides."""
        return [stem_reduction * math.prod(strides[: i + 1]) for i in range(len(strides))]
