"""Key maps of the mobile line: timm's MobileNet V1, torchvision's MobileNet V2 and V3 and MnasNet.

torchvision numbers its blocks in one flat ``features`` (``layers``) list while vertebra groups them
into stages, and a block's sub-modules are numbered by position, which depends on whether it has an
expansion or an SE layer.  So the rules are written out per block from the blocks-per-stage counts
and the block's parts in the reference's order, below.
"""
from __future__ import annotations

from .base import PARAM as _P
from .base import KeyMap


def _positions(blocks_per_stage):
    """(stage, block) of each block in a flat, network-order numbering."""
    return [(s, b) for s, count in enumerate(blocks_per_stage) for b in range(count)]


def _renames(source: str, target: str, parts):
    """One rule per (index in the reference's Sequential ``source``, vertebra's name under ``target``)."""
    return [(rf"{source}\.{i}\.{_P}", f"{target}{name}.{{p}}") for i, name in parts]


def _conv_bn(source: str, target: str):
    """A conv (``.0``) and its BN (``.1``), as torchvision's Conv2dNormActivation holds them."""
    return _renames(source, f"{target}.", ((0, "conv"), (1, "bn")))


# -- timm mobilenetv1_*: blocks.{stage}.{block} already group by stage -----------------------------
_V1_BLOCK = r"blocks\.(?P<s>\d+)\.(?P<b>\d+)"
TIMM_MOBILENETV1 = (
    (rf"conv_stem\.{_P}", "stem.conv.{p}"),
    (rf"bn1\.{_P}", "stem.bn.{p}"),
    (rf"{_V1_BLOCK}\.conv_dw\.{_P}", "stages.{s}.{b}.dw.conv.{p}"),
    (rf"{_V1_BLOCK}\.bn1\.{_P}", "stages.{s}.{b}.dw.bn.{p}"),
    (rf"{_V1_BLOCK}\.conv_pw\.{_P}", "stages.{s}.{b}.pw.conv.{p}"),
    (rf"{_V1_BLOCK}\.bn2\.{_P}", "stages.{s}.{b}.pw.bn.{p}"),
    (rf"classifier\.{_P}", "head.fc.{p}"),
)


# -- torchvision mobilenet_v2: features.0 stem, features.1-17 bottlenecks, features.18 last conv ----
def _mobilenet_v2():
    rules = [*_conv_bn(r"features\.0", "stem")]
    for flat, (s, b) in enumerate(_positions((1, 2, 3, 7, 4)), start=1):
        block, target = rf"features\.{flat}\.conv", f"stages.{s}.{b}"
        # t = 1 (the first bottleneck) has no expansion, so its parts sit one place earlier
        parts = ("dw",) if flat == 1 else ("expand", "dw")
        for i, part in enumerate(parts):
            rules += _conv_bn(rf"{block}\.{i}", f"{target}.{part}")
        rules += _renames(block, f"{target}.project.", ((len(parts), "conv"), (len(parts) + 1, "bn")))
    return (*rules, *_conv_bn(r"features\.18", "conv_head"), (rf"classifier\.1\.{_P}", "head.fc.{p}"))


# -- torchvision mobilenet_v3_*: features.{i}.block.{j}, j counting the parts a block has ------------
_EDP, _EDSP = ("expand", "dw", "project"), ("expand", "dw", "se", "project")
V3_LARGE_PARTS = ((("dw", "project"),), (_EDP,) * 2, (_EDSP,) * 3, (_EDP,) * 4 + (_EDSP,) * 2, (_EDSP,) * 3)
V3_SMALL_PARTS = ((("dw", "se", "project"),), (_EDP,) * 2, (_EDSP,) * 5, (_EDSP,) * 3)


def _mobilenet_v3(stages):
    rules = [*_conv_bn(r"features\.0", "stem")]
    flat = 0
    for s, blocks in enumerate(stages):
        for b, parts in enumerate(blocks):
            flat += 1
            for j, part in enumerate(parts):
                source, target = rf"features\.{flat}\.block\.{j}", f"stages.{s}.{b}.{part}"
                if part == "se":
                    rules.append((rf"{source}\.fc(?P<i>[12])\.{_P}", target + ".fc{i}.{p}"))
                else:
                    rules += _conv_bn(source, target)
    return (*rules, *_conv_bn(rf"features\.{flat + 1}", "conv_head"),
            (rf"classifier\.0\.{_P}", "head.hidden.{p}"), (rf"classifier\.3\.{_P}", "head.fc.{p}"))


# -- torchvision mnasnet*: a flat ``layers`` list; layers.8-13 are the MBConv stacks ---------------
# the stem (conv, BN, ReLU) and the SepConv (dw conv, BN, ReLU, pw conv, BN) sit in layers.0-7
_STEM = ((0, "stem.conv"), (1, "stem.bn"), (3, "stages.0.0.dw.conv"), (4, "stages.0.0.dw.bn"),
         (6, "stages.0.0.pw.conv"), (7, "stages.0.0.pw.bn"))
# in torchvision's _InvertedResidual.layers: conv, BN, ReLU for expand and dw; conv, BN to project
_MBCONV = ((0, "expand.conv"), (1, "expand.bn"), (3, "dw.conv"), (4, "dw.bn"), (6, "project.conv"),
           (7, "project.bn"))
# per stage of vertebra's MnasNet (after the SepConv stage), the repeats of each torchvision stack
MNASNET_STACKS = ((3,), (3,), (3, 2), (4, 1))


def _mnasnet():
    rules, stack = _renames("layers", "", _STEM), 8
    for s, repeats in enumerate(MNASNET_STACKS, start=1):
        offset = 0
        for n in repeats:
            for b in range(n):
                rules += _renames(rf"layers\.{stack}\.{b}\.layers", f"stages.{s}.{offset + b}.", _MBCONV)
            stack, offset = stack + 1, offset + n
    rules += _renames("layers", "", ((14, "conv_head.conv"), (15, "conv_head.bn")))
    return (*rules, (rf"classifier\.1\.{_P}", "head.fc.{p}"))


KEYMAPS = {name: KeyMap(name, rules) for name, rules in (
    ("timm_mobilenetv1", TIMM_MOBILENETV1),
    ("torchvision_mobilenet_v2", _mobilenet_v2()),
    ("torchvision_mobilenet_v3_large", _mobilenet_v3(V3_LARGE_PARTS)),
    ("torchvision_mobilenet_v3_small", _mobilenet_v3(V3_SMALL_PARTS)),
    ("torchvision_mnasnet", _mnasnet()),
)}
