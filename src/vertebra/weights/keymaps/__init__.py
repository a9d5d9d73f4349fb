"""Explicit key maps from torchvision and timm state dicts to vertebra's module names.

One module per family, each defining ``KEYMAPS = {name: KeyMap(...)}``; this package merges
them.  A model card's ``layouts`` names the maps its model loads.
"""
import importlib
import pkgutil

from .base import KeyMap, flatten_1x1

KEYMAPS: dict[str, KeyMap] = {}
for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        for _name, _keymap in importlib.import_module(f"{__name__}.{_module.name}").KEYMAPS.items():
            if _name in KEYMAPS:
                raise ValueError(f"key map {_name!r} is defined twice")
            KEYMAPS[_name] = _keymap

__all__ = ["KEYMAPS", "KeyMap", "flatten_1x1"]
