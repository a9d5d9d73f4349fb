"""The key-map mechanism: ordered renaming rules from a reference's state-dict names to vertebra's.

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

PARAM = r"(?P<p>\w+)"  # a tensor's own name (weight, bias, running_mean, ...): "{p}" in templates
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


