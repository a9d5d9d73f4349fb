"""Key maps of torchvision's VGG: one per configuration, with and without BatchNorm.

torchvision numbers the layers of one flat ``features`` Sequential (conv, [bn,] ReLU per
convolution, a max-pool per block), so where a block's convolutions land depends on the
configuration: the rules below are written out from each configuration's convolutions per block.
"""
from .base import PARAM as _P
from .base import KeyMap

# Table 1 of the paper: 3x3 convolutions in each of the five blocks.
CONVS_PER_BLOCK = {"vgg11": (1, 1, 2, 2, 2), "vgg13": (2, 2, 2, 2, 2), "vgg16": (2, 2, 3, 3, 3),
                   "vgg19": (2, 2, 4, 4, 4)}


def _rules(convs_per_block: tuple[int, ...], batch_norm: bool) -> tuple:
    rules, index = [], 0
    for stage, count in enumerate(convs_per_block):
        for conv in range(count):
            rules.append((rf"features\.{index}\.{_P}", f"stages.{stage}.{conv}.conv.{{p}}"))
            if batch_norm:
                rules.append((rf"features\.{index + 1}\.{_P}", f"stages.{stage}.{conv}.bn.{{p}}"))
            index += 3 if batch_norm else 2  # conv, [bn,] ReLU
        index += 1  # the block's max-pool
    head = ((rf"classifier\.0\.{_P}", "head.fc6.{p}"), (rf"classifier\.3\.{_P}", "head.fc7.{p}"),
            (rf"classifier\.6\.{_P}", "head.fc8.{p}"))
    return (*rules, *head)


KEYMAPS = {}
for _name, _convs in CONVS_PER_BLOCK.items():
    for _suffix, _bn in (("", False), ("_bn", True)):
        _map = f"torchvision_{_name}{_suffix}"
        KEYMAPS[_map] = KeyMap(_map, _rules(_convs, _bn))
