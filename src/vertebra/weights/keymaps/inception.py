"""Key maps of torchvision's GoogLeNet and Inception v3, and of the pretrainedmodels package's
BN-Inception (a port of the released Caffe model).

Inside the modules the names already agree (torchvision's BasicConv2d has ``conv`` and ``bn`` as
ConvNormAct does; Inception v3's branches keep torchvision's names); what moves is where each
module sits: stem, stage, or a renamed branch of GoogLeNet's Inception module.
"""
from .base import KeyMap

_REST = r"(?P<rest>[\w.]+)"


def _googlenet() -> tuple:
    rules = [(rf"conv1\.{_REST}", "stem.conv1.{rest}"),
             (rf"conv(?P<i>[23])\.{_REST}", "stages.0.conv{i}.{rest}")]
    # inception3*, 4*, 5* live in stages 1, 2, 3; branch1-4 are the 1x1, 3x3, "5x5" and pool branches
    branches = (("branch1", "branch1x1"), ("branch2", "branch3x3"), ("branch3", "branch5x5"),
                ("branch4", "branch_pool"))
    for digit, stage in (("3", 1), ("4", 2), ("5", 3)):
        for theirs, ours in branches:
            rules.append((rf"inception{digit}(?P<m>[a-e])\.{theirs}\.{_REST}",
                          f"stages.{stage}.inception{digit}{{m}}.{ours}.{{rest}}"))
    rules += [(rf"(?P<aux>aux[12])\.{_REST}", "{aux}.{rest}"), (rf"fc\.{_REST}", "head.fc.{rest}")]
    return tuple(rules)


def _inception_v3() -> tuple:
    rules = [(rf"Conv2d_(?P<c>1a|2a|2b)_3x3\.{_REST}", "stem.conv{c}.{rest}"),
             (rf"Conv2d_3b_1x1\.{_REST}", "stages.0.conv3b.{rest}"),
             (rf"Conv2d_4a_3x3\.{_REST}", "stages.0.conv4a.{rest}")]
    for digit, stage in (("5", 1), ("6", 2), ("7", 3)):
        rules.append((rf"Mixed_{digit}(?P<m>[a-e])\.{_REST}", f"stages.{stage}.mixed_{digit}{{m}}.{{rest}}"))
    rules += [(rf"AuxLogits\.{_REST}", "aux.{rest}"), (rf"fc\.{_REST}", "head.fc.{rest}")]
    return tuple(rules)


def _bninception() -> tuple:
    """Caffe's flat names: ``inception_4a_double_3x3_1_bn.weight`` -> stages.2.inception4a.branch5x5.1.bn."""
    layers = {"conv1_7x7_s2": "stem.conv1", "conv2_3x3_reduce": "stages.0.conv2", "conv2_3x3": "stages.0.conv3"}
    branches = (("1x1", "branch1x1"), ("3x3_reduce", "branch3x3.0"), ("3x3", "branch3x3.1"),
                ("double_3x3_reduce", "branch5x5.0"), ("double_3x3_1", "branch5x5.1"),
                ("double_3x3_2", "branch5x5.2"), ("pool_proj", "branch_pool.1"))
    stages = {"3a": 1, "3b": 1, "3c": 2, "4a": 2, "4b": 2, "4c": 2, "4d": 2, "4e": 3, "5a": 3, "5b": 3}
    for module, stage in stages.items():
        for theirs, ours in branches:
            layers[f"inception_{module}_{theirs}"] = f"stages.{stage}.inception{module}.{ours}"
    rules = [rule for theirs, ours in layers.items()
             for rule in ((rf"{theirs}_bn\.{_REST}", f"{ours}.bn.{{rest}}"), (rf"{theirs}\.{_REST}", f"{ours}.conv.{{rest}}"))]
    return (*rules, (rf"last_linear\.{_REST}", "head.fc.{rest}"))


KEYMAPS = {
    "torchvision_googlenet": KeyMap("torchvision_googlenet", _googlenet()),
    "torchvision_inception_v3": KeyMap("torchvision_inception_v3", _inception_v3()),
    "pretrainedmodels_bninception": KeyMap("pretrainedmodels_bninception", _bninception()),
}
