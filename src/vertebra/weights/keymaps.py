"""Explicit key maps from torchvision and timm state dicts to vertebra's module names.

A map is an ordered list of rules ``(pattern, template)``; the first pattern that matches a
whole key renames it.  Named groups fill the template, and a group named ``layer`` (the
references count stages from 1) also provides ``stage``, counted from 0 as vertebra does.
A key no rule matches is reported as unexpected, never silently dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

Rule = tuple[str, str] | tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]


def flatten_1x1(weight: torch.Tensor) -> torch.Tensor:
    """A classifier stored as a 1x1 convolution (timm's resnetv2) becomes a linear weight."""
    return weight.flatten(1) if weight.ndim == 4 else weight


@dataclass(frozen=True)
class KeyMap:
    name: str
    rules: tuple[Rule, ...]

    def rename(self, key: str) -> tuple[str, Callable | None] | None:
        for pattern, template, *transform in self.rules:
            match = re.fullmatch(pattern, key)
            if match:
                groups = match.groupdict()
                if "layer" in groups:
                    groups["stage"] = int(groups["layer"]) - 1
                return template.format(**groups), (transform[0] if transform else None)
        return None

    def convert(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Renamed tensors, and the source keys that no rule matched."""
        converted, unmatched = {}, []
        for key, tensor in state.items():
            renamed = self.rename(key)
            if renamed is None:
                unmatched.append(key)
                continue
            new_key, transform = renamed
            converted[new_key] = transform(tensor) if transform else tensor
        return converted, unmatched


_P = r"(?P<p>\w+)"  # the tensor's own name: weight, bias, running_mean, ...
_BLOCK = r"layer(?P<layer>[1-9])\.(?P<b>\d+)"

KEYMAPS = {
    # torchvision's ResNet and ResNeXt; timm's resnet* and resnext* use the same names.
    "torchvision_resnet": KeyMap("torchvision_resnet", (
        (rf"conv1\.{_P}", "stem.conv1.conv.{p}"),
        (rf"bn1\.{_P}", "stem.conv1.bn.{p}"),
        (rf"{_BLOCK}\.conv(?P<i>\d)\.{_P}", "stages.{stage}.{b}.conv{i}.conv.{p}"),
        (rf"{_BLOCK}\.bn(?P<i>\d)\.{_P}", "stages.{stage}.{b}.conv{i}.bn.{p}"),
        (rf"{_BLOCK}\.downsample\.0\.{_P}", "stages.{stage}.{b}.downsample.conv.{p}"),
        (rf"{_BLOCK}\.downsample\.1\.{_P}", "stages.{stage}.{b}.downsample.bn.{p}"),
        (rf"fc\.{_P}", "head.fc.{p}"),
    )),
    # timm's legacy_seresnet*, legacy_seresnext*, legacy_senet154 (Cadene's port of the Caffe models).
    "timm_legacy_senet": KeyMap("timm_legacy_senet", (
        (rf"layer0\.conv(?P<i>\d)\.{_P}", "stem.conv{i}.conv.{p}"),
        (rf"layer0\.bn(?P<i>\d)\.{_P}", "stem.conv{i}.bn.{p}"),
        (rf"{_BLOCK}\.conv(?P<i>\d)\.{_P}", "stages.{stage}.{b}.conv{i}.conv.{p}"),
        (rf"{_BLOCK}\.bn(?P<i>\d)\.{_P}", "stages.{stage}.{b}.conv{i}.bn.{p}"),
        (rf"{_BLOCK}\.se_module\.fc(?P<i>\d)\.{_P}", "stages.{stage}.{b}.se.fc{i}.{p}"),
        (rf"{_BLOCK}\.downsample\.0\.{_P}", "stages.{stage}.{b}.downsample.conv.{p}"),
        (rf"{_BLOCK}\.downsample\.1\.{_P}", "stages.{stage}.{b}.downsample.bn.{p}"),
        (rf"last_linear\.{_P}", "head.fc.{p}"),
    )),
    # timm's resnetv2_* with BatchNorm (the pre-activation ResNet of He et al. 2016).
    "timm_resnetv2": KeyMap("timm_resnetv2", (
        (rf"stem\.conv\.{_P}", "stem.conv1.{p}"),
        (rf"stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.norm(?P<i>\d)\.{_P}", "stages.{s}.{b}.norm{i}.bn.{p}"),
        (rf"stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.conv(?P<i>\d)\.{_P}", "stages.{s}.{b}.conv{i}.{p}"),
        (rf"stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.downsample\.conv\.{_P}", "stages.{s}.{b}.downsample.{p}"),
        (rf"norm\.{_P}", "norm.bn.{p}"),
        (r"head\.fc\.weight", "head.fc.weight", flatten_1x1),
        (r"head\.fc\.bias", "head.fc.bias"),
    )),
}
