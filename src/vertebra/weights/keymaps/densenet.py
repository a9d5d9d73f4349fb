"""Key map of DenseNet: torchvision's densenet121/161/169/201.

torchvision's published checkpoints still carry the old names ``norm.1``/``conv.2`` inside the
dense layers (its loader renames them to ``norm1``/``conv2``): both spellings are accepted here.
"""
from .base import PARAM as _P
from .base import KeyMap

_BLOCK = r"features\.denseblock(?P<layer>[1-9])\.denselayer(?P<i>\d+)"

KEYMAPS = {
    "torchvision_densenet": KeyMap("torchvision_densenet", (
        (rf"features\.conv0\.{_P}", "stem.conv1.conv.{p}"),
        (rf"features\.norm0\.{_P}", "stem.conv1.bn.{p}"),
        (rf"{_BLOCK}\.norm\.?(?P<j>[12])\.{_P}", "stages.{stage}.denseblock.denselayer{i}.norm{j}.bn.{p}"),
        (rf"{_BLOCK}\.conv\.?(?P<j>[12])\.{_P}", "stages.{stage}.denseblock.denselayer{i}.conv{j}.{p}"),
        # transition n closes block n and opens stage n (stages count from 0)
        (rf"features\.transition(?P<layer>[1-9])\.norm\.{_P}", "stages.{layer}.transition.norm.bn.{p}"),
        (rf"features\.transition(?P<layer>[1-9])\.conv\.{_P}", "stages.{layer}.transition.conv.{p}"),
        (rf"features\.norm5\.{_P}", "norm.bn.{p}"),
        (rf"classifier\.{_P}", "head.fc.{p}"),
    )),
}
